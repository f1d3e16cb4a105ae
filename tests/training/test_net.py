"""The net generator, the committed prototxt (golden), and the metrics."""
from __future__ import annotations

import numpy as np
import pytest
from tcdcn.evaluation.metrics import attribute_report, landmark_report
from tcdcn.schemes import FIVE_POINT, TASKS
from tcdcn.training.monitor import LogParser, StopRule, aux_measure

from tests.helpers import REPO, run

pytestmark = pytest.mark.caffe


def test_committed_prototxt_match_the_generator(python_exe):
    out = run([python_exe, REPO / "tools" / "gen_prototxt.py", "--check"])
    assert out.returncode == 0, out.stderr


def test_generator_check_fails_on_a_hand_edit(python_exe, tmp_path):
    import shutil
    shutil.copytree(REPO / "prototxt", tmp_path / "prototxt")
    deploy = tmp_path / "prototxt" / "tcdcn_5pt" / "deploy.prototxt"
    deploy.write_text(deploy.read_text().replace("num_output: 80", "num_output: 81"))
    out = run([python_exe, REPO / "tools" / "gen_prototxt.py", "--check", "--out",
               tmp_path / "prototxt"])
    assert out.returncode == 1 and "deploy.prototxt" in out.stderr


def test_deploy_net_shapes_and_outputs(caffe, tmp_path):
    from tcdcn.training.net import NetOptions, deploy_net
    for opts in (NetOptions(), NetOptions(conv4="convolution", landmark_activation="abs_tanh",
                                          relu_after_norm=True)):
        (tmp_path / "d.prototxt").write_text(str(deploy_net(opts, batch=3)))
        net = caffe.Net(str(tmp_path / "d.prototxt"), caffe.TEST)
        net.blobs["data"].data[...] = np.random.default_rng(0).integers(0, 256, (3, 1, 40, 40))
        out = net.forward()
        assert out["landmarks"].shape == (3, 10)
        assert net.blobs["conv4"].data.shape == (3, 80, 2, 2)
        for t in TASKS:
            p = out[f"{t.name}_prob"]
            assert p.shape == (3, len(t.classes))
            np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
        if opts.landmark_activation == "abs_tanh":
            assert (out["landmarks"] >= 0).all()


def test_stages_differ_only_in_aux_heads(caffe):
    from tcdcn.training.net import train_net
    multi = train_net("t", "v", "multitask")
    land = train_net("t", "v", "landmarks")
    names = [l.name for l in multi.layer]
    assert names == [l.name for l in land.layer], "layer names carry weights across stages"
    for a, b in zip(multi.layer, land.layer):
        if a.name.endswith("_loss") and a.name != "landmark_loss":
            task = next(t for t in TASKS if a.name == f"{t.name}_loss")
            assert list(a.loss_weight) == [pytest.approx(task.loss_weight)]
            assert list(b.loss_weight) == [0]
        elif a.name.startswith("fc_") and a.name != "fc_landmarks":
            assert [p.lr_mult for p in a.param] == [1, 1] and [p.lr_mult for p in b.param] == [0, 0]
        else:
            assert a == b, a.name


def test_metrics_on_known_errors():
    gt = np.array([[[10, 10], [20, 10], [15, 15], [11, 20], [19, 20]]], float).repeat(4, axis=0)
    pred = gt.copy()
    pred[1, :, 0] += 1.0     # 1 px everywhere: NME 10% of a 10 px inter-ocular distance
    pred[2, 0, 0] += 5.0     # one point 5 px off: NME 10%, failure only if > 10%
    pred[3] = np.nan         # a miss
    r = landmark_report(pred, gt, FIVE_POINT)
    assert r["n_predicted"] == 3 and r["misses"] == 1
    assert r["nme_mean"] == pytest.approx((0 + 10 + 10) / 3)
    assert r["failure_rate"] == pytest.approx(25.0)   # only the miss exceeds 10%
    assert r["per_landmark"]["left_eye"] == pytest.approx((0 + 10 + 50) / 3)
    # the CED is 1/4 up to 10% (the exact face), 3/4 only at 10%: area 0.25 of 1
    assert r["auc_10"] == pytest.approx(0.25, abs=1e-3)


def test_attribute_report():
    r = attribute_report(np.array([0, 1, 1, 1]), np.array([0, 1, 0, 0]), ("a", "b"))
    assert r["accuracy"] == 50.0 and r["majority_baseline"] == 75.0
    assert r["confusion"] == [[1, 2], [0, 1]]


