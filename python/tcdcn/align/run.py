"""Run an alignment job with an engine and summarise it (tcdcn-align, tools/align.py)."""
from __future__ import annotations

import platform
import time
from collections import Counter
from pathlib import Path

import cv2

from tcdcn import __version__
from tcdcn.align.engines import ENGINES, run_local, run_ray
from tcdcn.align.job import STAGES, AlignSettings, plan, read_rows
from tcdcn.cli import progress_bar
from tcdcn.paths import write_json


def align(specs: list[str], out: Path, settings: AlignSettings, engine: str = "local",
          workers: int = 1, address: str | None = None, restart: bool = False,
          progress: bool = True, log=print) -> dict:
    """Align every face of the inputs into OUT (job.py's layout); shards finished by an
    earlier run are kept. Returns the summary (also OUT/summary.json)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    if not 1 <= workers <= 1024:
        raise ValueError(f"workers must be 1 to 1024, not {workers}")
    out = Path(out)
    errors: list[str] = []
    shards = plan(specs, out, settings, restart, errors)
    for e in errors:
        log(f"skipped {e}")
    todo = [s for s in shards if not s.part.is_file()]
    total = sum(len(s.items) for s in shards)
    if len(todo) < len(shards):
        log(f"resuming: {len(shards) - len(todo)} of {len(shards)} shards done earlier")
    write_json(out / "summary.json", {"status": "running", "engine": engine, "workers": workers})
    bar = _bar(progress, total=sum(len(s.items) for s in todo))
    seconds = dict.fromkeys(STAGES, 0.0)
    start = time.perf_counter()
    done_images = 0
    runner = (run_local(todo, settings, workers) if engine == "local"
              else run_ray(todo, settings, workers, address))
    for result in runner:
        done_images += len(next(s.items for s in todo if s.index == result.index))
        for k, v in result.seconds.items():
            seconds[k] += v
        bar.update(len(next(s.items for s in todo if s.index == result.index)))
    bar.close()
    elapsed = time.perf_counter() - start
    table = read_rows(out)
    status = Counter(table.column("status").to_pylist())
    summary = {
        "status": "complete", "inputs": total, "shards": len(shards),
        "shards_this_run": len(todo), "rows": table.num_rows, "faces": status.get("ok", 0),
        "no_face": status.get("no_face", 0), "failed": status.get("error", 0),
        "skipped_inputs": errors,
        "seconds": round(elapsed, 3),
        "inputs_per_second": round(done_images / elapsed, 2) if elapsed > 0 and done_images else None,
        "stage_seconds": {k: round(v, 3) for k, v in seconds.items()},
        "engine": engine, "workers": workers, "address": address,
        "settings": settings.__dict__, "versions": versions(engine),
    }
    write_json(out / "summary.json", summary)
    return summary


def versions(engine: str) -> dict:
    v = {"tcdcn": __version__, "python": platform.python_version(), "opencv": cv2.__version__}
    try:
        import pyarrow
        v["pyarrow"] = pyarrow.__version__
    except ImportError:
        pass
    if engine == "ray":
        import ray
        v["ray"] = ray.__version__
    return v


def _bar(progress: bool, total: int):
    return progress_bar()(total=total, unit="image", disable=not progress, smoothing=0.1)
