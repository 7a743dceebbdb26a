"""Every component is built from a typed config: a frozen dataclass of `key(...)` fields, named as its
base class's type argument, whose defaults make a whole config and whose keys keep Flume's spelling."""

from __future__ import annotations

import dataclasses

import pytest

from kubeflume_agent.config.keys import KEY, Config, InvalidSetting, config_of, key, positive_integer, resolve
from kubeflume_agent.core import registry
from kubeflume_agent.core.channel import ChannelKeys
from kubeflume_agent.selectors.builtin import SelectorKeys
from kubeflume_agent.sink_processors.builtin import ProcessorKeys
from kubeflume_agent.sinks.base import Sink, SinkKeys
from kubeflume_agent.sources.base import ListeningConfig, ListeningSource

BASE_CONFIG = {"channel": ChannelKeys, "sink": SinkKeys, "selector": SelectorKeys, "processor": ProcessorKeys}
COMPONENTS = [(kind, alias) for kind in registry.KINDS for alias in registry.aliases(kind)]


@pytest.mark.parametrize(("kind", "alias"), COMPONENTS)
def test_each_component_declares_a_frozen_typed_config(kind, alias):
    component_class = registry.lookup(kind, alias)
    config_class = component_class.config_class
    assert config_class is not Config and issubclass(config_class, BASE_CONFIG.get(kind, Config))
    assert dataclasses.is_dataclass(config_class) and config_class.__dataclass_params__.frozen
    if issubclass(component_class, ListeningSource):
        assert issubclass(config_class, ListeningConfig)
    every_field_is_a_key = all(KEY in declared.metadata for declared in dataclasses.fields(config_class))
    assert every_field_is_a_key, f"{config_class.__name__} has a field not declared with key()"
    config, _ = resolve(config_class, {})  # required keys missing: reported, defaults still make a config
    assert isinstance(config, config_class)


@dataclasses.dataclass(frozen=True)
class BatchConfig(SinkKeys):
    batch_size: int = key("sink.batchSize", positive_integer, 7)
    path: str = key("path", required=True)


class BatchSink(Sink[BatchConfig]):
    pass


def test_the_type_argument_names_the_config_and_a_redeclared_field_keeps_its_own_key():
    assert BatchSink.config_class is BatchConfig
    declared = BatchConfig.keys()
    assert [k.name for k in declared] == ["sink.batchSize", "path"]
    assert BatchConfig.batch_size_key() == "sink.batchSize"
    config, problems = resolve(BatchConfig, {"sink.batchSize": "12", "other": "x"})
    assert (config.batch_size, config.batch_size_wanted()) == (12, 12)
    assert [(p.key, p.message, p.severity) for p in problems] == [
        ("path", "is required", "error"), ("other", "unknown key (ignored, as Flume does)", "warning")]


def test_config_of_names_every_error_at_once():
    with pytest.raises(InvalidSetting) as raised:
        config_of(BatchConfig, {"sink.batchSize": "0"})
    assert [key for key, _ in raised.value.problems] == ["path", "sink.batchSize"]