def test_stop_rule():
    rule = StopRule(patience=2, smooth=1)
    assert not rule.should_stop([5, 4, 3])
    assert not rule.should_stop([5, 4, 3, 3.5])
    assert rule.should_stop([5, 4, 3, 3.5, 3.2])
    smooth = StopRule(patience=2, smooth=3)
    # a single noisy dip does not reset the smoothed best
    assert smooth.smoothed([3, 3, 0, 3]) == pytest.approx([3, 3, 2, 2])


LOG = """I1126 solver.cpp:239] Iteration 100 (4.6 iter/s, 21.6s/100 iters), loss = 0.5
I1126 solver.cpp:258]     Train net output #0: gender_loss = 0.67 (* 0.1 = 0.067 loss)
I1126 solver.cpp:258]     Train net output #2: landmark_loss = 0.06 (* 1 = 0.06 loss)
I1126 sgd_solver.cpp:112] Iteration 100, lr = 0.003
I1126 solver.cpp:464] Snapshotting to binary proto file x_iter_200.caffemodel
I1126 sgd_solver.cpp:284] Snapshotting solver state to binary proto file x_iter_200.solverstate
I1126 solver.cpp:347] Iteration 200, Testing net (#0)
I1126 solver.cpp:414]     Test net output #0: gender_accuracy = 0.58
I1126 solver.cpp:414]     Test net output #1: gender_loss = 0.65 (* 0.1 = 0.065 loss)
I1126 solver.cpp:414]     Test net output #2: landmark_loss = 0.02 (* 1 = 0.02 loss)
I1126 solver.cpp:239] Iteration 200 (4.6 iter/s, 21.6s/100 iters), loss = 0.4
"""


def test_log_parser():
    p = LogParser()
    finished = [r for r in (p.feed(line) for line in LOG.splitlines()) if r]
    assert finished == [{"iter": 200, "gender_accuracy": 0.58, "gender_loss": 0.65,
                         "landmark_loss": 0.02}]
    assert [t["iter"] for t in p.train] == [100, 200]
    assert p.train[0]["landmark_loss"] == 0.06
    assert [t["iters_per_s"] for t in p.train] == [4.6, 4.6] and p.samples_per_s(10) == 46
    assert p.snapshots == ["x_iter_200.solverstate"]
    assert aux_measure(finished[0]) == pytest.approx(0.065)


def test_heads_stage_freezes_trunk_and_landmarks(caffe):
    from tcdcn.training.net import train_net
    heads = train_net("t", "v", "heads")
    multi = train_net("t", "v", "multitask")
    assert [l.name for l in heads.layer] == [l.name for l in multi.layer]
    for layer in heads.layer:
        if layer.type in ("Convolution", "LocallyConnected", "InnerProduct"):
            frozen = [p.lr_mult for p in layer.param] == [0, 0]
            is_aux = layer.name.startswith("fc_") and layer.name != "fc_landmarks"
            assert frozen != is_aux, layer.name
        if layer.name == "landmark_loss":
            assert list(layer.loss_weight) == [0]
        if layer.name == "pose_loss":
            assert list(layer.loss_weight) == [pytest.approx(0.3)]


def test_wing_loss_net_trains_on_wing_and_validates_on_euclidean(caffe):
    from tcdcn.training.net import INPUT_SIZE, NetOptions, train_net
    proto = train_net("t", "v", "finetune", NetOptions(landmark_loss="wing"))
    layers = {l.name: l for l in proto.layer}
    wing = layers["landmark_loss"]
    assert wing.type == "WingLoss" and list(wing.loss_weight) == [1]
    assert wing.wing_loss_param.w == pytest.approx(6 / INPUT_SIZE)
    assert wing.wing_loss_param.epsilon == pytest.approx(1.25 / INPUT_SIZE)
    assert list(wing.bottom) == ["landmarks_tanh", "landmark_target"]
    l2 = layers["landmark_euclidean"]
    assert l2.type == "EuclideanLoss" and list(l2.loss_weight) == [0]
    assert [r.phase for r in l2.include] == [caffe.TEST]
    assert list(l2.bottom) == list(wing.bottom)
    # the Euclidean default is unchanged: no second landmark loss
    plain = {l.name: l for l in train_net("t", "v", "finetune").layer}
    assert plain["landmark_loss"].type == "EuclideanLoss" and "landmark_euclidean" not in plain
    with pytest.raises(ValueError, match="landmark_loss"):
        train_net("t", "v", "finetune", NetOptions(landmark_loss="l1"))


