"""Staged training orchestration behind tools/train.py: run folders, the stages as
`caffe train` runs, their logs and state, resuming, the stop and divergence rules (rules in
training/monitor.py), the curves.

`train(args, command)` takes tools/train.py's parsed options (an argparse.Namespace) and the
command line that is recorded in the run's state.json.
"""
from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from tcdcn.build.caffe_build import build_info
from tcdcn.data.lmdb_io import decode_datum, read_lmdb
from tcdcn.paths import git_commit, write_json
from tcdcn.schemes import DENSE_MASK, TASKS
from tcdcn.training.monitor import (
    DivergenceGuard,
    LogParser,
    StopRule,
    aux_measure,
    landmark_measure,
    uncertainty_measure,
)
from tcdcn.training.net import (
    INPUT_SIZE,
    STAGES,
    NetOptions,
    SolverOptions,
    solver,
    train_net,
)
from tcdcn.training.weights import init_from_trunk, with_aux_branch

STAGE_ORDER = STAGES[:3]      # + "heads" with --refit-heads, "uncertainty" with --uncertainty


# The options that define a run: a rerun in the same folder must give the same ones.
# The iteration caps (--max-iter, --refit-heads) may change: a run can be extended.
RUN_OPTIONS = ("test_interval", "patience", "smooth", "batch", "lr", "lr_policy", "width",
               "seed", "conv4", "activation", "relu_after_norm", "landmarks_only",
               "unstaged", "init_trunk", "freeze_trunk", "trunk_lr_mult", "init_weights",
               "stages", "loss", "wing", "aux_hidden", "aux_branch", "uncertainty",
               "uncertainty_hidden", "landmark_lmdb", "aux_in_finetune")


def run_options(args) -> dict:
    return {"lmdb": str(args.lmdb.resolve()),
            **{k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
               for k, v in vars(args).items() if k in RUN_OPTIONS}}


def check_same_run(state: dict, args) -> None:
    """Refuse to continue a run folder with other options (the stages would mix them)."""
    recorded = state.get("options")
    if recorded is None or args.force:
        return
    now = run_options(args)
    # options the run did not record (added to train.py later) are not compared
    differ = [k for k in now if k in recorded and recorded[k] != now[k]]
    if differ:
        lines = "; ".join(f"--{k.replace('_', '-')}: run has {recorded[k]!r}, now {now[k]!r}"
                          for k in differ)
        raise SystemExit(f"error: {args.run} was started with other options ({lines}). Use "
                         "another --run folder, or --force to continue it anyway.")


def stage_caps(args) -> dict[str, int]:
    """Each stage's iteration cap."""
    return {**dict(zip(STAGE_ORDER, args.max_iter)), "heads": args.refit_heads,
            "uncertainty": getattr(args, "uncertainty_iters", 0)}


def stages_for(args) -> list[str]:
    if getattr(args, "stages", None):
        return list(args.stages)
    if args.unstaged:
        return ["multitask"]
    last = ["uncertainty"] if getattr(args, "uncertainty", None) else []
    if args.landmarks_only:
        return ["landmarks", "finetune"] + last
    return list(STAGE_ORDER) + (["heads"] if args.refit_heads > 0 else []) + last


def stage_net_options(args, stage: str, opts):
    """The net options of a stage: conv1-3's rate follows --freeze-trunk."""
    first = stages_for(args)[0]
    frozen = args.freeze_trunk == "all" or (args.freeze_trunk == "first" and stage == first)
    return replace(opts, trunk_lr_mult=0.0 if frozen else args.trunk_lr_mult)


