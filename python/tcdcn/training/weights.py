"""Weight surgery between stages and models: trunk initialisation, the auxiliary branch."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tcdcn.models import load_caffe_net, read_model_json
from tcdcn.paths import atomic_output
from tcdcn.training.net import deploy_net

TRUNK_LAYERS = ("conv1", "conv2", "conv3")   # shared by the 5- and 68-point models


def init_from_trunk(source, opts, out, seed: int = 1):
    """Write `out`, a caffemodel of the net `opts` describes, with conv1-3 copied from
    `source` (a released model folder, or a .caffemodel of the 5-point multi-task net) and
    every other layer at its filler's initial values (Caffe's RNG seeded with `seed`): the
    `-weights` of a finetuning run's first stage. Returns `out`."""

    import caffe

    source, out = Path(source), Path(out)
    if source.is_dir():
        meta = read_model_json(source)
        src = load_caffe_net(source / meta["files"]["deploy"], source / meta["files"]["weights"])
    else:
        src_deploy = out.with_name(out.stem + "_source.prototxt")
        src_deploy.write_text(str(deploy_net(replace(opts, scheme="5pt", auxiliary=True,
                                                     trunk_lr_mult=1.0))))
        src = load_caffe_net(src_deploy, source)
    caffe.set_random_seed(seed)
    deploy = out.with_suffix(".prototxt")
    deploy.write_text(str(deploy_net(opts)))
    net = caffe.Net(str(deploy), caffe.TEST)
    for name in TRUNK_LAYERS:
        for have, want in zip(src.params[name], net.params[name]):
            if have.data.shape != want.data.shape:
                raise ValueError(f"layer {name} has shape {have.data.shape}, this net needs "
                                 f"{want.data.shape}")
            want.data[...] = have.data
    with atomic_output(out) as tmp:
        net.save(str(tmp))
    return out


def with_aux_branch(weights, opts, out):
    """Weights for a net with the auxiliary branch (NetOptions.aux_branch) from weights
    without one: every layer copied by name, and conv4_aux started as a copy of conv4, so
    that the copied heads see at first exactly the features they were trained on (training
    the branch can then only move away from where they already stand). Returns `out`, or
    `weights` itself when it holds a conv4_aux already."""

    import caffe
    from caffe.proto import caffe_pb2

    weights, out = Path(weights), Path(out)
    proto = caffe_pb2.NetParameter()
    proto.ParseFromString(weights.read_bytes())
    if any(layer.name == "conv4_aux" for layer in proto.layer):
        return weights
    deploy = out.with_suffix(".prototxt")
    deploy.write_text(str(deploy_net(opts)))
    net = caffe.Net(str(deploy), caffe.TEST, weights=str(weights))
    for have, want in zip(net.params["conv4"], net.params["conv4_aux"]):
        want.data[...] = have.data
    with atomic_output(out) as tmp:
        net.save(str(tmp))
    return out
