"""Read and write the LMDB records the MultiLabelData layer reads.

A record is a caffe Datum: `data` holds the uint8 image (C x H x W), `float_data` the
label vector, and `label` an optional single class id (for Caffe's own Data layer).
Keys are zero-padded record numbers, so LMDB's key order is the write order. A database
is built in a temporary folder beside its destination and renamed into place at the end:
an interrupted write leaves nothing at the destination.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import lmdb
import numpy as np
from caffe.proto import caffe_pb2

KEY_DIGITS = 10


def record_key(index: int) -> bytes:
    return f"{index:0{KEY_DIGITS}d}".encode()


def encode_datum(image: np.ndarray, labels: np.ndarray | None = None,
                 label: int | None = None) -> bytes:
    """Serialise one record. `image` is uint8, C x H x W (or H x W for one channel)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3:
        raise ValueError(f"image must be C x H x W, got shape {image.shape}")
    datum = caffe_pb2.Datum()
    datum.channels, datum.height, datum.width = (int(s) for s in image.shape)
    datum.data = np.ascontiguousarray(image).tobytes()
    if labels is not None:
        datum.float_data.extend(np.asarray(labels, dtype=np.float32).ravel().tolist())
    if label is not None:
        datum.label = int(label)
    return datum.SerializeToString()


def decode_datum(value: bytes) -> tuple[np.ndarray, np.ndarray, int]:
    """(image C x H x W uint8, float labels, class label) of one record."""
    datum = caffe_pb2.Datum()
    datum.ParseFromString(value)
    image = np.frombuffer(datum.data, dtype=np.uint8).reshape(
        datum.channels, datum.height, datum.width)
    return image, np.array(datum.float_data, dtype=np.float32), int(datum.label)


def write_lmdb(path: str | os.PathLike, records: Iterable[bytes],
               map_size: int = 1 << 36, commit_every: int = 1000) -> int:
    """Write serialised records under keys 0, 1, 2, ... into a new LMDB at `path`.

    The database is built next to `path` and renamed there when complete; `path` must
    not exist yet. Returns the number of records written.
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; refusing to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    count = 0
    try:
        env = lmdb.open(str(tmp), map_size=map_size, subdir=True, lock=False)
        try:
            txn = env.begin(write=True)
            for value in records:
                txn.put(record_key(count), value, append=True)  # keys only grow
                count += 1
                if count % commit_every == 0:
                    txn.commit()
                    txn = env.begin(write=True)
            txn.commit()
        finally:
            env.close()
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return count


def read_lmdb(path: str | os.PathLike) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) pairs of an LMDB in key order."""
    env = lmdb.open(str(path), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            yield from txn.cursor()
    finally:
        env.close()