def write_stage_files(args, stage: str, stage_dir: Path, n_val: int, opts,
                      attribute_labels: bool = True) -> Path:
    stage_dir.mkdir(parents=True, exist_ok=True)
    net_stage = "landmarks" if stage == "finetune" else stage
    if stage == "finetune" and getattr(args, "aux_in_finetune", False):
        net_stage = "multitask"   # every task on while the whole trunk trains
    val_batch = 100
    lmdb = args.lmdb
    if stage in ("landmarks", "finetune") and getattr(args, "landmark_lmdb", None):
        # the dense-point stages of a cross-dataset run read the dense-point LMDB alone
        lmdb, opts, attribute_labels = args.landmark_lmdb, opts.deployed(), False
    net = train_net(str((lmdb / "train_lmdb").resolve()), str((lmdb / "val_lmdb").resolve()),
                    net_stage, stage_net_options(args, stage, opts), batch=args.batch,
                    val_batch=val_batch, attribute_labels=attribute_labels)
    (stage_dir / "train_val.prototxt").write_text(str(net))
    cap = stage_caps(args)[stage]
    s = solver(str(stage_dir / "train_val.prototxt"), stage, str(stage_dir / stage),
               test_iter=max(1, -(-n_val // val_batch)),   # every validation face
               opts=SolverOptions(batch=args.batch, base_lr=args.lr, max_iter=cap,
                                  lr_policy=args.lr_policy if stage == "finetune" else "fixed",
                                  test_interval=args.test_interval, seed=args.seed))
    (stage_dir / "solver.prototxt").write_text(str(s))
    return stage_dir / "solver.prototxt"


def latest_solverstate(stage_dir: Path, stage: str) -> Path | None:
    states = sorted(stage_dir.glob(f"{stage}_iter_*.solverstate"),
                    key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    return states[-1] if states else None


def measure_for(stage: str, args, opts=None):
    if stage == "uncertainty":
        return "uncertainty", uncertainty_measure
    if opts is not None and opts.cross_dataset:
        # validation holds the dense-point faces only: every stage stops on their loss
        return "landmark", landmark_measure
    if stage == "heads" or (stage == "multitask" and not args.unstaged and not args.landmarks_only):
        return "auxiliary", aux_measure
    return "landmark", landmark_measure


def run_stage(args, stage: str, state: dict, caffe_tool: Path, opts) -> None:
    stage_dir = args.run / stage
    st = state["stages"].setdefault(stage, {"tests": [], "done": False})
    solver_path = write_stage_files(args, stage, stage_dir, state["n_val"], opts,
                                    state.get("attribute_labels", True))
    cmd = [str(caffe_tool), "train", "-solver", str(solver_path)]
    resume = latest_solverstate(stage_dir, stage)
    if resume is not None:
        cmd += ["-snapshot", str(resume)]
        done_iter = int(resume.stem.rsplit("_", 1)[1])
        # caffe tests again at the iteration it resumes from: drop that record, so that
        # every validation counts once and the stop rule decides as in an unbroken run
        st["tests"] = [t for t in st["tests"] if t["iter"] < done_iter]
    else:
        st["tests"] = []
        previous = state.get("best_weights") or state.get("init_weights")
        if previous and opts.aux_branch:   # conv4_aux starts as a copy of conv4
            previous = str(with_aux_branch(previous, opts, args.run / "init_branch.caffemodel"))
        if previous:
            cmd += ["-weights", previous]
    state.setdefault("commands", []).append(shlex.join(cmd))
    print("$ " + shlex.join(cmd), flush=True)
    save_state(args.run, state)

    name, measure = measure_for(stage, args, opts)
    rule = StopRule(patience=args.patience, smooth=args.smooth)
    parser = LogParser()
    guard = DivergenceGuard()
    env = {**os.environ, "GLOG_minloglevel": "0", "OMP_NUM_THREADS": str(args.threads),
           "OPENBLAS_NUM_THREADS": str(args.threads)}
    stopped_by_rule = False
    started = time.time()
    with open(stage_dir / "caffe.log", "a") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.PIPE, text=True, env=env,
                                cwd=args.run)
        try:
            for line in proc.stderr:
                log.write(line)
                finished = parser.feed(line)
                if parser.train and line.find(", loss = ") > 0:
                    t = parser.train[-1]
                    rate = parser.samples_per_s(args.batch)
                    print(f"  [{stage}] iter {t['iter']:6d}  train loss {t['loss']:.5f}  "
                          f"({time.time() - started:.0f}s"
                          f"{f', {rate:,.0f} samples/s' if rate else ''})", flush=True)
                    why = guard.check(t["loss"])
                    if why is not None:
                        proc.kill()   # no snapshot of the diverged weights
                        proc.wait()
                        st["diverged"] = {"iter": t["iter"], "why": why}
                        save_state(args.run, state)
                        good = latest_solverstate(stage_dir, stage)
                        raise SystemExit(
                            f"error: stage {stage} stopped at iteration {t['iter']}: {why}. "
                            f"Lower --lr. The last good snapshot: "
                            f"{good if good else 'none (the stage had not snapshotted yet)'}")
                if finished is not None:
                    stopped_by_rule |= on_test(finished, st, measure, name, rule, stage, proc)
                    save_state(args.run, state)
                    why = not_learning(st, name, state.get("mean_shape_loss"))
                    if why is not None:   # no need to wait for the cap
                        proc.kill()
                        proc.wait()
                        st["diverged"] = {"iter": st["tests"][-1]["iter"], "why": why}
                        save_state(args.run, state)
                        raise SystemExit(f"error: stage {stage} {why}; lower --lr")
            finished = parser.close()
            if finished is not None:
                on_test(finished, st, measure, name, rule, stage, None)
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)   # caffe snapshots and exits...
            for line in proc.stderr:          # ...while we keep its pipe drained
                log.write(line)
            proc.wait()
            save_state(args.run, state)
            raise
        rc = proc.wait()
    if rc != 0 and not stopped_by_rule:
        raise SystemExit(f"caffe train failed ({rc}); see {stage_dir / 'caffe.log'}")
    cap = stage_caps(args)[stage]
    last = latest_solverstate(stage_dir, stage)
    reached = int(last.stem.rsplit("_", 1)[1]) if last else 0
    if not stopped_by_rule and reached < cap:
        # caffe was stopped from outside (SIGINT/SIGHUP to it): the stage is not over
        save_state(args.run, state)
        raise SystemExit(f"error: caffe stopped at iteration {reached} of stage {stage} "
                         f"before its cap {cap}; rerun the same command to continue")
    scored = [t for t in st["tests"] if t.get("measure") is not None]
    if not scored:
        raise SystemExit(f"stage {stage} produced no validation results")
    best = min(scored, key=lambda t: t["measure"])
    why = not_learning(st, name, state.get("mean_shape_loss"))
    if why is not None:
        raise SystemExit(f"error: stage {stage} {why}; lower --lr")
    weights = stage_dir / f"{stage}_iter_{best['iter']}.caffemodel"
    if not weights.is_file():
        raise SystemExit(f"best snapshot {weights} is missing")
    st.update(done=True, best_iter=best["iter"], best_measure=best["measure"],
              measure=name, best_weights=str(weights), stopped_by_rule=stopped_by_rule,
              seconds=st.get("seconds", 0) + time.time() - started)
    state["best_weights"] = str(weights)
    save_state(args.run, state)
    print(f"[{stage}] best {name} measure {best['measure']:.6f} at iteration {best['iter']} "
          f"({'early stop' if stopped_by_rule else 'iteration cap'})", flush=True)


def on_test(record: dict, st: dict, measure, name: str, rule, stage: str, proc) -> bool:
    record = dict(record)
    record["measure"] = measure(record)
    st["tests"].append(record)
    values = [t["measure"] for t in st["tests"] if t["measure"] is not None]
    shown = ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k not in ("iter", "measure"))
    if record["measure"] is None:   # a test cut short (caffe stopped during it)
        print(f"  [{stage}] validation @ {record['iter']}: incomplete, not counted", flush=True)
        return False
    print(f"  [{stage}] validation @ {record['iter']}: {name} measure "
          f"{record['measure']:.6f} ({shown})", flush=True)
    if proc is not None and rule.should_stop(values):
        print(f"  [{stage}] {name} measure stopped improving: stopping the stage", flush=True)
        proc.send_signal(signal.SIGINT)  # caffe snapshots and exits
        return True
    return False


