"""Readers for the face lists as released: MTFL, CNN_FacePoint-style box lists, 300-W .pts.

Every reader yields `Sample`s: image path, landmarks K x 2 in 0-based pixel coordinates,
attributes (0-based class ids in the order of schemes.TASKS) or None, face box or None.
A malformed line, an out-of-range label or a missing image raises `DataError` naming the
file and line; with `errors` given (a list), the error is appended there instead and the
sample skipped, so that a caller can count and report what was skipped.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tcdcn.boxes import box_from_landmarks, rule_for
from tcdcn.image import IMAGE_SUFFIXES
from tcdcn.schemes import SCHEMES, TASKS, LandmarkScheme


class DataError(ValueError):
    """Bad input: names the file and line (or the image) it comes from."""


@dataclass
class Sample:
    image: Path
    landmarks: np.ndarray                 # K x 2, (x, y), 0-based pixels
    attributes: np.ndarray | None = None  # one 0-based class id per task, TASKS order
    box: np.ndarray | None = None         # left, top, right, bottom (pixels)
    source: str = ""                      # "file:line" it was read from
    group: str = ""                       # identity for person-disjoint splits
    extra: dict = field(default_factory=dict)


def _lines(path: Path):
    """(line number, stripped text) of non-blank lines; tolerates CRLF, leading spaces and
    a UTF-8 byte-order mark. A missing file, a folder or text that is not UTF-8 is a
    DataError naming the file (and the line)."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a list file")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError as err:
            raise DataError(f"{path}:{lineno}: not UTF-8 text (byte {raw[err.start]:#x} at "
                            f"column {err.start + 1}); save the list as UTF-8") from None
        if text:
            yield lineno, text


def _image_path(root: Path, rel: str) -> Path:
    return root / rel.replace("\\", "/")


def _group(rel: str) -> str:
    """Identity for a split by person: LFW names (Aaron_Eckhart_0001.jpg -> Aaron_Eckhart);
    other images are their own group."""
    rel = rel.replace("\\", "/")
    name = Path(rel).stem
    if rel.startswith("lfw_5590/") or re.fullmatch(r"[A-Za-z][A-Za-z_'.-]*_\d{4}", name):
        return "lfw:" + re.sub(r"_\d{4}$", "", name)
    return rel


def _floats(fields: list[str], where: str) -> np.ndarray:
    try:
        values = np.array([float(v) for v in fields], dtype=np.float64)
    except ValueError as err:
        raise DataError(f"{where}: not a number ({err})") from None
    if not np.all(np.isfinite(values)):
        raise DataError(f"{where}: non-finite coordinate")
    return values


def _report(err: DataError, errors: list | None) -> None:
    if errors is None:
        raise err
    errors.append(str(err))


def _check_image(path: Path, where: str, check_images: bool) -> None:
    if check_images and not path.is_file():
        raise DataError(f"{where}: image {path} not found")


def _read_list(list_path, root, errors, check_images, n_fields: int, layout: str,
               parse) -> list[Sample]:
    """The shared loop of the list readers: split each non-blank line into `n_fields`
    fields, let `parse(fields, where)` make a Sample, check its image, report errors."""
    list_path = Path(list_path)
    root = Path(root) if root is not None else list_path.parent
    samples = []
    for lineno, text in _lines(list_path):
        where = f"{list_path}:{lineno}"
        try:
            fields = text.split()
            if len(fields) != n_fields:
                raise DataError(f"{where}: expected {n_fields} fields ({layout}), got {len(fields)}")
            sample = parse(fields, where)
            sample.image = _image_path(root, fields[0])
            _check_image(sample.image, where, check_images)
        except DataError as err:
            _report(err, errors)
            continue
        sample.source, sample.group = where, _group(fields[0])
        samples.append(sample)
    return samples


def read_mtfl(list_path: str | Path, root: str | Path | None = None, *,
              errors: list | None = None, check_images: bool = True) -> list[Sample]:
    """MTFL `training.txt` / `testing.txt` as released.

    Line: `path x1..x5 y1..y5 gender smile glasses pose` (backslash paths, CRLF, leading
    spaces, blank last line). Coordinates are 1-based: 1.0 is subtracted. Classes are
    1-based (gender 1 male/2 female, smile 1 yes/2 no, glasses 1 yes/2 no, pose 1..5) and
    become 0-based class ids.
    """
    def parse(fields: list[str], where: str) -> Sample:
        coords = _floats(fields[1:11], where)
        try:
            classes = [int(v) for v in fields[11:15]]
        except ValueError:
            raise DataError(f"{where}: attributes must be integers, got {fields[11:15]}") from None
        attributes = []
        for task, value in zip(TASKS, classes):
            if not 1 <= value <= len(task.classes):
                raise DataError(f"{where}: {task.name} label {value} out of range "
                                f"1..{len(task.classes)}")
            attributes.append(value - 1)
        return Sample(image=Path(), landmarks=np.stack([coords[:5], coords[5:]], axis=1) - 1.0,
                      attributes=np.array(attributes, dtype=np.int64))

    return _read_list(list_path, root, errors, check_images, 15,
                      "path, 10 coordinates, 4 attributes", parse)


