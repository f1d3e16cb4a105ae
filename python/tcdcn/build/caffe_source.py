#!/usr/bin/env python3
"""Fetch, verify, extract and patch the pinned BVLC Caffe source (standard library only).

The pin lives in caffe_patches/UPSTREAM. The tarball is fetched with Debian's ordinary
client (`apt-get source --download-only`) through a private apt configuration that adds a
deb-src entry for the pinned suite on the mirror this machine already uses, and its sha256
is checked before use. A user-supplied tarball or an existing BVLC checkout can stand in.

`prepare` always starts from a clean extraction, applies caffe_patches/series in order
(failing loudly with the name of the patch that did not apply), copies the new files
under layers/ into the tree, and then syncs the result into the output folder, touching
only files whose content changed so that an existing build stays incremental.

This script runs before the project's virtual environment exists (from CMake and from
tools/setup.sh), so it uses nothing outside the standard library.
"""
from __future__ import annotations

import argparse
import filecmp
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]   # python/tcdcn/build/ -> the checkout
STAMP = ".tcdcn-prepared"
# a tarball other than the pinned one is built only when this variable holds its sha256
ALLOW_UNPINNED = "TCDCN_CAFFE_TARBALL_SHA256"
KEEP_IN_SOURCE = {STAMP, "python/caffe/_caffe.so"}


class SourceError(RuntimeError):
    """The upstream source could not be fetched, verified or prepared."""


class PatchError(SourceError):
    """A patch of the series did not apply; the message names it."""


def read_upstream(path: Path) -> dict[str, str]:
    """Parse `key = value` lines of caffe_patches/UPSTREAM (comments start with #)."""
    pin: dict[str, str] = {}
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if "=" not in line:
            raise SourceError(f"{path}:{lineno}: expected 'key = value', got {raw!r}")
        key, value = (part.strip() for part in line.split("=", 1))
        pin[key] = value
    for key in ("debian_package", "debian_version", "debian_suite", "tarball", "sha256"):
        if key not in pin:
            raise SourceError(f"{path}: missing '{key}'")
    return pin


def read_series(patches_dir: Path) -> list[Path]:
    """The patches named in `series`, in order; every one must exist."""
    series = patches_dir / "series"
    patches = []
    for lineno, raw in enumerate(series.read_text().splitlines(), 1):
        name = raw.split("#", 1)[0].strip()
        if not name:
            continue
        patch = patches_dir / name
        if not patch.is_file():
            raise PatchError(f"{series}:{lineno}: patch {name} does not exist")
        patches.append(patch)
    return patches


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def layer_files(layers_dir: Path) -> list[Path]:
    """Every file under layers/ (relative paths, sorted), skipping editor and build litter."""
    if not layers_dir.is_dir():
        return []
    files = [p.relative_to(layers_dir) for p in layers_dir.rglob("*") if p.is_file()]
    return sorted(p for p in files if not p.name.startswith(".") and p.suffix not in (".o", ".pyc"))


def inputs_hash(repo_root: Path = REPO_ROOT, extra: str = "") -> str:
    """Hash of everything that decides the patched source: pin, series, patches, layers,
    this script, the top-level CMakeLists.txt, plus `extra` (build options, toolchain)."""
    patches_dir = repo_root / "caffe_patches"
    digest = hashlib.sha256()

    def add(name: str, data: bytes) -> None:
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)

    add("UPSTREAM", (patches_dir / "UPSTREAM").read_bytes())
    add("series", (patches_dir / "series").read_bytes())
    for patch in read_series(patches_dir):
        add(f"patch/{patch.name}", patch.read_bytes())
    for rel in layer_files(repo_root / "layers"):
        add(f"layers/{rel.as_posix()}", (repo_root / "layers" / rel).read_bytes())
    add("CMakeLists.txt", (repo_root / "CMakeLists.txt").read_bytes())
    add("caffe_source.py", Path(__file__).read_bytes())
    add("extra", extra.encode())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------
# Fetching through apt
# ---------------------------------------------------------------------------------------