# A stage of NOT_LEARNING_AFTER iterations or more whose best validation landmark loss is
# NOT_LEARNING times that of the mean shape learned nothing (our main run was at 0.7 times
# it after 400 iterations; runs of a few dozen iterations are not judged).
NOT_LEARNING = 10


NOT_LEARNING_AFTER = 300


def not_learning(st: dict, name: str, mean_shape: float | None) -> str | None:
    """Why a stage learned nothing (a saturated tanh head: a diverged run whose loss never
    turned NaN), judged on its validations so far; None while it is fine."""
    scored = [t for t in st["tests"] if t.get("measure") is not None]
    if scored and not math.isfinite(scored[-1]["measure"]):
        return (f"diverged: its validation {name} measure is {scored[-1]['measure']} at "
                f"iteration {scored[-1]['iter']}")
    if name != "landmark" or mean_shape is None or not scored \
            or scored[-1]["iter"] < NOT_LEARNING_AFTER:
        return None
    best = min(scored, key=lambda t: t["measure"])
    if best["measure"] <= NOT_LEARNING * mean_shape:
        return None
    return (f"did not learn: its best validation landmark loss {best['measure']:.5g} "
            f"(iteration {best['iter']}) is over {NOT_LEARNING} times that of predicting the "
            f"mean shape ({mean_shape:.5g})")


def mean_shape_loss(val_lmdb: Path, n_coords: int) -> float | None:
    """Caffe's Euclidean loss on the validation set of a model that always predicts the
    mean shape: a stage whose best loss is worse than this learned nothing."""
    targets = np.array([decode_datum(v)[1][:n_coords] for _, v in read_lmdb(val_lmdb)])
    if len(targets) == 0:
        return None
    return float(0.5 * ((targets - targets.mean(axis=0)) ** 2).sum(axis=1).mean())


