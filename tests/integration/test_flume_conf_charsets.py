"""A flume.conf read as Flume reads it: a Latin-1 byte anywhere runs, a UTF-8 value means what its
author typed, `\\uXXXX` escapes work; every file that cannot be read is one line, never a traceback.
Real processes: `kubeflume-agent` and `kubeflume validate`."""

from __future__ import annotations

import subprocess
from pathlib import Path

from crash_harness import wait_until

from tests.integration.test_agent_cli import AGENT, KUBEFLUME, Running, send_lines, written_lines
from tests.network import free_port

LATIN1_COMMENT = b"# caf\xe9: a Latin-1 comment, as an editor on a Latin-1 system writes it\n"


def conf_bytes(port: int, out: Path, tag: bytes, comment: bytes = LATIN1_COMMENT) -> bytes:
    """A pipeline whose static interceptor puts `tag` (raw bytes of the file) in every event."""
    return (
        comment
        + b"a1.sources = r1\na1.channels = c1\na1.sinks = k1\n"
        b"a1.sources.r1.type = netcat\na1.sources.r1.bind = 127.0.0.1\na1.sources.r1.port = %d\n"
        b"a1.sources.r1.channels = c1\na1.sources.r1.interceptors = i1\n"
        b"a1.sources.r1.interceptors.i1.type = static\na1.sources.r1.interceptors.i1.key = tag\n"
        b"a1.sources.r1.interceptors.i1.value = " % port + tag + b"\n"
        b"a1.channels.c1.type = memory\n"
        b"a1.sinks.k1.type = file_roll\na1.sinks.k1.channel = c1\na1.sinks.k1.sink.directory = "
        + str(out).encode() + b"\na1.sinks.k1.sink.serializer = header_and_text\n"
    )


def run_agent_once(tmp_path: Path, tag: bytes, comment: bytes = LATIN1_COMMENT) -> str:
    """Start the agent on a flume.conf carrying `tag`, send one line, return what the sink wrote."""
    port, out = free_port(), tmp_path / "out"
    conf = tmp_path / "flume.conf"
    conf.write_bytes(conf_bytes(port, out, tag, comment))
    check = subprocess.run([*KUBEFLUME, "validate", str(conf)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    agent = Running([*AGENT, "-n", "a1", "-f", str(conf), "--no-metrics", "--no-reload-conf"], tmp_path)
    try:
        agent.wait_for_output(f"127.0.0.1:{port}")
        assert send_lines(port, ["hello"]) == [b"OK\n"]
        wait_until(lambda: out.exists() and written_lines(out), 60, "the event to be written")
    finally:
        assert agent.stop() == 0, agent.stderr()
    assert "Traceback" not in agent.stderr()
    return written_lines(out)[0]


def test_a_latin1_flume_conf_runs_and_its_values_are_latin1(tmp_path):
    assert run_agent_once(tmp_path, b"M\xfcnchen") == "{tag=München} hello"


def test_a_utf8_flume_conf_with_non_ascii_values_means_what_its_author_typed(tmp_path):
    utf8_comment = "# café: the same comment in UTF-8\n".encode()
    assert run_agent_once(tmp_path, "München ☃".encode(), utf8_comment) == "{tag=München ☃} hello"


def test_unicode_escapes_are_read_as_java_reads_them(tmp_path):
    assert run_agent_once(tmp_path, b"\\u00e9t\\u00e9") == "{tag=été} hello"


def test_every_file_that_cannot_be_read_is_one_line_without_a_traceback(tmp_path):
    bad_yaml = tmp_path / "agent.yaml"
    bad_yaml.write_bytes(b"apiVersion: kubeflume.io/v1\nkind: FlumeAgent\nmetadata: {name: caf\xe9}\n")
    broken_yaml = tmp_path / "broken.yaml"
    broken_yaml.write_text("apiVersion: kubeflume.io/v1\nkind: FlumeAgent\nspec: [unclosed\n")
    missing = tmp_path / "missing.conf"
    runs = [
        [*AGENT, "-n", "a1", "-f", str(missing), "--no-metrics"],
        [*AGENT, "-n", "a1", "-f", str(tmp_path), "--no-metrics"],  # a directory
        [*KUBEFLUME, "validate", str(missing)],
        [*KUBEFLUME, "validate", str(bad_yaml)],
        [*KUBEFLUME, "validate", str(broken_yaml)],
        [*KUBEFLUME, "run", str(bad_yaml)],
    ]
    for argv in runs:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert run.returncode == 1, (argv, run.stdout, run.stderr)
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, run.stderr)
