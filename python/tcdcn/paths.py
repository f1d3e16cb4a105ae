"""Where things are: the data root, the checkout, and the commit the code comes from."""
from __future__ import annotations

import itertools
import json
import os
import shutil
import stat
import subprocess
import tempfile
from contextlib import contextmanager
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


_TEMPORARIES = itertools.count()   # next() is atomic under the GIL


def written_through(path: Path) -> bool:
    """Whether writing `path` must go into what is there rather than replace it: a link
    (its target gets the bytes, the link stays; /dev/stdout is one), a device, a FIFO."""
    if path.is_symlink():
        return True
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{path}: is a folder, not a file")
    return not stat.S_ISREG(mode)


@contextmanager
def atomic_output(path: str | Path, suffix: str = ""):
    """A temporary path for a writer that takes a file name (a caffemodel, a PNG), beside
    `path` and renamed onto it when the block ends without an error (removed otherwise), so
    a reader never sees half a file. A link, device or FIFO at `path` is never replaced:
    the finished bytes are written into it. `suffix` keeps the extension that writers like
    cv2.imwrite go by."""
    path = Path(path)
    through = written_through(path)
    # beside the target (one file system, for the rename); bytes for a link or a device
    # wait in the temporary folder
    folder = Path(tempfile.gettempdir()) if through else path.parent
    # a short name (a long target name must not fail for its temporary's length), unique
    # in this process (threads and nested writes included)
    tmp = folder / f".tmp-{os.getpid()}-{next(_TEMPORARIES)}{suffix}"
    try:
        yield tmp
        if through:
            try:
                with open(tmp, "rb") as src, open(path, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            except OSError as err:   # name what the user named (a device's write errors don't)
                raise OSError(err.errno, err.strerror, str(path)) from None
            tmp.unlink()
        else:
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, data: str | bytes) -> Path:
    """`data` at `path` by atomic_output's rules (text is written as UTF-8)."""
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def write_json(path: Path, obj) -> Path:
    """obj as indented JSON at `path`, by atomic_output's rules: a reader never sees half a
    file, and a link, device or FIFO named is written through, not replaced."""
    return atomic_write(path, json.dumps(obj, indent=2) + "\n")
