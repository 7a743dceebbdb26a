"""The container images, without a Docker engine.

Each Dockerfile is read with BuildKit's own parser (the `dockerfile` package). The build stage is
replayed on this machine: its COPY instructions fill a fresh build context in tmp_path and the
wheel is built from that copy, so a file the image forgets breaks this test as it would break
`docker build`. The wheel is installed into a fresh venv and the image's ENTRYPOINT and CMD run
from it.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
from dataclasses import dataclass
from pathlib import Path

import dockerfile
import pytest
from repo_paths import REPO

IMAGES = {"agent": REPO / "agent" / "Dockerfile", "operator": REPO / "operator" / "Dockerfile"}
BASE_IMAGE = "python:3.12-slim"


@dataclass
class Stage:
    name: str | None
    base: str
    commands: list[dockerfile.Command]

    def all(self, instruction: str) -> list[dockerfile.Command]:
        return [c for c in self.commands if c.cmd == instruction]

    def last(self, instruction: str) -> dockerfile.Command | None:
        found = self.all(instruction)
        return found[-1] if found else None


def stages(path: Path) -> list[Stage]:
    result: list[Stage] = []
    for command in dockerfile.parse_file(str(path)):
        if command.cmd == "FROM":
            value = command.value
            name = value[2] if len(value) == 3 and value[1].upper() == "AS" else None
            result.append(Stage(name, value[0], []))
        else:
            assert result, f"{path}: {command.original} before FROM"
            result[-1].commands.append(command)
    return result


def copies_from_context(stage: Stage) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY/ADD that reads the build context (no --from)."""
    return [(list(c.value[:-1]), c.value[-1]) for c in stage.commands
            if c.cmd in ("COPY", "ADD") and not any(f.startswith("--from") for f in c.flags)]


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker skips a path when a pattern matches it or one of its parent directories."""
    parts = Path(path.rstrip("/")).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatch(prefix, pattern.removeprefix("**/")) or fnmatch.fnmatch(prefix, pattern)
               for pattern in patterns for prefix in prefixes)


def console_scripts() -> set[str]:
    return set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"])


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_every_copied_path_is_in_the_build_context(image: str) -> None:
    patterns = dockerignore_patterns()
    build, *_ = stages(IMAGES[image])
    copies = copies_from_context(build)
    assert copies
    for sources, _ in copies:
        for source in sources:
            assert (REPO / source).exists(), f"{image}/Dockerfile copies {source}, which is not in the repository"
            assert not ignored(source, patterns), f"{image}/Dockerfile copies {source}, which .dockerignore drops"


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_final_stage_is_only_the_runtime(image: str) -> None:
    *builders, final = stages(IMAGES[image])
    assert builders, "expected a build stage before the runtime stage"
    assert {stage.base for stage in [*builders, final]} == {BASE_IMAGE}, "the venv needs the same interpreter"
    assert copies_from_context(final) == [], "the runtime stage must take nothing from the source tree"
    copied = [c for c in final.all("COPY") if any(f.startswith("--from") for f in c.flags)]
    assert [c.value for c in copied] == [("/opt/kubeflume", "/opt/kubeflume")]
    assert not any("pip" in c.value[0] for c in final.all("RUN")), "no installs in the runtime stage"
    venvs = [part for c in builders[-1].all("RUN") for part in c.value[0].split("&&") if " venv " in part]
    assert venvs and all("--without-pip" in part for part in venvs), "the copied venv must not carry pip"


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_image_runs_as_a_numeric_non_root_user(image: str) -> None:
    user = stages(IMAGES[image])[-1].last("USER")
    assert user is not None
    uid = user.value[0].split(":")[0]
    # Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    assert uid.isdigit() and int(uid) != 0


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_entrypoint_is_a_console_script_of_the_project(image: str) -> None:
    entrypoint = stages(IMAGES[image])[-1].last("ENTRYPOINT")
    assert entrypoint is not None and entrypoint.json, "ENTRYPOINT must be exec form"
    assert entrypoint.value == (f"kubeflume-{image}",)
    assert entrypoint.value[0] in console_scripts()


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the wheel built from the agent image's build context (both images copy the same)."""
    agent_copies, operator_copies = (copies_from_context(stages(IMAGES[i])[0]) for i in ("agent", "operator"))
    assert agent_copies == operator_copies, "both images build the same wheel from the same files"
    root = tmp_path_factory.mktemp("image")
    context = root / "src"
    for sources, destination in agent_copies:
        for source in sources:
            copy_into(REPO / source, context / destination, source)
    wheels = root / "wheels"
    pip("wheel", "--no-deps", "--wheel-dir", str(wheels), str(context))
    target = root / "venv"
    venv.create(target, with_pip=False)
    borrow_site_packages(target)
    pip("--python", str(target / "bin" / "python"), "install", "--no-deps", *map(str, wheels.glob("kubeflume-*.whl")))
    return target