def save_state(run: Path, state: dict) -> None:
    write_json(run / "state.json", state)


def loss_options(args) -> dict:
    """NetOptions fields of the landmark loss (Wing's parameters in crop units)."""
    if args.loss != "wing":
        return {}
    w, epsilon = args.wing
    if w <= 0 or epsilon <= 0:
        raise SystemExit(f"error: --wing {w} {epsilon}: both must be positive")
    return dict(landmark_loss="wing", wing_w=w / INPUT_SIZE, wing_epsilon=epsilon / INPUT_SIZE)


def plot(run: Path, state: dict) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    offset = 0
    for stage in STAGE_ORDER + ("heads",):
        log = run / stage / "caffe.log"
        if not log.is_file():
            continue
        parser = LogParser()
        for line in log.read_text().splitlines():
            parser.feed(line)
        parser.close()
        # the validation curve is Euclidean with either training loss; a Wing training
        # loss is in other units and stays off this axis
        key = "landmark_euclidean" if any("landmark_euclidean" in t for t in parser.tests) \
            else "landmark_loss"
        tr = [t for t in parser.train if "landmark_loss" in t] if key == "landmark_loss" else []
        if tr:
            axes[0].plot([offset + t["iter"] for t in tr], [t["landmark_loss"] for t in tr],
                         lw=0.8, label=f"{stage} train")
        te = [t for t in parser.tests if key in t]
        if te:
            axes[0].plot([offset + t["iter"] for t in te], [t[key] for t in te],
                         "o-", ms=3, label=f"{stage} val")
        for task in TASKS:
            pts = [t for t in parser.tests if f"{task.name}_accuracy" in t]
            if pts:
                axes[1].plot([offset + t["iter"] for t in pts],
                             [t[f"{task.name}_accuracy"] for t in pts], ".-",
                             label=f"{task.name} ({stage})")
        if parser.train:
            offset += parser.train[-1]["iter"]
    axes[0].set_yscale("log")
    axes[0].set_xlabel("iteration (stages end to end)")
    axes[0].set_ylabel("landmark Euclidean loss")
    # caffe's Euclidean loss is half the summed squared error in crop units (1/40 per px)
    k = len(state["lmdb_manifest"]["landmark_names"])
    size = state["lmdb_manifest"]["crop"]["size"]
    one_px = 0.5 * 2 * k / size ** 2
    axes[0].axhline(one_px, color="grey", ls=":", lw=0.8)
    axes[0].text(0, one_px * 1.06, f"1 px error in x and in y on all {k} points", fontsize=7,
                 color="grey")
    axes[0].legend(fontsize=7)
    axes[1].set_xlabel("iteration (stages end to end)")
    axes[1].set_ylabel("validation accuracy")
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize=6, ncol=2)
    else:
        axes[1].text(0.5, 0.5, "no auxiliary tasks", ha="center", transform=axes[1].transAxes)
    fig.tight_layout()
    path = run / "curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def check_landmark_lmdb(manifest: dict, lmdb: Path, landmark_lmdb: Path) -> None:
    """--landmark-lmdb must hold the dense points alone, of the crops and validation faces
    that --lmdb (a tools/mix_lmdb.py output) mixed them from."""
    path = landmark_lmdb / "manifest.json"
    if DENSE_MASK not in manifest["label_layout"]:
        raise SystemExit(f"error: --landmark-lmdb goes with a mixed --lmdb (tools/mix_lmdb.py); "
                         f"{lmdb} is not one")
    if not path.is_file():
        raise SystemExit(f"error: {path} not found: --landmark-lmdb must be a folder written "
                         "by tools/make_lmdb.py")
    other = json.loads(path.read_text())
    problems = []
    if other["scheme"] != manifest["scheme"] or "pose" in other["label_layout"]:
        problems.append(f"it holds {other['scheme']} records"
                        + (" with attributes" if "pose" in other["label_layout"] else "")
                        + f", not {manifest['scheme']} records alone")
    if other["crop"] != manifest["crop"]:
        problems.append(f"its crops are {other['crop']['size']} px, not {manifest['crop']['size']}")
    if other["counts"]["val_records"] != manifest["counts"]["val_records"]:
        problems.append(f"it validates on {other['counts']['val_records']} faces, not "
                        f"{manifest['counts']['val_records']}")
    if problems:
        raise SystemExit(f"error: --landmark-lmdb {landmark_lmdb}: " + "; ".join(problems))


