"""One LMDB from two: a dense-landmark dataset (300-W, 68 points, no attributes) and the
5-point + attribute dataset (MTFL), for one net with every head (the library behind
tools/mix_lmdb.py; TCDCN's auxiliary tasks across data sets).

Every record gets one label layout (cross_layout): the 68 points, a mask (1 where the
68 points are labelled), the five points (MTFL's own; a 300-W face's derived from its 68
by boxes.five_points) and the attribute class ids (UNLABELLED on 300-W faces, which the
softmax losses skip). The net multiplies the 68-point prediction and target by the mask
(net.train_net, NetOptions.cross_dataset), so a face without 68 points moves no 68-point
weight.

Both inputs are shuffled already (make_lmdb.py); the output interleaves them at a fixed
fraction (record i is the aux set's when floor((i + 1) f) > floor(i f)), so every batch
holds the same share of each. Validation is the main set's alone (the 68-point measure).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from tcdcn.boxes import five_points
from tcdcn.data.datasets import DataError
from tcdcn.data.lmdb_io import decode_datum, encode_datum, read_lmdb, write_lmdb
from tcdcn.schemes import SCHEMES, TASKS, UNLABELLED, cross_layout


def cross_label_layout(points: int) -> dict[str, list[int]]:
    """schemes.cross_layout as the manifest writes it ([start, stop] per part)."""
    return {k: [v.start, v.stop] for k, v in cross_layout(SCHEMES[f"{points}pt"]).items()}


def cross_label_dim(points: int) -> int:
    return cross_layout(SCHEMES[f"{points}pt"])[TASKS[-1].name].stop


def main_label(label: np.ndarray, points: int) -> np.ndarray:
    """A main-set record's label in the mixed layout: its points, mask 1, the five points
    derived from them, every attribute UNLABELLED."""
    pts = np.asarray(label[:2 * points], dtype=np.float64).reshape(points, 2)
    return np.concatenate([pts.ravel(), [1.0], five_points(pts).ravel(),
                           np.full(len(TASKS), UNLABELLED)]).astype(np.float32)


def aux_label(label: np.ndarray, points: int, layout: dict) -> np.ndarray:
    """An aux-set (5 points + attributes) record's label in the mixed layout: zero 68
    points, mask 0, its five points and attributes."""
    lm = layout["landmarks"]
    attrs = [label[layout[t.name][0]] for t in TASKS]
    return np.concatenate([np.zeros(2 * points), [0.0], label[lm[0]:lm[1]],
                           attrs]).astype(np.float32)


def from_aux(i: int, fraction: float) -> bool:
    """Whether output record i comes from the aux set (evenly spread, exact share)."""
    return math.floor((i + 1) * fraction) > math.floor(i * fraction)


def mixed_length(n_main: int, n_aux: int, fraction: float) -> int:
    """The longest output whose main and aux records both exist."""
    if not 0 < fraction < 1:
        raise ValueError(f"the aux fraction must be in (0, 1), not {fraction}")
    n = min(int(n_main / (1 - fraction)), int(n_aux / fraction)) + 2
    while n > 0 and (math.floor(n * fraction) > n_aux or n - math.floor(n * fraction) > n_main):
        n -= 1
    return n


def _manifest(folder: Path) -> dict:
    path = folder / "manifest.json"
    if not path.is_file():
        raise DataError(f"{path} not found: give folders written by tools/make_lmdb.py")
    return json.loads(path.read_text())


def check_inputs(main: dict, aux: dict, main_dir: Path, aux_dir: Path) -> int:
    """The main set's point count, after checking that the two sets can be mixed."""
    points = len(main["landmark_names"])
    if points == 5 or "pose" in main["label_layout"]:
        raise DataError(f"{main_dir}: the main set must hold dense landmarks without "
                        f"attributes (a 300-W LMDB); it has {points} points"
                        + (" and attributes" if "pose" in main["label_layout"] else ""))
    if len(aux["landmark_names"]) != 5 or any(t.name not in aux["label_layout"] for t in TASKS):
        raise DataError(f"{aux_dir}: the aux set must hold 5 points and every attribute "
                        "(an MTFL LMDB)")
    if points != 68:
        raise DataError(f"{main_dir}: five points are derived from 68-point records only")
    if main["crop"]["size"] != aux["crop"]["size"] or \
            main["crop"]["channels"] != aux["crop"]["channels"]:
        raise DataError(f"crop sizes differ: {main_dir} {main['crop']['size']} px x "
                        f"{main['crop']['channels']}, {aux_dir} {aux['crop']['size']} px x "
                        f"{aux['crop']['channels']} (build both with the same --size)")
    return points