def test_landmark_measure_prefers_the_euclidean_validation_loss():
    from tcdcn.training.monitor import landmark_measure
    assert landmark_measure({"landmark_loss": 0.5}) == 0.5
    assert landmark_measure({"landmark_loss": 3.0, "landmark_euclidean": 0.004}) == 0.004
    assert landmark_measure({}) is None


def test_wing_layer_in_pycaffe_matches_numpy(caffe, tmp_path):
    """The WingLoss layer as built by our Caffe: value and gradient against numpy."""
    import numpy as np
    net_path = tmp_path / "wing.prototxt"
    net_path.write_text("""
force_backward: true
layer { name: "p" type: "Input" top: "p" input_param { shape { dim: 4 dim: 10 } } }
layer { name: "t" type: "Input" top: "t" input_param { shape { dim: 4 dim: 10 } } }
layer { name: "loss" type: "WingLoss" bottom: "p" bottom: "t" top: "loss"
        wing_loss_param { w: 0.15 epsilon: 0.03 } }
""")
    net = caffe.Net(str(net_path), caffe.TEST)
    rng = np.random.default_rng(0)
    p, t = rng.normal(0, 0.2, (4, 10)), rng.normal(0, 0.2, (4, 10))
    net.blobs["p"].data[...] = p
    net.blobs["t"].data[...] = t
    loss = float(net.forward()["loss"])
    x = p - t
    a = np.abs(x)
    c = 0.15 - 0.15 * np.log1p(0.15 / 0.03)
    expected = np.where(a < 0.15, 0.15 * np.log1p(a / 0.03), a - c).sum() / 4
    assert (a < 0.15).any() and (a >= 0.15).any()
    assert loss == pytest.approx(expected, rel=1e-5)
    net.backward()
    grad = np.sign(x) * np.where(a < 0.15, 0.15 / (0.03 + a), 1) / 4
    np.testing.assert_allclose(net.blobs["p"].diff, grad, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(net.blobs["t"].diff, -grad, rtol=1e-5, atol=1e-7)


def test_aux_hidden_heads_branch_from_conv4_and_train_only_in_their_stages(caffe, tmp_path):
    from tcdcn.schemes import TASKS
    from tcdcn.training.net import NetOptions, deploy_net, train_net
    opts = NetOptions(aux_hidden=32)
    for stage in ("multitask", "heads", "finetune"):
        layers = {l.name: l for l in train_net("t", "v", stage, opts).layer}
        for task in TASKS:
            hidden, out = layers[f"fc_{task.name}_hidden"], layers[f"fc_{task.name}_out"]
            assert f"fc_{task.name}" not in layers
            assert list(hidden.bottom) == ["conv4"] and hidden.inner_product_param.num_output == 32
            assert list(out.bottom) == [f"fc_{task.name}_hidden"]
            assert out.inner_product_param.num_output == len(task.classes)
            assert layers[f"relu_{task.name}_hidden"].type == "ReLU"
            trains = [p.lr_mult for p in hidden.param] == [1, 1]
            assert trains == (stage in ("multitask", "heads")), (stage, task.name)
            assert [p.lr_mult for p in out.param] == [p.lr_mult for p in hidden.param]
        # the heads stage still freezes the trunk and fc5
        if stage == "heads":
            assert [p.lr_mult for p in layers["fc5"].param] == [0, 0]
    # deploy: the same prob outputs, and the net runs
    path = tmp_path / "d.prototxt"
    path.write_text(str(deploy_net(opts, batch=2)))
    net = caffe.Net(str(path), caffe.TEST)
    out = net.forward()
    for task in TASKS:
        assert out[f"{task.name}_prob"].shape == (2, len(task.classes))
    assert net.params["fc_gender_hidden"][0].data.shape[1] == net.blobs["conv4"].data[0].size


def test_aux_branch_has_its_own_conv4_started_as_a_copy(caffe, tmp_path):
    """--aux-branch: the heads read conv4_aux (on pool3), trained in the heads stage while
    conv1-3, conv4 and the landmark head stay frozen; with_aux_branch starts it as conv4,
    so the new net's outputs equal the old net's until the branch trains."""
    from tcdcn.training.net import NetOptions, deploy_net, train_net
    from tcdcn.training.weights import with_aux_branch
    plain, branch = NetOptions(aux_hidden=16), NetOptions(aux_hidden=16, aux_branch=True)
    layers = {l.name: l for l in train_net("t", "v", "heads", branch).layer}
    assert list(layers["conv4_aux"].bottom) == ["pool3"]
    assert layers["conv4_aux"].type == layers["conv4"].type == "LocallyConnected"
    assert [p.lr_mult for p in layers["conv4_aux"].param] == [1, 1]
    for frozen in ("conv1", "conv3", "conv4", "fc5", "fc_landmarks"):
        assert [p.lr_mult for p in layers[frozen].param] == [0, 0], frozen
    for task in TASKS:
        assert list(layers[f"fc_{task.name}_hidden"].bottom) == ["conv4_aux"]
    landmarks_stage = {l.name: l for l in train_net("t", "v", "finetune", branch).layer}
    assert [p.lr_mult for p in landmarks_stage["conv4_aux"].param] == [0, 0]
    # weights of the plain net -> the branch net: same outputs
    caffe.set_random_seed(3)
    d_plain, d_branch = tmp_path / "plain4.prototxt", tmp_path / "branch4.prototxt"
    d_plain.write_text(str(deploy_net(plain, batch=4)))
    d_branch.write_text(str(deploy_net(branch, batch=4)))
    net = caffe.Net(str(d_plain), caffe.TEST)
    rng = np.random.default_rng(1)
    for params in net.params.values():   # deploy nets have no fillers in the heads
        for blob in params:
            blob.data[...] = rng.normal(0, 0.1, size=blob.data.shape)
    src = tmp_path / "plain.caffemodel"
    net.save(str(src))
    out = with_aux_branch(src, branch, tmp_path / "branch.caffemodel")
    assert out == tmp_path / "branch.caffemodel"
    assert with_aux_branch(out, branch, tmp_path / "again.caffemodel") == out   # has one
    crops = np.random.default_rng(0).uniform(0, 255, (4, 1, 40, 40))
    a = caffe.Net(str(d_plain), caffe.TEST, weights=str(src))
    b = caffe.Net(str(d_branch), caffe.TEST, weights=str(out))
    a.blobs["data"].data[...] = crops
    b.blobs["data"].data[...] = crops
    copy = lambda out: {k: v.copy() for k, v in out.items()}   # forward() returns views
    ra, rb = copy(a.forward()), copy(b.forward())
    assert set(ra) == set(rb)
    for k in ra:
        np.testing.assert_allclose(ra[k], rb[k], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(b.params["conv4_aux"][0].data, b.params["conv4"][0].data)
    # a branch that differs changes the attributes, not the landmarks
    b.params["conv4_aux"][0].data[...] *= 0.5
    b.blobs["data"].data[...] = crops
    rc = copy(b.forward())
    np.testing.assert_array_equal(rc["landmarks"], rb["landmarks"])
    assert not np.allclose(rc["gender_prob"], rb["gender_prob"])


def test_unlabelled_faces_add_nothing_to_attribute_loss_and_accuracy(caffe, tmp_path):
    """The multitask net's softmax loss and accuracy layers, as generated, run in our Caffe
    on logits where some faces are UNLABELLED: both equal numpy over the labelled faces."""
    import numpy as np
    from google.protobuf import text_format
    from tcdcn.schemes import UNLABELLED
    from tcdcn.training.net import train_net
    layers = {l.name: l for l in train_net("t", "v", "multitask").layer}
    loss, acc = layers["pose_loss"], layers["pose_accuracy"]
    assert loss.type == "SoftmaxWithLoss" and acc.type == "Accuracy"
    for layer, top in ((loss, "loss"), (acc, "acc")):
        del layer.include[:]
        layer.bottom[:] = ["x", "y"]
        layer.top[:] = [top]
    net_path = tmp_path / "net.prototxt"
    net_path.write_text(
        'layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 8 dim: 5 } } }\n'
        'layer { name: "y" type: "Input" top: "y" input_param { shape { dim: 8 } } }\n'
        + "".join(f"layer {{ {text_format.MessageToString(l, as_one_line=True)} }}\n"
                  for l in (loss, acc)))
    net = caffe.Net(str(net_path), caffe.TEST)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 2, (8, 5))
    y = np.array([0, 4, UNLABELLED, 2, UNLABELLED, 1, 3, UNLABELLED], np.float32)
    net.blobs["x"].data[...] = x
    net.blobs["y"].data[...] = y
    out = net.forward()
    keep = y >= 0
    logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    expected = -logp[keep, y[keep].astype(int)].mean()   # the top (before loss_weight)
    assert float(out["loss"]) == pytest.approx(expected, rel=1e-5)
    assert float(out["acc"]) == pytest.approx((x[keep].argmax(1) == y[keep]).mean())


def test_divergence_guard_on_positive_and_negative_losses():
    from tcdcn.training.monitor import DivergenceGuard
    g = DivergenceGuard(factor=20)
    assert g.check(1.0) is None and g.check(0.5) is None and g.check(9.9) is None
    assert "diverging" in g.check(10.5)             # over 20 x 0.5
    n = DivergenceGuard(factor=20)                  # a log-likelihood: below zero
    assert n.check(-35.9) is None and n.check(-35.8) is None and n.check(-10) is None
    assert n.check(600) is None                     # -35.9 + 19 x 35.9 = 646
    assert "diverging" in n.check(700)
    assert "not finite" in n.check(float("nan")) or "nan" in n.check(float("nan"))


def test_attach_checks_every_other_weight_and_the_net_options(caffe, tmp_path):
    """training/uncertainty: the head's snapshot must hold the released weights bit for bit
    (one changed float is an error naming its layer) and come from the same net."""
    import numpy as np
    from tcdcn.training.net import NetOptions, deploy_net
    from tcdcn.training.uncertainty import check_weights, same_net
    plain, head = NetOptions(), NetOptions(uncertainty="gaussian", uncertainty_hidden=8)
    (tmp_path / "deploy.prototxt").write_text(str(deploy_net(plain)))
    (tmp_path / "head.prototxt").write_text(str(deploy_net(head)))
    caffe.set_random_seed(3)
    released = caffe.Net(str(tmp_path / "deploy.prototxt"), caffe.TEST)
    released.save(str(tmp_path / "m.caffemodel"))
    net = caffe.Net(str(tmp_path / "head.prototxt"), caffe.TEST,
                    weights=str(tmp_path / "m.caffemodel"))
    net.params["landmark_logscale"][1].data[...] = -4.0
    net.save(str(tmp_path / "good.caffemodel"))
    meta = {"files": {"deploy": "deploy.prototxt", "weights": "m.caffemodel"}}
    n = check_weights(tmp_path, meta, tmp_path / "head.prototxt", tmp_path / "good.caffemodel")
    assert n == sum(len(b) for b in released.params.values())
    net.params["conv2"][0].data.flat[7] += 1e-6
    net.save(str(tmp_path / "bad.caffemodel"))
    with pytest.raises(ValueError, match="conv2"):
        check_weights(tmp_path, meta, tmp_path / "head.prototxt", tmp_path / "bad.caffemodel")
    assert same_net(plain.as_dict(), head.as_dict())
    assert not same_net(plain.as_dict(), NetOptions(uncertainty="laplace", width=2).as_dict())
    # the deploy net's new output: ln sigma per coordinate, from conv4 through 8 hidden units
    assert net.blobs["landmark_logscale"].data.shape == (1, 10)
    assert net.params["logscale_hidden"][0].data.shape == (8, 320)
    assert np.allclose(net.forward(data=np.zeros((1, 1, 40, 40), np.float32))
                       ["landmark_logscale"], net.params["landmark_logscale"][1].data
                       + net.params["landmark_logscale"][0].data
                       @ np.maximum(0, net.blobs["logscale_hidden"].data[0]), atol=1e-5)


def test_recorded_commands_are_relative_to_the_project():
    """release.portable: run, LMDB, caffe binary, the default data root and the checkout
    as a user types them from the project root (model.json records these commands)."""
    from pathlib import Path

    from tcdcn.paths import checkout
    from tcdcn.training.release import portable
    root = checkout()
    text = (f"tools/x.py --lmdb /a/b/lmdb_x --run /c/run_y --root {root.parent}/shared/data/300W "
            f"--model {root}/models/m; /venv/bin/caffe train -solver /c/run_y/s.prototxt")
    assert portable(text, Path("/c/run_y"), Path("/a/b/lmdb_x"), Path("/venv/bin/caffe")) == (
        "tools/x.py --lmdb lmdb/lmdb_x --run runs/run_y --root ../shared/data/300W "
        "--model models/m; caffe train -solver runs/run_y/s.prototxt")
    # another machine's runs and LMDBs, e.g. in the record of the run a trunk came from
    other = '"tools/train.py --lmdb /data/base/lmdb/mtfl_1m --run /srv/x/runs/unc5 --json a/runs/b"'
    assert portable(other, Path("/c/run_y"), Path("/a/b/lmdb_x"), Path("/venv/bin/caffe")) == (
        '"tools/train.py --lmdb lmdb/mtfl_1m --run runs/unc5 --json a/runs/b"')
