"""The code base stays `ruff` clean (the rules are in pyproject.toml), so CI catches what a
reviewer would otherwise have to."""

from __future__ import annotations

import subprocess
import sys

from repo_paths import REPO


def test_ruff_finds_nothing():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
                           str(REPO)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
