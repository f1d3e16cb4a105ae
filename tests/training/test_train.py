"""tools/train.py on a tiny LMDB: all three stages, the outputs, and resuming after a kill."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

# the LMDB records are caffe Datums (caffe.proto, from our Caffe build)
pytest.importorskip("caffe.proto", reason="pycaffe does not import: run tools/setup.sh")
from tcdcn.training import release

from tests.helpers import REPO, run

pytestmark = [pytest.mark.caffe, pytest.mark.slow]

TINY = ["--max-iter", "30", "20", "20", "--test-interval", "10", "--batch", "16",
        "--patience", "2", "--threads", "1"]


@pytest.fixture
def tiny_lmdb(dataset, tmp_path):
    from tcdcn.data.lmdb_build import BuildConfig, build
    out = tmp_path / "lmdb"
    build(BuildConfig(dataset="mtfl", root=dataset, out=out, samples=400, val_fraction=0.25,
                      seed=1, workers=1))
    return out


def test_three_stages_and_their_outputs(tiny_lmdb, tmp_path, python_exe):
    runs = tmp_path / "run"
    out = run([python_exe, REPO / "tools" / "train.py", "--lmdb", tiny_lmdb, "--run", runs, *TINY,
               "--refit-heads", "20"])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    state = json.loads((runs / "state.json").read_text())
    assert [s for s in state["stages"]] == ["multitask", "landmarks", "finetune", "heads"]
    for name, stage in state["stages"].items():
        assert stage["done"] and stage["tests"], name
        assert (runs / name / f"{name}_iter_{stage['best_iter']}.caffemodel").is_file()
    assert state["stages"]["multitask"]["measure"] == "auxiliary"
    assert state["stages"]["finetune"]["measure"] == "landmark"
    # stage 2 starts from stage 1's best, stage 3 from stage 2's
    assert f"-weights {state['stages']['multitask']['best_weights']}" in state["commands"][1]
    assert f"-weights {state['stages']['landmarks']['best_weights']}" in state["commands"][2]
    assert "weight_decay: 0\n" in (runs / "finetune" / "solver.prototxt").read_text()
    assert f"-weights {state['stages']['finetune']['best_weights']}" in state["commands"][3]
    assert state["stages"]["heads"]["measure"] == "auxiliary"
    assert (runs / "best.caffemodel").read_bytes() == open(
        state["stages"]["heads"]["best_weights"], "rb").read()
    # the heads stage leaves the trunk and the landmark head as finetuning left them
    import caffe
    from tcdcn.training.net import NetOptions, deploy_net
    (tmp_path / "d.prototxt").write_text(str(deploy_net(NetOptions())))
    a = caffe.Net(str(tmp_path / "d.prototxt"), caffe.TEST, weights=state["stages"]["finetune"]["best_weights"])
    b = caffe.Net(str(tmp_path / "d.prototxt"), caffe.TEST, weights=str(runs / "best.caffemodel"))
    for name in ("conv1", "conv4", "fc5", "fc_landmarks"):
        assert (a.params[name][0].data == b.params[name][0].data).all(), name
    assert not (a.params["fc_pose"][0].data == b.params["fc_pose"][0].data).all()
    assert (runs / "curves.png").is_file() and json.loads((runs / "log.json").read_text())
    # the printed commands run by hand
    for cmd in state["commands"]:
        assert cmd.split()[1:3] == ["train", "-solver"]


def long_run_args(python_exe, lmdb, runs, cap: str) -> list:
    """A stage-1 run long enough to be interrupted (snapshot every 10 iterations)."""
    return [python_exe, REPO / "tools" / "train.py", "--lmdb", lmdb, "--run", runs,
            "--max-iter", cap, "20", "20", "--test-interval", "10", "--batch", "16",
            "--patience", "100000", "--threads", "1"]


def start_until_snapshot(args, runs, **popen) -> subprocess.Popen:
    """Start train.py and return once stage 1 has snapshotted iteration 20."""
    proc = subprocess.Popen([str(a) for a in args], stdout=subprocess.DEVNULL, **popen)
    deadline = time.time() + 120
    while not list((runs / "multitask").glob("multitask_iter_20.solverstate")):
        assert time.time() < deadline and proc.poll() is None, "no snapshot appeared"
        time.sleep(0.2)
    return proc


def test_rerun_after_kill_continues_from_last_snapshot(tiny_lmdb, tmp_path, python_exe):
    runs = tmp_path / "run"
    args = long_run_args(python_exe, tiny_lmdb, runs, "400")
    proc = start_until_snapshot(args, runs, stderr=subprocess.DEVNULL, start_new_session=True)
    os.killpg(proc.pid, signal.SIGKILL)   # the whole group: train.py and caffe
    proc.wait()
    args[args.index("400")] = "40"
    out = run(args)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    state = json.loads((runs / "state.json").read_text())
    resumed = [c for c in state["commands"] if "-snapshot" in c]
    assert resumed and "multitask_iter_" in resumed[0]
    iters = [t["iter"] for t in state["stages"]["multitask"]["tests"]]
    assert iters == sorted(set(iters)), "no validation counted twice after the resume"
    assert state["stages"]["finetune"]["done"]
    # a third run finds everything done and only rewrites the outputs
    again = run(args)
    assert again.returncode == 0 and again.stdout.count("done earlier") == 3


def test_release_and_ablation_tools_on_a_tiny_run(tiny_lmdb, dataset, tmp_path, python_exe):
    runs = tmp_path / "run"
    assert run([python_exe, REPO / "tools" / "train.py", "--lmdb", tiny_lmdb, "--run", runs,
                *TINY]).returncode == 0
    model = tmp_path / "model"
    out = run([python_exe, REPO / "tools" / "release_model.py", "--run", runs, "--out", model,
               "--root", dataset, "--calibration-faces", "0", "--validation-only"])
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    meta = json.loads((model / "model.json").read_text())
    for key in ("input", "landmark_scheme", "attributes", "training", "commit", "numbers",
                "detector_calibration", "files"):
        assert key in meta, key
    assert meta["input"]["size"] == 40 and meta["landmark_scheme"] == "5pt"
    assert "train.py" in meta["training"]["command"]
    val = meta["numbers"]["validation_list_boxes"]
    assert val["n_faces"] == 6 and val["nme_mean"] > 0
    assert (model / "deploy.prototxt").is_file() and (model / meta["files"]["weights"]).is_file()
    ab = tmp_path / "ablation"
    out = run([python_exe, REPO / "tools" / "ablate.py", "--lmdb", tiny_lmdb, "--out", ab,
               "--root", dataset, "--max-iter", "20", "10", "10", "--test-interval", "10",
               "--only", "baseline", "conv4"])
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    table = (ab / "ablations.md").read_text()
    assert table.count("\n") == 4 and "Convolution" in table


def test_rerun_with_other_options_is_refused(tiny_lmdb, tmp_path, python_exe):
    runs = tmp_path / "run"
    first = [python_exe, REPO / "tools" / "train.py", "--lmdb", tiny_lmdb, "--run", runs, *TINY]
    assert run(first).returncode == 0
    before = (runs / "state.json").read_text()
    out = run(first + ["--lr", "0.5"])
    assert out.returncode != 0
    assert "--lr: run has 0.03, now 0.5" in out.stderr, out.stderr[-2000:]
    assert (runs / "state.json").read_text() == before, "the refused rerun changed the run"


def test_diverging_run_stops_loudly_and_keeps_no_bad_snapshot(tiny_lmdb, tmp_path, python_exe):
    runs = tmp_path / "run"
    out = run([python_exe, REPO / "tools" / "train.py", "--lmdb", tiny_lmdb, "--run", runs,
               "--max-iter", "300", "10", "10", "--test-interval", "100", "--batch", "16",
               "--threads", "1", "--lr", "1e6"])
    assert out.returncode != 0
    assert "error: stage multitask stopped at iteration" in out.stderr, out.stderr[-2000:]
    assert "Lower --lr" in out.stderr
    assert not (runs / "best.caffemodel").exists()
    state = json.loads((runs / "state.json").read_text())
    assert state["stages"]["multitask"]["diverged"]["iter"] > 0


def test_sigterm_snapshots_and_the_stage_is_not_taken_as_done(tiny_lmdb, tmp_path, python_exe):
    runs = tmp_path / "run"
    args = long_run_args(python_exe, tiny_lmdb, runs, "100000")
    proc = start_until_snapshot(args, runs, stderr=subprocess.PIPE, text=True)
    proc.send_signal(signal.SIGTERM)          # train.py only: it must stop caffe itself
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert "rerun the same command to continue" in err
    state = json.loads((runs / "state.json").read_text())
    assert not state["stages"]["multitask"].get("done"), "an interrupted stage counted as done"
    assert "landmarks" not in state["stages"]
    last = max(int(p.stem.rsplit("_", 1)[1])
               for p in (runs / "multitask").glob("multitask_iter_*.solverstate"))
    assert last >= 20   # caffe snapshotted where it stopped


def test_continue_another_run_from_its_weights(tiny_lmdb, tmp_path, python_exe):
    """--init-weights + --stages: train an earlier run's model longer, only the stages named,
    starting from all of its weights."""
    first = tmp_path / "first"
    out = run([python_exe, REPO / "tools" / "train.py", "--lmdb", tiny_lmdb, "--run", first,
               "--landmarks-only", *TINY])
    assert out.returncode == 0, out.stderr[-3000:]
    more = tmp_path / "more"
    weights = first / "best.caffemodel"
    out = run([python_exe, REPO / "tools" / "train.py", "--lmdb", tiny_lmdb, "--run", more,
               *TINY, "--init-weights", weights, "--stages", "finetune", "heads",
               "--refit-heads", "10"])
    assert out.returncode == 0, out.stderr[-3000:]
    state = json.loads((more / "state.json").read_text())
    assert list(state["stages"]) == ["finetune", "heads"]
    assert f"-weights {weights.resolve()}" in state["commands"][0]
    assert state["init_weights"] == str(weights.resolve())
    bad = run([python_exe, REPO / "tools" / "train.py", "--lmdb", tiny_lmdb, "--run",
               tmp_path / "x", *TINY, "--stages", "heads"])
    assert bad.returncode == 2 and "--refit-heads" in bad.stderr


def test_an_incomplete_validation_record_is_not_counted():
    """caffe stopped during a test (early stop with --test-interval below the display
    interval) leaves a record without outputs: it is reported, not a TypeError."""
    from tcdcn.training.monitor import StopRule, landmark_measure
    from tcdcn.training.staged import on_test
    st = {"tests": []}
    stopped = on_test({"iter": 30}, st, landmark_measure, "landmark", StopRule(), "x", None)
    assert stopped is False and st["tests"][0]["measure"] is None
    on_test({"iter": 40, "landmark_loss": 0.5}, st, landmark_measure, "landmark",
            StopRule(), "x", None)
    assert [t["measure"] for t in st["tests"]] == [None, 0.5]


def test_a_run_that_never_learns_is_an_error(tiny_lmdb, tmp_path, python_exe):
    """lr 1000 saturates the tanh head without a NaN: the loss stays far above what the
    mean shape gives, the stage is an error and no best.caffemodel is written."""
    runs = tmp_path / "run"
    out = run([python_exe, REPO / "tools" / "train.py", "--lmdb", tiny_lmdb, "--run", runs,
               "--max-iter", "1", "300", "10", "--test-interval", "100", "--batch", "16",
               "--threads", "1", "--lr", "1000", "--landmarks-only"])
    assert out.returncode != 0
    assert "did not learn" in out.stderr and "mean shape" in out.stderr, out.stderr[-2000:]
    assert not (runs / "best.caffemodel").exists()


def test_wing_loss_run_is_chosen_on_the_euclidean_validation_loss(tiny_lmdb, tmp_path, python_exe):
    runs = tmp_path / "wing"
    out = run([python_exe, REPO / "tools" / "train.py", "--lmdb", tiny_lmdb, "--run", runs,
               "--landmarks-only", *TINY, "--loss", "wing", "--wing", "5", "1", "--lr", "1e-4"])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    state = json.loads((runs / "state.json").read_text())
    assert state["net_options"]["landmark_loss"] == "wing"
    assert state["net_options"]["wing_w"] == 5 / 40 and state["net_options"]["wing_epsilon"] == 1 / 40
    train_net = (runs / "finetune" / "train_val.prototxt").read_text()
    assert 'type: "WingLoss"' in train_net
    for stage in state["stages"].values():
        tests = [t for t in stage["tests"] if t.get("measure") is not None]
        assert tests and all(t["measure"] == t["landmark_euclidean"] for t in tests)
        assert all(t["landmark_loss"] != t["landmark_euclidean"] for t in tests)
    bad = run([python_exe, REPO / "tools" / "train.py", "--lmdb", tiny_lmdb, "--run",
               tmp_path / "x", *TINY, "--loss", "wing", "--wing", "0", "1"])
    assert bad.returncode != 0 and "--wing" in bad.stderr


def test_heads_with_a_hidden_layer_refit_on_a_finished_run(tiny_lmdb, tmp_path, python_exe):
    """--aux-hidden on --stages heads: the new heads start fresh (the linear heads' weights
    have other names and are not copied), the trunk and landmark head stay as they were."""
    first = tmp_path / "first"
    out = run([python_exe, REPO / "tools" / "train.py", "--lmdb", tiny_lmdb, "--run", first,
               *TINY, "--unstaged"])
    assert out.returncode == 0, out.stderr[-3000:]
    more = tmp_path / "mlp"
    out = run([python_exe, REPO / "tools" / "train.py", "--lmdb", tiny_lmdb, "--run", more,
               *TINY, "--init-weights", first / "best.caffemodel", "--stages", "heads",
               "--refit-heads", "20", "--aux-hidden", "16"])
    assert out.returncode == 0, out.stderr[-3000:]
    state = json.loads((more / "state.json").read_text())
    assert state["net_options"]["aux_hidden"] == 16 and list(state["stages"]) == ["heads"]
    import caffe
    from tcdcn.training.net import NetOptions, deploy_net
    (tmp_path / "a.prototxt").write_text(str(deploy_net(NetOptions())))
    (tmp_path / "b.prototxt").write_text(str(deploy_net(NetOptions(aux_hidden=16))))
    a = caffe.Net(str(tmp_path / "a.prototxt"), caffe.TEST, weights=str(first / "best.caffemodel"))
    b = caffe.Net(str(tmp_path / "b.prototxt"), caffe.TEST, weights=str(more / "best.caffemodel"))
    for name in ("conv1", "conv4", "fc5", "fc_landmarks"):
        assert (a.params[name][0].data == b.params[name][0].data).all(), name
    assert b.params["fc_pose_hidden"][0].data.any() and "fc_pose" not in b.params


def test_data_ablations_build_their_own_lmdbs(dataset, tmp_path, python_exe):
    """--suite 5pt-data: each variant's LMDB is built once from its make_lmdb.py options
    (shared where they are equal), batch 128 runs twice the iterations, a second seed is a
    result of its own, and a rerun redoes nothing."""
    ab = tmp_path / "abl"
    args = [python_exe, REPO / "tools" / "ablate.py", "--suite", "5pt-data", "--out", ab,
            "--root", dataset, "--lmdb-samples", "300", "--max-iter", "10", "5", "5",
            "--test-interval", "5", "--only", "baseline", "no pose", "batch 128"]
    out = run(args)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    results = json.loads((ab / "ablations.json").read_text())
    assert len(results) == 3
    lmdbs = sorted(p.name for p in ab.glob("lmdb_*"))
    assert lmdbs == ["lmdb_profile_weight_1", "lmdb_profile_weight_3"]
    weights = {json.loads((ab / p / "manifest.json").read_text())["profile_weight"] for p in lmdbs}
    assert weights == {1, 3}
    by_name = {k.split(" (")[0]: v for k, v in results.items()}
    assert by_name["baseline"]["budget"] == [10, 5, 5]
    assert by_name["batch 128"]["budget"] == [20, 10, 10]
    assert by_name["batch 128"]["lmdb"] == by_name["baseline"]["lmdb"]
    assert "--profile-weight 1" in by_name["no pose balance"]["lmdb_command"]
    assert all(r["val_nme"] > 0 for r in results.values())
    again = run(args)
    assert again.returncode == 0 and again.stdout.count("done earlier") == 3
    assert "make_lmdb" not in again.stdout
    seed2 = run(args[:-3] + ["baseline", "--seed", "2"])
    assert seed2.returncode == 0, seed2.stderr[-2000:]
    results = json.loads((ab / "ablations.json").read_text())
    assert len(results) == 4 and any(k.endswith("[seed 2]") for k in results)


def test_a_second_landmark_pass_must_pay_for_itself():
    """training.release.choose_crop_path: the lowest validation NME, but refine 1 (twice the
    landmark model's time) only where it beats the best single pass by more than
    REFINE_MIN_GAIN."""
    tool = release
    gain = tool.REFINE_MIN_GAIN
    tried = {("box", 0): 3.25, ("box", 1): 3.06, ("points", 0): 3.08, ("points", 1): 3.07}
    assert gain > 0.02 and tool.choose_crop_path(tried) == ("points", 0)
    tried[("box", 1)] = 3.08 - gain - 0.01
    assert tool.choose_crop_path(tried) == ("box", 1)
    assert tool.choose_crop_path({("box", 0): 3.3, ("points", 0): 3.2}) == ("points", 0)
    assert tool.choose_crop_path({("box", 1): 3.0}) == ("box", 1)


def test_lineage_of_a_run_whose_first_weights_it_made_itself(tmp_path):
    """A run started with --init-trunk keeps its first weights inside itself: its lineage
    names the trunk's model once instead of following the run into itself."""
    tool = release
    run_dir, model = tmp_path / "runs" / "r68", tmp_path / "models" / "m5"
    run_dir.mkdir(parents=True)
    model.mkdir(parents=True)
    init = str(run_dir / "init_trunk.caffemodel")
    (run_dir / "state.json").write_text(json.dumps({"init_weights": init, "commit": None,
                                                    "options": {"init_trunk": str(model)}}))
    (model / "model.json").write_text(json.dumps({"name": "m5", "commit": "abc",
                                                  "training": {"command": "train m5"}}))
    found = tool.started_from(init, 0, None, trunk=str(model))
    assert found["made_by"].endswith(str(model)) and "started_from" not in found
    assert found["trunk_from"]["model"] == "m5" and found["trunk_from"]["weights"] == str(model)
    assert found["trunk_from"]["training"] == {"command": "train m5"}


def test_uncertainty_stage_learns_log_scales_and_leaves_the_points(tiny_lmdb, tmp_path, python_exe):
    """--stages uncertainty on a finished run: only landmark_logscale learns (every other
    weight stays bit for bit), its validation NLL is the stage's measure, and the deploy net
    of the run's options outputs the log-scales."""
    first = tmp_path / "first"
    out = run([python_exe, REPO / "tools" / "train.py", "--lmdb", tiny_lmdb, "--run", first,
               *TINY, "--unstaged"])
    assert out.returncode == 0, out.stderr[-3000:]
    unc = tmp_path / "unc"
    cmd = [python_exe, REPO / "tools" / "train.py", "--lmdb", tiny_lmdb, "--run", unc, *TINY,
           "--init-weights", first / "best.caffemodel", "--stages", "uncertainty",
           "--uncertainty", "laplace", "--uncertainty-iters", "40", "--lr", "1e-3"]
    out = run(cmd)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    state = json.loads((unc / "state.json").read_text())
    assert state["net_options"]["uncertainty"] == "laplace"
    stage = state["stages"]["uncertainty"]
    assert stage["measure"] == "uncertainty"
    tests = [t for t in stage["tests"] if t.get("measure") is not None]
    assert tests and all(t["measure"] == t["uncertainty_loss"] for t in tests)
    # the NLL falls from where the head starts (a constant ln 0.01)
    assert tests[-1]["measure"] < tests[0]["measure"] or stage["best_iter"] > tests[0]["iter"]
    import caffe
    from tcdcn.training.net import NetOptions, deploy_net
    (tmp_path / "a.prototxt").write_text(str(deploy_net(NetOptions())))
    (tmp_path / "b.prototxt").write_text(str(deploy_net(NetOptions(uncertainty="laplace"))))
    a = caffe.Net(str(tmp_path / "a.prototxt"), caffe.TEST, weights=str(first / "best.caffemodel"))
    b = caffe.Net(str(tmp_path / "b.prototxt"), caffe.TEST, weights=str(unc / "best.caffemodel"))
    for name in a.params:
        for pa, pb in zip(a.params[name], b.params[name]):
            assert (pa.data == pb.data).all(), name
    w, bias = b.params["landmark_logscale"]
    assert w.data.shape == (10, 256) and (bias.data != -4.6).any()
    assert "landmark_logscale" in b.outputs
    bad = run([python_exe, REPO / "tools" / "train.py", "--lmdb", tiny_lmdb, "--run",
               tmp_path / "x", *TINY, "--uncertainty", "laplace"])
    assert bad.returncode != 0 and "--uncertainty-iters" in bad.stderr


def test_input_size_follows_the_lmdb(dataset, tmp_path, python_exe):
    """A 48-pixel LMDB trains a net with 48x48 inputs (conv4 then has 3x3 outputs); the
    run records the size and the released model.json says it."""
    from tcdcn.data.lmdb_build import BuildConfig, build
    lmdb = tmp_path / "lmdb48"
    build(BuildConfig(dataset="mtfl", root=dataset, out=lmdb, samples=200, val_fraction=0.25,
                      seed=1, workers=1, size=48))
    runs = tmp_path / "r48"
    out = run([python_exe, REPO / "tools" / "train.py", "--lmdb", lmdb, "--run", runs, *TINY,
               "--unstaged"])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    state = json.loads((runs / "state.json").read_text())
    assert state["net_options"]["input_size"] == 48
    import caffe
    from tcdcn.training.net import NetOptions, deploy_net
    (tmp_path / "d.prototxt").write_text(str(deploy_net(NetOptions(input_size=48))))
    net = caffe.Net(str(tmp_path / "d.prototxt"), caffe.TEST, weights=str(runs / "best.caffemodel"))
    assert net.blobs["data"].data.shape == (1, 1, 48, 48)
    assert net.blobs["conv4"].data.shape == (1, 80, 3, 3)