def mix(main_dir: Path, aux_dir: Path, out: Path, aux_fraction: float = 0.5,
        progress=None, command: str = "") -> dict:
    """Write out/{train_lmdb,val_lmdb,val_list.txt,manifest.json} (into a temporary folder
    renamed at the end); returns the manifest. `progress(total)` returns a tqdm-like bar."""
    main_dir, aux_dir, out = Path(main_dir), Path(aux_dir), Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; remove it or choose another --out")
    main, aux = _manifest(main_dir), _manifest(aux_dir)
    points = check_inputs(main, aux, main_dir, aux_dir)
    n_main, n_aux = main["counts"]["train_records"], aux["counts"]["train_records"]
    n = mixed_length(n_main, n_aux, aux_fraction)
    if n == 0:
        raise DataError("nothing to mix: an input has no training records")
    aux_layout = aux["label_layout"]
    t0 = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    bar = progress(n) if progress else None
    counts = {"main": 0, "aux": 0}
    try:
        def val_records():
            for _, value in read_lmdb(main_dir / "val_lmdb"):
                image, label, _ = decode_datum(value)
                yield encode_datum(image, main_label(label, points))

        n_val = write_lmdb(tmp / "val_lmdb", val_records())
        shutil.copyfile(main_dir / "val_list.txt", tmp / "val_list.txt")

        def train_records():
            mains = read_lmdb(main_dir / "train_lmdb")
            auxes = read_lmdb(aux_dir / "train_lmdb")
            for i in range(n):
                take_aux = from_aux(i, aux_fraction)
                _, value = next(auxes if take_aux else mains)
                image, label, _ = decode_datum(value)
                if take_aux:
                    counts["aux"] += 1
                    yield encode_datum(image, aux_label(label, points, aux_layout))
                else:
                    counts["main"] += 1
                    yield encode_datum(image, main_label(label, points))
                if bar is not None and i % 1024 == 1023:
                    bar.update(1024)

        size = main["crop"]["size"] * main["crop"]["size"] * main["crop"]["channels"]
        n_train = write_lmdb(tmp / "train_lmdb", train_records(),
                             map_size=max(1 << 30, n * (size + 4 * cross_label_dim(points)) * 3))
        if bar is not None:
            bar.close()
        manifest = dict(main)
        manifest.update({   # "command" stays the main set's make_lmdb.py command
            "mix_command": command,
            "label_dim": cross_label_dim(points),
            "label_layout": cross_label_layout(points),
            "label_order": ("x1 y1 ... of the dense points, their mask (1: labelled), x1 y1 "
                            "... of the five points, then 0-based class ids (-1: unlabelled)"),
            "cross_dataset": {
                "main": str(main_dir), "aux": str(aux_dir),
                "aux_fraction": aux_fraction, "main_fraction": 1 - aux_fraction,
                "main_command": main.get("command"), "aux_command": aux.get("command"),
                "main_records": counts["main"], "aux_records": counts["aux"],
                "five_points_of_main": "boxes.five_points of the dense points",
                "validation": "the main set's faces only"},
            "counts": dict(main["counts"], train_records=n_train, val_records=n_val),
            "timing": {"mix_s": time.perf_counter() - t0},
        })
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
