"""`kubeflume run shelljob.yaml`: the local runner with a real Java job, a real HTTP server and bash."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from kubeflume_operator.shelljob.local import run_shelljob_locally
from tests.fakes.javajob import WORDS, build_java_job, serve_directory
from tests.fakes.webhdfs import FakeWebHDFS

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def file_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    async with serve_directory(served) as url:
        yield served, url


def running(pid: int) -> bool:
    """Alive and not a zombie (a killed orphan may wait for a reaper that never comes in containers)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def shelljob(spec: dict) -> dict:
    return {"apiVersion": "kubeflume.io/v1alpha1", "kind": "ShellJob", "metadata": {"name": "local-test"},
            "spec": spec}


async def test_a_java_job_with_a_dependency_jar_and_a_zip_archive(tmp_path, file_server):
    served, url = file_server
    java = build_java_job(tmp_path / "build")
    for path in (java.jar, java.dependency):
        (served / path.name).write_bytes(path.read_bytes())
    workdir = tmp_path / "run"
    status = await run_shelljob_locally(shelljob({
        "jar": {"url": f"{url}/wordcount.jar", "mainClass": "demo.WordCount"},
        "args": ["two words", "$(touch pwned)"],
        "files": [{"url": f"{url}/greeter-1.0.jar"}],
        "archives": [{"inlineBase64": base64.b64encode(java.archive.read_bytes()).decode(), "name": "dict",
                      "format": "zip"}],
        "env": [{"name": "JOB_LABEL", "value": "nightly 'run'"}],
        "applicationMaster": {"kind": "dshell"},
    }), workdir)

    assert status["phase"] == "Succeeded", status
    assert status["yarn"] == {"state": "FINISHED", "finalStatus": "SUCCEEDED", "progress": 100.0}
    assert [(s["name"], s["type"]) for s in status["staged"]] == [
        ("wordcount.jar", "FILE"), ("greeter-1.0.jar", "FILE"), ("dict", "ARCHIVE")]
    assert status["staged"][0]["size"] == java.jar.stat().st_size
    assert {c["type"]: c["status"] for c in status["conditions"]}["Complete"] == "True"
    stdout = (workdir / "logs" / "stdout").read_text()
    assert "hello yarn from greeter" in stdout
    assert f"words=3 {','.join(WORDS)}" in stdout
    assert "label=nightly 'run'" in stdout
    assert "arg[0]=two words\narg[1]=$(touch pwned)\n" in stdout
    assert not (workdir / "pwned").exists()
    assert (workdir / "dict").is_symlink() and (workdir / "dict" / "words.txt").is_file()


async def test_hdfs_sources_are_read_through_webhdfs(tmp_path):
    async with FakeWebHDFS(strict=True) as hdfs:
        hdfs.write("/data/input.txt", b"from hdfs\n")
        status = await run_shelljob_locally(shelljob({
            "yarn": {"webhdfs": [hdfs.url], "user": "alice"}, "command": ["cat", "input.txt"],
            "files": [{"url": "hdfs:///data/input.txt"}]}), tmp_path)
    assert status["phase"] == "Succeeded", status
    assert (tmp_path / "logs" / "stdout").read_text() == "from hdfs\n"


async def test_a_failing_command_ends_failed_with_its_stderr(tmp_path):
    status = await run_shelljob_locally(shelljob({"script": "echo broken input >&2; exit 3"}), tmp_path)
    assert status["phase"] == "Failed"
    assert "exited with code 3" in status["diagnostics"] and "broken input" in status["diagnostics"]
    assert status["yarn"]["finalStatus"] == "FAILED"


async def wait_until_gone(pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while running(pid):
        assert time.monotonic() < deadline, f"process {pid} still runs"
        await asyncio.sleep(0.05)


async def test_the_timeout_kills_the_command_and_what_it_started(tmp_path):
    # The second child ignores SIGTERM: only the SIGKILL to the whole process group stops it.
    script = ("sleep 300 & echo $! > child.pid\n"
              "(trap '' TERM; sleep 300) & echo $! > stubborn.pid\n"
              "wait")
    status = await run_shelljob_locally(shelljob({"script": script, "timeoutSeconds": 2}), tmp_path)
    assert status["phase"] == "Killed"
    assert "timeout" in status["diagnostics"]
    for name in ("child.pid", "stubborn.pid"):
        await wait_until_gone(int((tmp_path / name).read_text()))


async def test_a_missing_source_is_reported_and_nothing_runs(tmp_path, file_server):
    _, url = file_server
    status = await run_shelljob_locally(shelljob({
        "script": "touch ran", "files": [{"url": f"{url}/missing.jar"}]}), tmp_path)
    assert status["phase"] == "Failed"
    assert "missing.jar: HTTP 404" in status["diagnostics"]
    assert {c["type"]: c["reason"] for c in status["conditions"]}["Submitted"] == "SourceUnavailable"
    assert not (tmp_path / "ran").exists()


async def test_an_invalid_spec_lists_its_problems(tmp_path):
    status = await run_shelljob_locally(shelljob({"command": ["true"], "script": "x", "containers": 0}), tmp_path)
    assert status["phase"] == "Failed"
    assert "exactly one of command, script or jar" in status["diagnostics"]
    assert "spec.containers" in status["diagnostics"]


async def test_the_limits_of_the_chosen_application_master_apply_here_too(tmp_path):
    status = await run_shelljob_locally(shelljob({"command": ["true"], "archives": [{"url": "https://h/a.zip"}],
                                                  "applicationMaster": {"kind": "distributedshell"}}), tmp_path)
    assert status["phase"] == "Failed"
    assert "cannot localize archives" in status["diagnostics"]


def test_the_cli_runs_the_example_and_exits_0(tmp_path):
    done = subprocess.run([sys.executable, "-m", "kubeflume_operator.cli", "run", str(REPO / "examples/shelljob.yaml"),
                           "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout)["status"]["phase"] == "Succeeded"
    stdout = (tmp_path / "logs" / "stdout").read_text()
    assert "Hello, world" in stdout and "words from inside the archive" in stdout
