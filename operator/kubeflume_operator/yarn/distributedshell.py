"""The DistributedShell Client -> ApplicationMaster protocol, for the stock AM and the dshell variant.

Both ApplicationMasters read the same things from their container: `AppMaster.jar` on the
classpath, the worker script named by `DISTRIBUTEDSHELLSCRIPTLOCATION` (+ `TIMESTAMP`, `LEN`), and
a handful of `--options`. They differ in how the worker container's extra files reach them, and
those differences are data here (`ApplicationMasterKind`), so one function builds the command line
and one the environment for both:

- stock (Hadoop 3.3 line): files must sit in `<home>/<appName>/<appId>/` and are named in
  `--localized_files`; the AM also needs `--appname` and `--homedir`; no archives.
- dshell (the 2.6-based variant): `DISTRIBUTEDJARLOCATION<i>`/`TIMESTAMP<i>`/`LEN<i>` per file and
  `DISTRIBUTEDARCHIVE...<i>` per archive, indices from 0 without gaps; exactly one container.

Every value that lands on the command line or in the AM's environment passes `command_word`:
the NodeManager embeds the command in `bash -c "..."`, so even a quoted value could be expanded
twice. Only characters that need no quoting at either level are allowed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

SCRIPT_LOCATION = "DISTRIBUTEDSHELLSCRIPTLOCATION"
SCRIPT_TIMESTAMP = "DISTRIBUTEDSHELLSCRIPTTIMESTAMP"
SCRIPT_LENGTH = "DISTRIBUTEDSHELLSCRIPTLEN"
AM_JAR = "AppMaster.jar"
EXEC_SCRIPT = "ExecScript"
# Names the AMs use in the staging directory or the worker container; user files may not take them.
RESERVED_NAMES = frozenset({AM_JAR, EXEC_SCRIPT, "ExecScript.sh", "shellCommands", "shellArgs", "log4j.properties"})
# yarn.application.classpath's cross-platform default ({{VAR}} and <CPS> are expanded by the NodeManager).
HADOOP_CLASSPATH = (
    "{{HADOOP_CONF_DIR}}",
    "{{HADOOP_COMMON_HOME}}/share/hadoop/common/*",
    "{{HADOOP_COMMON_HOME}}/share/hadoop/common/lib/*",
    "{{HADOOP_HDFS_HOME}}/share/hadoop/hdfs/*",
    "{{HADOOP_HDFS_HOME}}/share/hadoop/hdfs/lib/*",
    "{{HADOOP_YARN_HOME}}/share/hadoop/yarn/*",
    "{{HADOOP_YARN_HOME}}/share/hadoop/yarn/lib/*",
)
SAFE_WORD = re.compile(r"^[A-Za-z0-9._,:/=@%+-]+$")


class UnsafeValue(ValueError):
    """A value that cannot be put on a YARN command line or environment without shell quoting."""


def command_word(value: str, what: str) -> str:
    if not SAFE_WORD.fullmatch(value):
        raise UnsafeValue(f"{what} {value!r} may only contain letters, digits and . _ , : / = @ % + -")
    return value


@dataclass(frozen=True)
class ApplicationMasterKind:
    name: str
    main_class: str
    description: str
    localizes_archives: bool
    single_container: bool
    # True: worker files are announced in DISTRIBUTEDJAR* env vars (and may live anywhere in HDFS).
    # False: they are listed in --localized_files and must sit in the staging directory.
    files_in_environment: bool
    staging_arguments: bool  # --appname/--homedir


STOCK = ApplicationMasterKind(
    name="distributedshell",
    main_class="org.apache.hadoop.yarn.applications.distributedshell.ApplicationMaster",
    description="Hadoop's DistributedShell ApplicationMaster (3.3 line)",
    localizes_archives=False,
    single_container=False,
    files_in_environment=False,
    staging_arguments=True,
)
DSHELL = ApplicationMasterKind(
    name="dshell",
    main_class="org.apache.hadoop.yarn.applications.distributedshell.DshellApplicationMaster",
    description="the DistributedShell variant with container_files/container_archives",
    localizes_archives=True,
    single_container=True,
    files_in_environment=True,
    staging_arguments=False,
)
KINDS = {kind.name: kind for kind in (STOCK, DSHELL)}


@dataclass(frozen=True)
class StagedFile:
    """A file in HDFS as a LocalResource needs it: where, and the status read back after upload."""

    name: str  # link name in the container
    uri: str  # hdfs://authority/path
    type: str  # FILE | ARCHIVE
    size: int
    timestamp: int


@dataclass(frozen=True)
class WorkerLaunch:
    """What the AM must know to launch the worker containers."""

    script: StagedFile
    files: Sequence[StagedFile]  # worker FILE resources, in spec order
    archives: Sequence[StagedFile]  # worker ARCHIVE resources, in spec order
    memory_mb: int
    vcores: int
    containers: int
    priority: int
    app_name: str
    home: str


def am_command(kind: ApplicationMasterKind, main_class: str, am_memory_mb: int, launch: WorkerLaunch) -> str:
    """The AM container's command, with YARN's {{JAVA_HOME}} and <LOG_DIR> markers."""
    words = [
        "{{JAVA_HOME}}/bin/java",
        f"-Xmx{am_memory_mb}m",
        command_word(main_class, "applicationMaster.mainClass"),
        "--container_memory", str(launch.memory_mb),
        "--container_vcores", str(launch.vcores),
        "--num_containers", str(launch.containers),
        "--priority", str(launch.priority),
    ]
    if not kind.files_in_environment and launch.files:
        names = ",".join(command_word(f.name, "file name") for f in launch.files)
        words += ["--localized_files", names]
    if kind.staging_arguments:
        words += ["--appname", command_word(launch.app_name, "application name"),
                  "--homedir", command_word(launch.home, "HDFS home directory")]
    words += ["1><LOG_DIR>/AppMaster.stdout", "2><LOG_DIR>/AppMaster.stderr"]
    return " ".join(words)


def am_environment(kind: ApplicationMasterKind, launch: WorkerLaunch) -> dict[str, str]:
    """The AM container's environment: the classpath and the DistributedShell env protocol."""
    env = {
        "CLASSPATH": "<CPS>".join(("{{CLASSPATH}}", "./*", *HADOOP_CLASSPATH)),
        **_resource_variables(launch.script, SCRIPT_LOCATION, SCRIPT_TIMESTAMP, SCRIPT_LENGTH),
    }
    if kind.files_in_environment:
        for index, staged in enumerate(launch.files):
            env.update(_resource_variables(staged, f"DISTRIBUTEDJARLOCATION{index}",
                                           f"DISTRIBUTEDJARTIMESTAMP{index}", f"DISTRIBUTEDJARLEN{index}"))
        for index, staged in enumerate(launch.archives):
            env.update(_resource_variables(staged, f"DISTRIBUTEDARCHIVELOCATION{index}",
                                           f"DISTRIBUTEDARCHIVETIMESTAMP{index}", f"DISTRIBUTEDARCHIVELEN{index}"))
    return env


def _resource_variables(staged: StagedFile, location: str, timestamp: str, length: str) -> dict[str, str]:
    return {location: command_word(staged.uri, "HDFS location"),
            timestamp: str(staged.timestamp), length: str(staged.size)}


def archive_link(file_name: str) -> str:
    """The dshell AM's link name for an archive: the file name up to its first dot."""
    return file_name.split(".", 1)[0]