def borrow_site_packages(target: Path) -> None:
    """Dependencies come from this interpreter's site-packages, the project itself only from the wheel.

    `system_site_packages` would give the base interpreter's, which lacks them when the tests run
    in a virtualenv. A .pth line adds a directory without running the .pth files inside it, so an
    editable install of the project there stays out of the image venv.
    """
    paths = sysconfig.get_paths()
    site_packages = next((target / "lib").glob("python*/site-packages"))
    (site_packages / "test-dependencies.pth").write_text("\n".join(dict.fromkeys([paths["purelib"], paths["platlib"]]))
                                                         + "\n")


def pip(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "--quiet", *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"pip {' '.join(args)} failed:\n{done.stderr}"


def copy_into(source: Path, destination: Path, spelled: str) -> None:
    """COPY's rules: a directory's contents go into the destination; a file into a directory ending in /."""
    if source.is_dir():
        shutil.copytree(source, destination, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    else:
        destination.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination / Path(spelled).name)


def run_in(venv_dir: Path, *command: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{venv_dir / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    executable = shutil.which(command[0], path=env["PATH"])
    assert executable == str(venv_dir / "bin" / command[0]), f"{command[0]} is not installed by the wheel"
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def test_the_wheel_provides_the_packages(image_venv: Path) -> None:
    done = run_in(image_venv, "python", "-c",
                  "import kubeflume_agent, kubeflume_operator; print(kubeflume_agent.__file__); "
                  "print(kubeflume_operator.__file__)")
    assert done.returncode == 0, done.stderr
    for location in done.stdout.split():
        assert location.startswith(str(image_venv)), f"imported {location}, not the wheel's copy"


def test_the_wheel_holds_the_compiled_accelerator(image_venv: Path) -> None:
    done = run_in(image_venv, "python", "-c",
                  "from kubeflume_agent.protocols.syslog import FRAME_PARSER_ACCELERATOR as compiled; "
                  "import sys; print(sys.modules[compiled.__module__].__file__)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(image_venv)) and done.stdout.strip().endswith(".so")


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_entrypoint_prints_its_usage(image_venv: Path, image: str) -> None:
    entrypoint = stages(IMAGES[image])[-1].last("ENTRYPOINT").value
    done = run_in(image_venv, *entrypoint, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {entrypoint[0]}")


def test_agent_image_default_command_runs(image_venv: Path) -> None:
    final = stages(IMAGES["agent"])[-1]
    done = run_in(image_venv, *final.last("ENTRYPOINT").value, *final.last("CMD").value)
    assert done.returncode == 0, done.stderr
    assert "-f CONF_FILE" in done.stdout


def test_operator_image_default_arguments_parse(image_venv: Path) -> None:
    """The operator's CMD would contact a cluster; its own parser checks the arguments instead."""
    cmd = stages(IMAGES["operator"])[-1].last("CMD").value
    done = run_in(image_venv, "python", "-c",
                  "import sys; from kubeflume_operator.main import build_parser; "
                  "print(build_parser().parse_args(sys.argv[1:]))", *cmd)
    assert done.returncode == 0, done.stderr
    assert "all_namespaces=True" in done.stdout