def read_facepoint(list_path: str | Path, root: str | Path | None = None, *,
                   errors: list | None = None, check_images: bool = True) -> list[Sample]:
    """A CNN_FacePoint list: `path left right top bottom x1 y1 ... x5 y5`, 0-based.

    Works for any such list with boxes (MTFL's training faces are CNN_FacePoint's).
    """
    def parse(fields: list[str], where: str) -> Sample:
        values = _floats(fields[1:], where)
        left, right, top, bottom = values[:4]
        if not (right > left and bottom > top):
            raise DataError(f"{where}: empty box left={left} right={right} "
                            f"top={top} bottom={bottom}")
        return Sample(image=Path(), landmarks=values[4:].reshape(5, 2),
                      box=np.array([left, top, right, bottom]))

    return _read_list(list_path, root, errors, check_images, 15,
                      "path, 4 box values, 10 coordinates", parse)


def read_pts(path: str | Path) -> np.ndarray:
    """A 300-W style .pts file: `version: 1`, `n_points: K`, `{`, K lines `x y`, `}`.

    A missing header is tolerated (then every line of two numbers is a point). The
    coordinates are 1-based as in 300-W: 1.0 is subtracted.
    """
    path = Path(path)
    points, declared = [], None
    for lineno, text in _lines(path):
        where = f"{path}:{lineno}"
        low = text.lower()
        if low.startswith("version"):
            continue
        if low.startswith("n_points"):
            try:
                declared = int(text.split(":", 1)[1])
            except (IndexError, ValueError):
                raise DataError(f"{where}: bad n_points line {text!r}") from None
            continue
        if text in ("{", "}"):
            continue
        fields = text.split()
        if len(fields) != 2:
            raise DataError(f"{where}: expected 'x y', got {text!r}")
        points.append(_floats(fields, where))
    if not points:
        raise DataError(f"{path}: no points")
    if declared is not None and declared != len(points):
        raise DataError(f"{path}: n_points says {declared}, found {len(points)}")
    return np.array(points) - 1.0


def read_pts_folder(root: str | Path, *, errors: list | None = None,
                    expected_points: int | None = 68) -> list[Sample]:
    """300-W style folders searched recursively: every image with a .pts beside it, each
    with `expected_points` points (None: any count)."""
    root = Path(root)
    samples = []
    for pts in sorted(root.rglob("*.pts")):
        image = next((pts.with_suffix(s) for s in IMAGE_SUFFIXES
                      if pts.with_suffix(s).is_file()), None)
        try:
            if image is None:
                raise DataError(f"{pts}: no image beside it ({', '.join(IMAGE_SUFFIXES)})")
            landmarks = read_pts(pts)
            if expected_points is not None and len(landmarks) != expected_points:
                raise DataError(f"{pts}: {len(landmarks)} points, expected {expected_points} "
                                "(the iBUG 68-point scheme)")
        except DataError as err:
            _report(err, errors)
            continue
        rel = pts.relative_to(root)
        samples.append(Sample(image=image, landmarks=landmarks, source=str(pts),
                              group=image_group(rel),
                              extra={"rel": str(rel.with_suffix(image.suffix))}))
    return samples


def image_group(rel: Path) -> str:
    """The source image of a 300-W face crop: crops are named IMAGE_N (the N-th face of
    IMAGE), so faces of one photo share a group and a split by group is a split by image."""
    rel = Path(rel)
    return str(rel.parent / re.sub(r"_\d+$", "", rel.stem))


