"""A real Java job for ShellJob tests, compiled with the JDK on this machine (`javac`, `jar`),
and a real HTTP server to fetch such files from.

`build_java_job(dir)` makes:
- `wordcount.jar`: main class `demo.WordCount`; it prints a greeting made by a class of the
  dependency jar, then the words of `dict/words.txt` (from the zip archive, linked as `dict`),
  its arguments and the value of `$JOB_LABEL`, and exits with the code given as `--exit N`;
- `greeter-1.0.jar`: the dependency, class `lib.Greeter`;
- `dict.zip`: the archive, holding `words.txt`.
"""

from __future__ import annotations

import contextlib
import subprocess
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

GREETER = """package lib;
public class Greeter {
    public static String greet(String who) { return "hello " + who + " from greeter"; }
}
"""

WORD_COUNT = """package demo;
import java.nio.file.*;
import java.util.*;
public class WordCount {
    public static void main(String[] args) throws Exception {
        System.out.println(lib.Greeter.greet("yarn"));
        List<String> words = Files.readAllLines(Paths.get("dict", "words.txt"));
        System.out.println("words=" + words.size() + " " + String.join(",", words));
        System.out.println("label=" + System.getenv("JOB_LABEL"));
        int exit = 0;
        for (int i = 0; i < args.length; i++) {
            System.out.println("arg[" + i + "]=" + args[i]);
            if (args[i].equals("--exit")) { exit = Integer.parseInt(args[i + 1]); }
        }
        if (exit != 0) { System.err.println("failing on purpose with " + exit); }
        System.exit(exit);
    }
}
"""

WORDS = ["alpha", "beta", "gamma"]


@dataclass(frozen=True)
class JavaJob:
    jar: Path
    dependency: Path
    archive: Path


def build_java_job(directory: Path) -> JavaJob:
    sources, classes = directory / "src", directory / "classes"
    (sources / "lib").mkdir(parents=True)
    (sources / "demo").mkdir()
    (sources / "lib" / "Greeter.java").write_text(GREETER)
    (sources / "demo" / "WordCount.java").write_text(WORD_COUNT)
    subprocess.run(["javac", "-d", str(classes), str(sources / "lib" / "Greeter.java"),
                    str(sources / "demo" / "WordCount.java")], check=True, capture_output=True)
    dependency = directory / "greeter-1.0.jar"
    jar = directory / "wordcount.jar"
    subprocess.run(["jar", "cf", str(dependency), "-C", str(classes), "lib"], check=True, capture_output=True)
    subprocess.run(["jar", "cf", str(jar), "-C", str(classes), "demo"], check=True, capture_output=True)
    archive = directory / "dict.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("words.txt", "\n".join(WORDS) + "\n")
    return JavaJob(jar, dependency, archive)


@contextlib.asynccontextmanager
async def serve_directory(directory: Path) -> AsyncIterator[str]:
    """A real HTTP server for `directory` (the job's artifact repository); yields its base URL."""
    app = web.Application()
    app.router.add_static("/", directory)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
