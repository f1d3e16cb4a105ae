"""Where shards run: `local` (a process pool on this machine, one Detector per worker
process) or `ray` (Ray Data: an actor pool on a Ray cluster, one Detector per actor). Both
take the same shards and yield each one's ShardResult as it finishes; the job's files are
written by the workers (job.Aligner), so either engine gives the same rows."""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from multiprocessing import get_context

from tcdcn.align.job import Aligner, AlignSettings, Shard, ShardResult

ENGINES = ("local", "ray")

_aligner: Aligner | None = None   # the worker process's own (local engine)


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _init_worker(settings: dict, threads: int) -> None:
    global _aligner
    os.environ.setdefault("GLOG_minloglevel", "2")
    import cv2
    cv2.setNumThreads(threads)
    _aligner = Aligner(AlignSettings(**settings))


def _run_shard(shard: Shard) -> ShardResult:
    return _aligner(shard)


def run_local(shards: list[Shard], settings: AlignSettings, workers: int):
    """ShardResults as shards finish, from `workers` processes (spawned: each imports the
    package and loads its Detector once). Each worker gets its share of the cores for its
    libraries' threads (OpenMP, BLAS, OpenCV), as Ray gives its actors: two workers each
    using every core run slower than one."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    saved = {k: os.environ.get(k) for k in THREAD_VARIABLES}
    os.environ.update({k: str(threads) for k in THREAD_VARIABLES})   # the children's
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                 initializer=_init_worker,
                                 initargs=(asdict(settings), threads)) as pool:
            futures = [pool.submit(_run_shard, s) for s in shards]
            for f in as_completed(futures):
                yield f.result()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _RayAligner:
    """A Ray Data actor: loads the Detector once, aligns the shards of each batch."""

    def __init__(self, settings: dict):
        os.environ.setdefault("GLOG_minloglevel", "2")
        self.aligner = Aligner(AlignSettings(**settings))

    def __call__(self, batch: dict) -> dict:
        out = {"index": [], "images": [], "rows": [], "faces": [], "failed": [], "seconds": []}
        for i in range(len(batch["index"])):
            shard = Shard(int(batch["index"][i]), list(batch["items"][i]), str(batch["root"][i]),
                          str(batch["out"][i]))
            r = self.aligner(shard)
            for k in ("index", "images", "rows", "faces", "failed"):
                out[k].append(getattr(r, k))
            out["seconds"].append(r.seconds)
        return out


def run_ray(shards: list[Shard], settings: AlignSettings, workers: int,
            address: str | None = None):
    """ShardResults as shards finish, from an actor pool of `workers` on the Ray cluster at
    `address` (a local one, of `workers` CPUs, where none is given)."""
    try:
        import ray
    except ImportError:
        raise ImportError("the ray engine needs Ray: pip install './python[cluster]'") from None
    started = not ray.is_initialized()
    if started:
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")   # the C++ side's notes
        os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")      # our bar shows progress
        kwargs = {"address": address} if address else {"num_cpus": workers}
        ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 configure_logging=False, **kwargs)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.execution_options.preserve_order = False
        ds = ray.data.from_items([{"index": s.index, "items": s.items, "root": s.root,
                                   "out": s.out} for s in shards],
                                 override_num_blocks=max(1, len(shards)))
        results = ds.map_batches(_RayAligner, fn_constructor_kwargs={"settings": asdict(settings)},
                                 batch_size=1, num_cpus=1, batch_format="numpy",
                                 compute=ray.data.ActorPoolStrategy(size=workers))
        for row in results.iter_rows():
            yield ShardResult(int(row["index"]), int(row["images"]), int(row["rows"]),
                              int(row["faces"]), int(row["failed"]), dict(row["seconds"]))
    finally:
        if started:
            ray.shutdown()