def train(args, command: str) -> int:
    """Run (or continue) every stage of a run folder; 0 when done, 130 when interrupted."""
    args.run.mkdir(parents=True, exist_ok=True)
    args.run = args.run.resolve()
    manifest_path = args.lmdb / "manifest.json"
    if not manifest_path.is_file():
        raise SystemExit(f"error: {manifest_path} not found: --lmdb must be a folder written "
                         "by tools/make_lmdb.py")
    manifest = json.loads(manifest_path.read_text())
    attribute_labels = "pose" in manifest["label_layout"]
    if not attribute_labels and not args.landmarks_only:
        print(f"{args.lmdb} holds landmarks only: training without auxiliary tasks "
              "(--landmarks-only)", flush=True)
        args.landmarks_only = True
    landmark_lmdb = getattr(args, "landmark_lmdb", None)
    if landmark_lmdb is not None:
        check_landmark_lmdb(manifest, args.lmdb, landmark_lmdb)
    if args.init_trunk is not None and not args.init_trunk.exists():
        raise SystemExit(f"error: --init-trunk {args.init_trunk}: no such model folder or file")
    init_weights = getattr(args, "init_weights", None)
    if init_weights is not None and not init_weights.is_file():
        raise SystemExit(f"error: --init-weights {init_weights}: no such file")
    if manifest["counts"]["val_records"] == 0:
        raise SystemExit(f"error: {args.lmdb} has no validation faces; rebuild it with "
                         "--val-fraction above 0 (validation chooses snapshots and stops stages)")
    opts = NetOptions(scheme=manifest["scheme"], conv4=args.conv4,
                      landmark_activation=args.activation,
                      relu_after_norm=args.relu_after_norm, width=args.width,
                      auxiliary=not args.landmarks_only, aux_hidden=args.aux_hidden,
                      aux_branch=args.aux_branch,
                      input_size=int(manifest["crop"]["size"]),
                      uncertainty=getattr(args, "uncertainty", None) or "",
                      uncertainty_hidden=getattr(args, "uncertainty_hidden", 0),
                      cross_dataset=DENSE_MASK in manifest["label_layout"],
                      labelled_fraction=manifest.get("cross_dataset", {}).get("main_fraction", 1.0),
                      **loss_options(args))
    if opts.aux_branch and not opts.aux_hidden:
        raise SystemExit("error: --aux-branch needs --aux-hidden N (the heads on the branch)")
    state_path = args.run / "state.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {
        "lmdb": str(args.lmdb.resolve()), "net_options": opts.as_dict(), "stages": {},
        "n_val": manifest["counts"]["val_records"],
        "train_command": command,
        "commit": git_commit(mark_dirty=False),
        "lmdb_manifest": manifest, "options": run_options(args),
        "attribute_labels": attribute_labels}
    check_same_run(state, args)
    if args.init_trunk is not None and not state.get("best_weights") \
            and not state.get("init_weights"):
        try:
            init = init_from_trunk(args.init_trunk, opts, args.run / "init_trunk.caffemodel",
                                   seed=args.seed)
        except (ValueError, FileNotFoundError) as err:
            raise SystemExit(f"error: --init-trunk {args.init_trunk}: {err}")
        state["init_weights"] = str(init)
        print(f"wrote {init}: conv1-3 from {args.init_trunk}, the rest freshly initialised")
    if init_weights is not None and not state.get("init_weights"):
        state["init_weights"] = str(init_weights.resolve())
    # every invocation is kept; the latest (its caps may differ) is the run's command
    state.setdefault("invocations", [])
    if not state["invocations"] or state["invocations"][-1] != command:
        state["invocations"].append(command)
    state["train_command"] = command
    state["caps"] = {k: v for k, v in stage_caps(args).items() if k in stages_for(args)}
    caffe_tool = build_info().caffe_tool
    if "mean_shape_loss" not in state:
        state["mean_shape_loss"] = mean_shape_loss(args.lmdb / "val_lmdb",
                                                   2 * len(manifest["landmark_names"]))
    for stage in stages_for(args):
        if state["stages"].get(stage, {}).get("done"):
            state["best_weights"] = state["stages"][stage]["best_weights"]
            print(f"[{stage}] done earlier (best at iteration {state['stages'][stage]['best_iter']})")
            continue
        try:
            run_stage(args, stage, state, caffe_tool, opts)
        except KeyboardInterrupt:
            print(f"interrupted in stage {stage}: caffe snapshotted; rerun the same command "
                  "to continue", file=sys.stderr)
            return 130
    shutil.copyfile(state["best_weights"], args.run / "best.caffemodel")
    (args.run / "log.json").write_text(json.dumps(state["stages"], indent=2) + "\n")
    print(f"wrote {args.run / 'best.caffemodel'}, {args.run / 'log.json'}, {plot(args.run, state)}")
    return 0
