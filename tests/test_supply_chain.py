"""What the build takes from elsewhere is pinned: Python packages by version and sha256
(requirements.txt, the --no-deps lists), the Caffe tarball by sha256 with every member
checked before extraction."""
from __future__ import annotations

import io
import re
import tarfile

import pytest
from tcdcn.build import caffe_source as cs

from tests.helpers import REPO

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)", re.M)
LOCKS = ["requirements.txt", "tools/mkl.txt", "tools/cuda-toolkit.txt", "tools/cuda-extra.txt"]


def entries(text: str) -> dict[str, list[str]]:
    """name -> its --hash values, from a locked list (continuation lines joined)."""
    out = {}
    for block in re.split(r"\n(?=[A-Za-z])", text.replace("\\\n", " ")):
        m = PIN.match(block.strip())
        if m:
            out[m.group(1).lower()] = re.findall(r"--hash=sha256:([0-9a-f]{64})", block)
    return out


@pytest.mark.parametrize("name", LOCKS)
def test_every_package_is_pinned_with_hashes(name):
    locked = entries((REPO / name).read_text())
    assert locked, name
    assert all(locked.values()), f"{name}: pins without --hash: " \
        f"{[k for k, v in locked.items() if not v]}"


def test_the_lock_holds_every_pin_of_requirements_in_at_its_version():
    wanted = {n.lower(): v for n, v in PIN.findall((REPO / "requirements.in").read_text())}
    locked = {n.lower(): v for n, v in PIN.findall((REPO / "requirements.txt").read_text())}
    assert wanted and all(locked.get(n) == v for n, v in wanted.items()), \
        {n: (v, locked.get(n)) for n, v in wanted.items() if locked.get(n) != v}


def test_setup_installs_with_hash_checking():
    setup = (REPO / "tools" / "setup.sh").read_text()
    assert setup.count("--require-hashes") == 3


def tarball_with(tmp_path, member: tarfile.TarInfo, data: bytes = b"") -> str:
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        ok = tarfile.TarInfo("caffe/README.md")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    return path


def _sym(name, target):
    m = tarfile.TarInfo(name)
    m.type, m.linkname = tarfile.SYMTYPE, target
    return m


def _hard(name, target):
    m = tarfile.TarInfo(name)
    m.type, m.linkname = tarfile.LNKTYPE, target
    return m


def _dev(name):
    m = tarfile.TarInfo(name)
    m.type = tarfile.CHRTYPE
    return m


@pytest.mark.parametrize("member, words", [
    (tarfile.TarInfo("caffe/../../escaped.txt"), "outside the extraction folder"),
    (tarfile.TarInfo("/tmp/absolute.txt"), "outside the extraction folder"),
    (_sym("caffe/link", "../../../etc"), "links outside"),
    (_hard("caffe/hard", "../../etc/passwd"), "hard link"),
    (_dev("caffe/dev"), "device or FIFO"),
])
def test_tarball_members_that_leave_the_tree_are_refused(tmp_path, member, words):
    path = tarball_with(tmp_path, member, b"x" if member.isfile() else b"")
    dest = tmp_path / "x" / "y"
    with pytest.raises(ValueError, match=words):
        cs.extract_tarball(path, dest)
    assert not (tmp_path / "escaped.txt").exists() and not list(dest.rglob("*"))


def test_a_plain_tarball_extracts(tmp_path):
    m = tarfile.TarInfo("caffe/CMakeLists.txt")
    path = tarball_with(tmp_path, m, b"project(x)")
    root = cs.extract_tarball(path, tmp_path / "x")
    assert (root / "CMakeLists.txt").read_text() == "project(x)" and root.name == "caffe"


def test_an_unpinned_tarball_needs_its_hash_confirmed(tmp_path, monkeypatch):
    path = tarball_with(tmp_path, tarfile.TarInfo("caffe/a"), b"a")
    digest = cs.sha256_file(path)
    monkeypatch.delenv(cs.ALLOW_UNPINNED, raising=False)
    with pytest.raises(SystemExit, match=f"not the pinned Caffe tarball .*{cs.ALLOW_UNPINNED}={digest}"):
        cs.prepare(tmp_path / "out", tarball=path)