def _deb822_entries(text: str) -> list[dict[str, str]]:
    entries, current = [], {}
    for line in text.splitlines() + [""]:
        if not line.strip():
            if current:
                entries.append(current)
            current = {}
            continue
        if line.startswith("#") or line[0] in " \t":
            continue
        if ":" in line:
            key, value = line.split(":", 1)
            current[key.strip().lower()] = value.strip()
    return entries


def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian archive URI this machine's apt is configured with (not the security one).

    TCDCN_DEBIAN_MIRROR overrides it. Both one-line and deb822 (.sources) formats are read.
    """
    override = os.environ.get("TCDCN_DEBIAN_MIRROR")
    if override:
        return override.rstrip("/")
    candidates: list[tuple[str, str]] = []  # (uri, suites)
    sources_list = apt_dir / "sources.list"
    files = [sources_list] if sources_list.is_file() else []
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        files += sorted(parts.glob("*.list")) + sorted(parts.glob("*.sources"))
    for path in files:
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for entry in _deb822_entries(text):
                if entry.get("enabled", "yes").lower() == "no":
                    continue
                if "deb" not in entry.get("types", "").split():
                    continue
                for uri in entry.get("uris", "").split():
                    candidates.append((uri, entry.get("suites", "")))
        else:
            for line in text.splitlines():
                fields = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(fields) >= 3 and fields[0] == "deb":
                    candidates.append((fields[1], fields[2]))
    for uri, suites in candidates:
        if "security" in uri or not uri.startswith(("http://", "https://", "file:")):
            continue
        if any(s and "-" not in s for s in suites.split()):
            return uri.rstrip("/")
    raise SourceError(
        "no Debian archive mirror found in /etc/apt; set TCDCN_DEBIAN_MIRROR to one, "
        "or pass --tarball / --source")


def fetch_tarball(pin: dict[str, str], download_dir: Path) -> Path:
    """Return the verified pinned tarball, downloading it with apt-get source if needed."""
    download_dir.mkdir(parents=True, exist_ok=True)
    target = download_dir / pin["tarball"]
    if target.is_file() and sha256_file(target) == pin["sha256"]:
        return target
    if shutil.which("apt-get") is None:
        raise SourceError("apt-get not found: pass --tarball or --source instead")
    mirror = debian_mirror()
    with tempfile.TemporaryDirectory(prefix="tcdcn-apt-") as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "lists" / "partial").mkdir(parents=True)
        (tmp_path / "cache" / "archives" / "partial").mkdir(parents=True)
        (tmp_path / "out").mkdir()
        sources = tmp_path / "sources.list"
        sources.write_text(f"deb-src {mirror} {pin['debian_suite']} main\n")
        opts = [
            f"-oDir::Etc::SourceList={sources}", "-oDir::Etc::SourceParts=/dev/null",
            f"-oDir::State::Lists={tmp_path / 'lists'}", f"-oDir::Cache={tmp_path / 'cache'}",
            "-oDebug::NoLocking=1", "-oAPT::Sandbox::User=root", "-qq",
        ]
        steps = [
            ["apt-get", *opts, "update"],
            ["apt-get", *opts, "source", "--download-only",
             f"{pin['debian_package']}={pin['debian_version']}"],
        ]
        for cmd in steps:
            run = subprocess.run(cmd, cwd=tmp_path / "out", capture_output=True, text=True)
            if run.returncode != 0:
                raise SourceError(f"{' '.join(cmd[:1] + cmd[-2:])} failed:\n{run.stderr.strip()}")
        fetched = tmp_path / "out" / pin["tarball"]
        if not fetched.is_file():
            raise SourceError(f"apt-get source did not produce {pin['tarball']}")
        digest = sha256_file(fetched)
        if digest != pin["sha256"]:
            raise SourceError(
                f"{pin['tarball']}: sha256 {digest} does not match the pin {pin['sha256']}")
        partial = target.with_suffix(target.suffix + ".part")
        shutil.copyfile(fetched, partial)
        os.replace(partial, target)
    return target


# ---------------------------------------------------------------------------------------
# Extracting, patching, syncing
# ---------------------------------------------------------------------------------------

def _caffe_root(folder: Path) -> Path:
    """The Caffe tree inside an extraction: the folder itself or its single subfolder."""
    if (folder / "CMakeLists.txt").is_file():
        return folder
    children = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if len(children) == 1 and (children[0] / "CMakeLists.txt").is_file():
        return children[0]
    raise SourceError(f"no Caffe source tree (CMakeLists.txt) in {folder}")


def checked_members(tar: tarfile.TarFile, dest: Path, name: str) -> list[tarfile.TarInfo]:
    """Every member of `tar`, refused (ValueError naming the tarball and the member) where
    it would land outside `dest`: an absolute path, "..", a link pointing out, a device or
    FIFO. What tarfile's "data" filter does on Python >= 3.11.4, here on every Python."""
    root = os.path.realpath(dest)

    def inside(path: str) -> bool:
        real = os.path.realpath(path)
        return real == root or real.startswith(root + os.sep)

    members = tar.getmembers()
    for m in members:
        where = os.path.join(root, m.name)
        if os.path.isabs(m.name) or not inside(where):
            raise ValueError(f"{name}: member {m.name!r} would be written outside the "
                             "extraction folder; refusing this tarball")
        if m.issym() and not inside(os.path.join(os.path.dirname(where), m.linkname)):
            raise ValueError(f"{name}: member {m.name!r} links outside the extraction folder "
                             f"({m.linkname!r}); refusing this tarball")
        if m.islnk() and not inside(os.path.join(root, m.linkname)):
            raise ValueError(f"{name}: member {m.name!r} is a hard link to {m.linkname!r}, "
                             "outside the extraction folder; refusing this tarball")
        if m.isdev() or m.isfifo():
            raise ValueError(f"{name}: member {m.name!r} is a device or FIFO; refusing this "
                             "tarball")
        m.mode &= 0o755   # no set-uid, set-gid or world-writable files
    return members