def read_pts_list(list_path: str | Path, root: str | Path | None = None, *,
                  errors: list | None = None, expected_points: int | None = 68) -> list[Sample]:
    """The faces named in a list of image paths (one per line, first field; `#` comments),
    each with its .pts beside it: e.g. the val_list.txt that tools/make_lmdb.py writes."""
    list_path = Path(list_path)
    root = Path(root) if root is not None else list_path.parent
    samples = []
    for lineno, text in _lines(list_path):
        if text.startswith("#"):
            continue
        image = _image_path(root, text.split()[0])
        pts = image.with_suffix(".pts")
        try:
            if not image.is_file():
                raise DataError(f"{list_path}:{lineno}: image {image} not found")
            if not pts.is_file():
                raise DataError(f"{list_path}:{lineno}: no {pts.name} beside {image}")
            landmarks = read_pts(pts)
            if expected_points is not None and len(landmarks) != expected_points:
                raise DataError(f"{pts}: {len(landmarks)} points, expected {expected_points}")
        except DataError as err:
            _report(err, errors)
            continue
        samples.append(Sample(image=image, landmarks=landmarks, source=str(pts),
                              group=image_group(Path(text.split()[0]))))
    return samples


def attach_boxes(samples: list[Sample], boxed: list[Sample], tolerance: float = 1.01) -> int:
    """Give `samples` the boxes of `boxed` (same faces, matched by image path and checked
    by landmarks: within `tolerance` px). Returns the number matched."""
    by_image = {s.image.resolve(): s for s in boxed}
    matched = 0
    for sample in samples:
        other = by_image.get(sample.image.resolve())
        if other is None or other.landmarks.shape != sample.landmarks.shape:
            continue
        if np.max(np.abs(other.landmarks - sample.landmarks)) <= tolerance:
            sample.box = other.box
            matched += 1
    return matched


def load_samples(dataset: str, root: Path, list_path: Path | None = None,
                 errors: list | None = None) -> tuple[list[Sample], LandmarkScheme, dict]:
    """Faces of a dataset, each with a box. Returns (samples, scheme, info)."""
    info: dict = {"dataset": dataset}
    if dataset == "mtfl":
        mtfl = root / "MTFL"
        list_path = list_path or mtfl / "training.txt"
        samples = read_mtfl(list_path, mtfl, errors=errors)
        boxes_list = root / "CNN_FacePoint" / "trainImageList.txt"
        if boxes_list.is_file():
            boxed = read_facepoint(boxes_list, mtfl, errors=errors, check_images=False)
            info["boxes_from"] = str(boxes_list)
            info["boxes_matched"] = attach_boxes(samples, boxed, tolerance=0.01)
        scheme = SCHEMES["5pt"]
    elif dataset == "facepoint":
        if list_path is None:
            raise DataError("--dataset facepoint needs --list")
        samples = read_facepoint(list_path, root, errors=errors)
        scheme = SCHEMES["5pt"]
    elif dataset == "300w":
        if (root / "300W").is_dir():   # the shared data root rather than its 300W folder
            root = root / "300W"
        if list_path is not None and Path(list_path).is_file():   # e.g. a val_list.txt
            samples = read_pts_list(list_path, root, errors=errors)
        else:
            samples = read_pts_folder(root if list_path is None else list_path, errors=errors)
        scheme = SCHEMES["68pt"]
    else:
        raise ValueError(f"unknown dataset {dataset!r}")
    derived = 0
    rule = rule_for(scheme.count)
    for s in samples:
        if s.box is None:
            s.box = box_from_landmarks(s.landmarks, rule)
            s.extra["box_from"] = "landmarks"
            derived += 1
        else:
            s.extra["box_from"] = "list"
        if len(s.landmarks) != scheme.count:
            raise DataError(f"{s.source}: {len(s.landmarks)} points, the {scheme.name} "
                            f"scheme has {scheme.count}")
    info["list"] = str(list_path) if list_path else None
    info["faces"] = len(samples)
    info["boxes_derived_from_landmarks"] = derived
    info["box_rule"] = rule.as_dict()
    return samples, scheme, info


def split_by_group(samples: list[Sample], val_fraction: float, seed: int,
                   val_groups: set[str] | None = None) -> tuple[list[Sample], list[Sample]]:
    """Validation faces: whole groups (persons), drawn at random until `val_fraction` of
    the faces are in, or exactly the groups in `val_groups`. No group is on both sides."""
    groups = sorted({s.group for s in samples})
    if val_groups is None:
        rng = np.random.default_rng([seed, 1])
        chosen, target, count = set(), val_fraction * len(samples), 0
        sizes = {g: 0 for g in groups}
        for s in samples:
            sizes[s.group] += 1
        for g in rng.permutation(groups):
            if count >= target:
                break
            chosen.add(g)
            count += sizes[g]
        val_groups = chosen
    train = [s for s in samples if s.group not in val_groups]
    val = [s for s in samples if s.group in val_groups]
    return train, val
