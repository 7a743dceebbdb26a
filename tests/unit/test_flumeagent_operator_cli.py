"""kubeflume-operator's command line and kopf settings."""

from __future__ import annotations

import logging

import kopf
import pytest

from kubeflume_operator import main


def test_namespaces_repeat_and_exclude_the_whole_cluster():
    args = main.build_parser().parse_args(["-n", "logs", "--namespace", "team-*"])
    assert args.namespaces == ["logs", "team-*"] and not args.all_namespaces
    with pytest.raises(SystemExit):
        main.build_parser().parse_args(["-n", "logs", "--all-namespaces"])
    with pytest.raises(SystemExit):
        main.build_parser().parse_args([])  # a scope is required


def test_standalone_unless_peering_is_asked_for():
    args = main.build_parser().parse_args(["-A"])
    assert args.peering is None and args.priority == 0
    assert main.build_parser().parse_args(["-A", "--peering", "kubeflume", "--priority", "100"]).priority == 100
    with pytest.raises(SystemExit):
        main.main(["-A", "--priority", "5"])  # a priority means nothing without peering


def test_settings_are_explicit():
    settings = main.operator_settings()
    assert settings.posting.enabled and settings.posting.level == logging.INFO
    assert settings.posting.loggers is False
    assert settings.persistence.finalizer == "kubeflume.io/finalizer"
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert settings.watching.server_timeout < settings.watching.client_timeout