def extract_tarball(tarball: Path, dest: Path) -> Path:
    """The tarball's Caffe tree under `dest`, every member checked first (checked_members)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball) as tar:
        members = checked_members(tar, dest, str(tarball))
        try:
            tar.extractall(dest, members=members, filter="data")
        except TypeError:  # Python < 3.11.4 has no extraction filters: checked above
            tar.extractall(dest, members=members)
    return _caffe_root(dest)


def copy_checkout(source: Path, dest: Path, expected_commit: str | None) -> Path:
    """Copy an existing BVLC checkout (without .git), warning if it is not the pinned commit."""
    root = _caffe_root(source)
    if expected_commit and (root / ".git").exists():
        try:
            head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                                  capture_output=True, text=True).stdout.strip()
        except OSError:   # no git here: the commit cannot be checked
            head = ""
        if head and not head.startswith(expected_commit):
            print(f"warning: {root} is at {head[:12]}, the pin is {expected_commit}; "
                  "the patches may not apply", file=sys.stderr)
    shutil.copytree(root, dest / "caffe", ignore=shutil.ignore_patterns(".git", "build"),
                    symlinks=True)
    return dest / "caffe"


def apply_series(src: Path, patches_dir: Path) -> list[str]:
    """Apply every patch of the series in order; stop at the first that does not apply."""
    if shutil.which("patch") is None:
        raise SourceError("the 'patch' program is missing (Debian: apt-get install patch)")
    applied = []
    for patch in read_series(patches_dir):
        base = ["patch", "-p1", "--forward", "--batch", "--no-backup-if-mismatch",
                "-d", str(src), "-i", str(patch)]
        check = subprocess.run(base + ["--dry-run"], capture_output=True, text=True)
        if check.returncode != 0:
            raise PatchError(f"patch {patch.name} does not apply:\n"
                             f"{(check.stdout + check.stderr).strip()}")
        subprocess.run(base + ["--silent"], check=True)
        applied.append(patch.name)
    return applied


def copy_layers(layers_dir: Path, src: Path) -> list[str]:
    """Copy the new files of layers/ into the tree; they must not replace upstream files."""
    copied = []
    for rel in layer_files(layers_dir):
        target = src / rel
        if target.exists():
            raise SourceError(f"layers/{rel} would overwrite an upstream file; edits to "
                              "existing files belong in caffe_patches/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(layers_dir / rel, target)
        copied.append(rel.as_posix())
    return copied


def sync_tree(new: Path, out: Path) -> int:
    """Make `out` equal to `new`, rewriting only files whose content differs. Returns the
    number of files written or removed."""
    changed = 0
    out.mkdir(parents=True, exist_ok=True)
    new_files = {p.relative_to(new) for p in new.rglob("*") if p.is_file() or p.is_symlink()}
    for rel in sorted(new_files):
        src, dst = new / rel, out / rel
        if dst.is_file() and not dst.is_symlink() and not src.is_symlink() \
                and filecmp.cmp(src, dst, shallow=False):
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_symlink() or dst.exists():
            dst.unlink()
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)
            os.utime(dst)  # newer than any object built from the old content
        changed += 1
    for path in sorted(out.rglob("*"), reverse=True):
        rel = path.relative_to(out)
        if rel.as_posix() in KEEP_IN_SOURCE or rel.parts[:3] == ("python", "caffe", "proto"):
            continue  # the stamp, and build outputs Caffe's CMake writes into its source
        if (path.is_file() or path.is_symlink()) and rel not in new_files:
            path.unlink()
            changed += 1
    return changed


def prepare(out: Path, tarball: Path | None = None, source: Path | None = None,
            download_dir: Path | None = None, repo_root: Path = REPO_ROOT) -> str:
    """Make `out` hold the pinned Caffe source with our series applied and layers copied."""
    patches_dir = repo_root / "caffe_patches"
    pin = read_upstream(patches_dir / "UPSTREAM")
    if source is not None:
        origin = f"source:{Path(source).resolve()}"
    elif tarball is not None:
        origin = f"tarball:{sha256_file(Path(tarball))}"
    else:
        origin = f"pinned:{pin['sha256']}"
    key = inputs_hash(repo_root, extra=origin)
    stamp = out / STAMP
    if source is None and stamp.is_file() and stamp.read_text().strip() == key:
        return f"Caffe source up to date in {out}"

    if source is None and tarball is None:
        tarball = fetch_tarball(pin, download_dir or out.parent / "downloads")
    elif tarball is not None:
        digest = sha256_file(Path(tarball))
        if digest != pin["sha256"] and os.environ.get(ALLOW_UNPINNED) != digest:
            raise SystemExit(
                f"error: {tarball} is not the pinned Caffe tarball (sha256 {digest}, the pin "
                f"is {pin['sha256']}). To build from it anyway, confirm its hash: "
                f"{ALLOW_UNPINNED}={digest}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".caffe-src-", dir=out.parent) as tmp:
        tmp_path = Path(tmp)
        if source is not None:
            tree = copy_checkout(Path(source), tmp_path, pin.get("upstream_commit"))
        else:
            tree = extract_tarball(Path(tarball), tmp_path / "x")
        applied = apply_series(tree, patches_dir)
        copied = copy_layers(repo_root / "layers", tree)
        changed = sync_tree(tree, out)
    stamp.write_text(key + "\n")
    return (f"Caffe source prepared in {out}: {len(applied)} patches, "
            f"{len(copied)} layer files, {changed} files written")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="fetch, verify, extract, patch and copy layers")
    p.add_argument("--out", type=Path, required=True, help="folder for the patched source")
    p.add_argument("--tarball", type=Path, help="use this Caffe tarball instead of fetching")
    p.add_argument("--source", type=Path, help="use this existing BVLC Caffe checkout")
    p.add_argument("--download-dir", type=Path, help="where the fetched tarball is kept")
    f = sub.add_parser("fetch", help="download and verify the pinned tarball only")
    f.add_argument("--download-dir", type=Path, required=True)
    h = sub.add_parser("hash", help="print the hash of the build inputs")
    h.add_argument("--extra", default="", help="build options to fold into the hash")
    sub.add_parser("mirror", help="print the Debian mirror apt-get source would use")
    args = parser.parse_args(argv)
    try:
        if args.command == "prepare":
            print(prepare(args.out.resolve(), args.tarball, args.source,
                          args.download_dir.resolve() if args.download_dir else None))
        elif args.command == "fetch":
            pin = read_upstream(REPO_ROOT / "caffe_patches" / "UPSTREAM")
            print(fetch_tarball(pin, args.download_dir))
        elif args.command == "hash":
            print(inputs_hash(REPO_ROOT, args.extra))
        else:
            print(debian_mirror())
    except SourceError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
