"""Where things are: the data root, the checkout, and the commit the code comes from."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

DATA_ENV = "TCDCN_DATA"   # the environment variable naming the data root
DEFAULT_DATA = Path("..") / "shared" / "data"   # beside the checkout, as the project keeps it
# the project's own code (what a model's commit must describe); the released models are data
CODE_PATHS = ("python", "tools", "layers", "caffe_patches", ":(exclude)python/tcdcn/models")


def checkout() -> Path | None:
    """The project checkout this package runs from, or None (an installed wheel)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "caffe_patches").is_dir() and (root / "python").is_dir() else None


def data_root(path: str | Path | None = None) -> Path:
    """The data root: `path` where given, else $TCDCN_DATA, else ../shared/data next to the
    checkout (or, for an installed package, relative to the working directory)."""
    if path is not None:
        return Path(path)
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    repo = checkout()
    return (repo / DEFAULT_DATA).resolve() if repo is not None else DEFAULT_DATA


def git_commit(repo: Path | None = None, short: bool = False, mark_dirty: bool = True) -> str:
    """HEAD of the checkout, marked "+uncommitted" where the code differs from it; "unknown"
    where there is no git or no repository (an image without git, an installed package)."""
    repo = repo or checkout() or Path.cwd()
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse"] + (["--short"] if short else [])
                              + ["HEAD"], capture_output=True, text=True)
    except OSError:   # no git on this machine
        return "unknown"
    if head.returncode != 0 or not head.stdout.strip():
        return "unknown"
    commit = head.stdout.strip()
    if mark_dirty:
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--",
                                *CODE_PATHS], capture_output=True, text=True).stdout.strip()
        commit += "+uncommitted" if dirty else ""
    return commit


def write_json(path: Path, obj) -> Path:
    """obj as indented JSON at `path`, written beside it and renamed into place, so that a
    reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(path)
    return path
