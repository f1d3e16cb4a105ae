"""The tools run in a checkout without git (the CI image has neither git nor .git): the
commit they record is "unknown"; with git it is HEAD's."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.helpers import REPO


def commit_seen(path_env: str) -> str:
    code = "from tcdcn.paths import git_commit; print(git_commit(mark_dirty=False))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PATH": path_env,
                              "PYTHONPATH": str(REPO / "python")})
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_without_git_the_commit_is_unknown(tmp_path):
    bare = tmp_path / "bin"      # a PATH with python's folder only: no git on it
    bare.mkdir()
    assert shutil.which("git", path=str(bare)) is None
    assert commit_seen(str(bare)) == "unknown"


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(),
                    reason="no git or no .git here")
def test_with_git_the_commit_is_head():
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{40}", head) and commit_seen(os.environ["PATH"]) == head


def test_a_released_model_s_origin_is_read_without_git(tmp_path, monkeypatch):
    """release.started_from asks git for the model.json of the run's commit; without git
    it takes the model.json as it is (before: FileNotFoundError 'git')."""
    from tcdcn.training.release import started_from
    monkeypatch.setenv("PATH", str(tmp_path))
    found = started_from(str(REPO / "models" / "tcdcn_5pt" / "tcdcn_5pt.caffemodel"), 0,
                         "0123456789abcdef0123456789abcdef01234567")
    assert found["model"] == "tcdcn_5pt"
