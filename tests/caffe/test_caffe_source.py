"""The patch tool (tcdcn.build.caffe_source), exercised on scratch copies of the repository."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tcdcn.build import caffe_source as cs

from tests.helpers import REPO


@pytest.fixture(scope="module")
def tarball(build) -> Path:
    """The pinned tarball setup.sh fetched (and verified) into the cache."""
    pin = cs.read_upstream(REPO / "caffe_patches" / "UPSTREAM")
    path = build.build_dir.parent.parent / "downloads" / pin["tarball"]
    assert path.is_file(), f"{path} missing: setup.sh fetches it"
    assert cs.sha256_file(path) == pin["sha256"]
    return path


@pytest.fixture
def scratch_repo(tmp_path) -> Path:
    """A copy of the files that decide the patched source, safe to break."""
    repo = tmp_path / "repo"
    for name in ("caffe_patches", "layers", "tools"):
        shutil.copytree(REPO / name, repo / name)
    shutil.copy(REPO / "CMakeLists.txt", repo / "CMakeLists.txt")
    return repo


def test_pin_is_complete():
    pin = cs.read_upstream(REPO / "caffe_patches" / "UPSTREAM")
    assert pin["debian_version"] == "1.0.0+git20180821.99bd997-8"
    assert len(pin["sha256"]) == 64
    assert pin["upstream_commit"] == "99bd997"


def test_series_lists_every_patch_in_order():
    series = [p.name for p in cs.read_series(REPO / "caffe_patches")]
    on_disk = sorted(p.name for p in (REPO / "caffe_patches").glob("*.patch"))
    assert series == on_disk, "every patch is in the series, in numbered order"


def test_series_applies_to_clean_extraction(tarball, scratch_repo, tmp_path):
    out = tmp_path / "src"
    message = cs.prepare(out, tarball=tarball, repo_root=scratch_repo)
    assert f"{len(cs.read_series(scratch_repo / 'caffe_patches'))} patches" in message
    io_cpp = (out / "src/caffe/util/io.cpp").read_text()
    assert "SetTotalBytesLimit(kProtoReadBytesLimit);" in io_cpp
    assert "CV_LOAD_IMAGE" not in io_cpp
    proto = (out / "src/caffe/proto/caffe.proto").read_text()
    assert "locally_connected_param = 10000" in proto
    for rel in cs.layer_files(scratch_repo / "layers"):
        assert (out / rel).read_bytes() == (scratch_repo / "layers" / rel).read_bytes()


def test_prepare_is_repeat_safe_and_incremental(tarball, scratch_repo, tmp_path):
    out = tmp_path / "src"
    cs.prepare(out, tarball=tarball, repo_root=scratch_repo)
    assert "up to date" in cs.prepare(out, tarball=tarball, repo_root=scratch_repo)
    untouched = out / "src/caffe/net.cpp"
    mtime = untouched.stat().st_mtime_ns
    # A changed layer file re-runs the whole prepare from a clean extraction, but only
    # that file is rewritten, so an existing build recompiles just what changed.
    layer = next(p for p in cs.layer_files(scratch_repo / "layers") if p.suffix == ".cpp")
    with open(scratch_repo / "layers" / layer, "a") as f:
        f.write("\n// changed\n")
    message = cs.prepare(out, tarball=tarball, repo_root=scratch_repo)
    assert message.endswith("1 files written"), message
    assert (out / layer).read_text().endswith("// changed\n")
    assert untouched.stat().st_mtime_ns == mtime
    # A stray file in the prepared tree (say, a hand edit) is removed by the next prepare.
    (out / "src/caffe/stray.cpp").write_text("int x;\n")
    with open(scratch_repo / "layers" / layer, "a") as f:
        f.write("// again\n")
    cs.prepare(out, tarball=tarball, repo_root=scratch_repo)
    assert not (out / "src/caffe/stray.cpp").exists()


def test_patch_that_does_not_apply_is_named(tarball, scratch_repo, tmp_path):
    patches = scratch_repo / "caffe_patches"
    victim = cs.read_series(patches)[1]
    text = victim.read_text()
    # Break a context line: the hunk no longer matches upstream.
    broken = text.replace("\n #include <", "\n #include <no_such_header_", 1)
    assert broken != text
    victim.write_text(broken)
    out = tmp_path / "src"
    with pytest.raises(cs.PatchError, match=f"patch {victim.name} does not apply"):
        cs.prepare(out, tarball=tarball, repo_root=scratch_repo)
    assert not out.exists(), "nothing half-prepared is left at --out"


def test_missing_patch_in_series_is_named(scratch_repo):
    with open(scratch_repo / "caffe_patches" / "series", "a") as f:
        f.write("0999-not-there.patch\n")
    with pytest.raises(cs.PatchError, match="0999-not-there.patch does not exist"):
        cs.read_series(scratch_repo / "caffe_patches")


def test_layer_file_may_not_replace_upstream_file(tarball, scratch_repo, tmp_path):
    clash = scratch_repo / "layers/src/caffe/layers/relu_layer.cpp"
    clash.write_text("// not ours to replace\n")
    with pytest.raises(cs.SourceError, match="relu_layer.cpp would overwrite an upstream file"):
        cs.prepare(tmp_path / "src", tarball=tarball, repo_root=scratch_repo)


def test_hash_follows_every_input(scratch_repo):
    base = cs.inputs_hash(scratch_repo)
    assert cs.inputs_hash(scratch_repo) == base
    assert cs.inputs_hash(scratch_repo, extra="cuda=ON") != base
    patch = cs.read_series(scratch_repo / "caffe_patches")[0]
    patch.write_text(patch.read_text() + "\n")
    changed_patch = cs.inputs_hash(scratch_repo)
    assert changed_patch != base
    (scratch_repo / "layers" / "include" / "new.hpp").write_text("// new\n")
    assert cs.inputs_hash(scratch_repo) != changed_patch


def test_checkout_copy_is_patched(tarball, scratch_repo, tmp_path):
    """An existing BVLC checkout (here: the extracted tarball) stands in for the tarball."""
    checkout = tmp_path / "bvlc-caffe"
    cs.extract_tarball(tarball, checkout)
    out = tmp_path / "src"
    cs.prepare(out, source=checkout, repo_root=scratch_repo)
    assert "SetTotalBytesLimit(kProtoReadBytesLimit);" in (out / "src/caffe/util/io.cpp").read_text()
    # the checkout itself is left alone
    assert "536870912" in (checkout / "src/caffe/util/io.cpp").read_text()


@pytest.mark.parametrize("files,expected", [
    ({"sources.list.d/debian.sources":
      "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
      "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n"
      "Suites: bookworm-security\nComponents: main\n"}, "http://mirror.example/debian"),
    ({"sources.list": "# comment\ndeb [arch=amd64] http://other.example/debian/ bookworm main\n"
      "deb http://other.example/debian-security bookworm-security main\n"},
     "http://other.example/debian"),
])
def test_debian_mirror_is_read_from_apt_configuration(tmp_path, monkeypatch, files, expected):
    monkeypatch.delenv("TCDCN_DEBIAN_MIRROR", raising=False)
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cs.debian_mirror(tmp_path) == expected


def test_no_mirror_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("TCDCN_DEBIAN_MIRROR", raising=False)
    with pytest.raises(cs.SourceError, match="no Debian archive mirror"):
        cs.debian_mirror(tmp_path)
