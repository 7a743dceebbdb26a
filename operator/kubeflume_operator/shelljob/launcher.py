"""The worker container's script (DistributedShell's `ExecScript.sh`), generated from the spec.

Both ApplicationMasters run `bash ExecScript.sh` in the worker container, and the local runner
runs the same file, so a job behaves the same in both places. Every user value (arguments,
environment values, the main class) is written as a single-quoted bash word: the script is read
by bash from a file, never re-parsed by the NodeManager, so no value can become shell syntax.
A `script` is the user's own bash code and is placed as it is, after the environment.
"""

from __future__ import annotations

import shlex

from kubeflume_operator.shelljob.spec import ShellJobSpec

JAVA = '"${JAVA_HOME:+$JAVA_HOME/bin/}java"'
HEAP_FRACTION = 0.75  # of the container's memory, leaving room for the JVM's own overhead


def worker_script(job: ShellJobSpec, job_id: str) -> str:
    """The script text; `job_id` (namespace/name or a file name) only appears in a comment."""
    lines = ["#!/bin/bash", f"# kubeflume ShellJob {_comment(job_id)}: generated, do not edit"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in job.env]
    program = job.program
    args = " ".join(shlex.quote(arg) for arg in program.args)
    if program.kind == "command":
        lines.append(" ".join(["exec", *(shlex.quote(word) for word in program.command), args]).rstrip())
    elif program.kind == "jar":
        assert program.jar is not None
        heap = max(int(job.resources.memory_mb * HEAP_FRACTION), 16)
        classpath = shlex.quote(f"{program.jar.name}:*")
        lines.append(f"exec {JAVA} -Xmx{heap}m -cp {classpath} {shlex.quote(program.main_class)} {args}".rstrip())
    else:
        if program.args:
            lines.append(f"set -- {args}")
        lines.append(program.script)
    return "\n".join(lines) + "\n"


def _comment(text: str) -> str:
    return text.replace("\n", " ")
