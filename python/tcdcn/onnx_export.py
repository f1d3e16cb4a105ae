"""Export a Caffe net (deploy prototxt + caffemodel) to ONNX with the onnx package's graph
helpers, for onnxruntime and OpenCV 5's dnn (which has no Caffe importer).

Every layer type of the shipped nets is mapped; any other is refused, naming the layer:
  Input                  the graph input, batch (and for fully convolutional nets height and
                         width) dynamic
  Convolution            Conv (groups, dilation, pads, strides)
  Pooling MAX / AVE      MaxPool / AveragePool with ceil_mode (Caffe rounds output sizes up)
  InnerProduct           Flatten(axis) + Gemm(transB)
  LocallyConnected       the exact Conv + Reshape rewrite of export.lc_as_convolution (one
                         Conv over the whole input, then the M x Ho x Wo layout)
  MVN                    per-sample (and per-channel unless across_channels) mean, and
                         division by sqrt(variance) + eps when normalize_variance
  ReLU (negative_slope), PReLU, TanH, Sigmoid, Softmax(axis), Power (shift + scale x)^p,
  Dropout                Identity at inference
In-place layers (top == bottom) get fresh tensor names; the graph's outputs keep Caffe's
blob names. Opset 17, float32.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tcdcn import export
from tcdcn.models import CaffeNet, OnnxNet, record_hashes
from tcdcn.paths import atomic_output, write_json

OPSET = 17


class UnsupportedLayer(ValueError):
    pass


def _caffe_proto(deploy: Path, weights: Path):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = caffe_pb2.NetParameter()
    text_format.Merge(Path(deploy).read_text(), net)
    trained = caffe_pb2.NetParameter()
    trained.ParseFromString(Path(weights).read_bytes())
    blobs = {}
    for layer in list(trained.layer) + list(trained.layers):
        arrays = []
        for b in layer.blobs:
            shape = tuple(b.shape.dim) if b.HasField("shape") else \
                tuple(d for d in (b.num, b.channels, b.height, b.width))
            arrays.append(np.array(b.data, dtype=np.float32).reshape(shape))
        if arrays:
            blobs[layer.name] = arrays
    return net, blobs


def _input_shape(net) -> tuple[str, list[int]]:
    if net.input:   # the old format: input: "data" input_dim: ...
        dims = list(net.input_shape[0].dim) if net.input_shape else list(net.input_dim)
        return net.input[0], dims
    for layer in net.layer:
        if layer.type == "Input":
            return layer.top[0], list(layer.input_param.shape[0].dim)
    raise UnsupportedLayer("the net has no Input layer or input declaration")


def _pair(values, single, h=0, w=0, default=0) -> tuple[int, int]:
    if h or w:
        return int(h), int(w)
    values = list(values)
    if not values:
        return (int(single), int(single)) if single else (default, default)
    return (int(values[0]), int(values[-1]))


def caffe_to_onnx(deploy: Path, weights: Path, name: str | None = None,
                  spatial_dynamic: bool = False):
    """The onnx.ModelProto of a deploy net with its trained weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    net, blobs = _caffe_proto(deploy, weights)
    input_name, dims = _input_shape(net)
    shapes = {input_name: list(dims)}
    nodes, inits = [], []
    current = {input_name: input_name}   # Caffe blob -> latest ONNX tensor name
    counter = [0]

    def fresh(blob: str) -> str:
        counter[0] += 1
        return f"{blob}__{counter[0]}"

    def const(tname: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(array), tname))
        return tname

    def params(layer, n: int) -> list[np.ndarray]:
        got = blobs.get(layer.name, [])
        if len(got) < n:
            raise UnsupportedLayer(f"{weights}: layer {layer.name!r} has {len(got)} weight "
                                   f"blobs, {n} needed")
        return got

    outputs_used = set()
    for layer in net.layer:
        t = layer.type
        if t == "Input":
            continue
        bottoms = [current[b] for b in layer.bottom]
        for b in layer.bottom:
            outputs_used.add(b)
        top = layer.top[0] if layer.top else None
        out = top if top not in current else fresh(top)
        x = bottoms[0] if bottoms else None
        in_shape = shapes.get(layer.bottom[0]) if layer.bottom else None
        if t == "Convolution":
            p = layer.convolution_param
            w = params(layer, 1)
            kh, kw = _pair(p.kernel_size, 0, p.kernel_h, p.kernel_w)
            sh, sw = _pair(p.stride, 0, p.stride_h, p.stride_w, default=1)
            ph, pw = _pair(p.pad, 0, p.pad_h, p.pad_w)
            dh, dw = _pair(p.dilation, 0, default=1)
            inputs = [x, const(f"{layer.name}_W", w[0].reshape(p.num_output, -1, kh, kw))]
            if p.bias_term:
                inputs.append(const(f"{layer.name}_B", w[1].reshape(-1)))
            nodes.append(helper.make_node("Conv", inputs, [out], name=layer.name,
                                          kernel_shape=[kh, kw], strides=[sh, sw],
                                          pads=[ph, pw, ph, pw], dilations=[dh, dw],
                                          group=int(p.group or 1)))
            if in_shape:
                shapes[top] = [in_shape[0], p.num_output,
                               (in_shape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1,
                               (in_shape[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1]
        elif t == "Pooling":
            p = layer.pooling_param
            if p.global_pooling:
                op = {0: "GlobalMaxPool", 1: "GlobalAveragePool"}[p.pool]
                nodes.append(helper.make_node(op, [x], [out], name=layer.name))
            else:
                kh, kw = _pair([p.kernel_size] if p.kernel_size else [], 0, p.kernel_h, p.kernel_w)
                sh, sw = _pair([p.stride] if p.HasField("stride") else [], 0, p.stride_h,
                               p.stride_w, default=1)
                ph, pw = _pair([p.pad] if p.pad else [], 0, p.pad_h, p.pad_w)
                if p.pool not in (0, 1):
                    raise UnsupportedLayer(f"layer {layer.name!r}: stochastic pooling")
                op = "MaxPool" if p.pool == 0 else "AveragePool"
                extra = {"count_include_pad": 1} if op == "AveragePool" else {}
                nodes.append(helper.make_node(op, [x], [out], name=layer.name,
                                              kernel_shape=[kh, kw], strides=[sh, sw],
                                              pads=[ph, pw, ph, pw], ceil_mode=1, **extra))
                if in_shape:
                    def size(n, k, s, pad):
                        o = -(-(n + 2 * pad - k) // s) + 1
                        return o - 1 if pad and (o - 1) * s >= n + pad else o
                    shapes[top] = [in_shape[0], in_shape[1], size(in_shape[2], kh, sh, ph),
                                   size(in_shape[3], kw, sw, pw)]
        elif t == "InnerProduct":
            p = layer.inner_product_param
            w = params(layer, 1)
            flat = fresh(f"{layer.name}_flat")
            nodes.append(helper.make_node("Flatten", [x], [flat], axis=int(p.axis or 1)))
            inputs = [flat, const(f"{layer.name}_W", w[0].reshape(p.num_output, -1))]
            if p.bias_term:
                inputs.append(const(f"{layer.name}_B", w[1].reshape(-1)))
            nodes.append(helper.make_node("Gemm", inputs, [out], name=layer.name, transB=1))
            shapes[top] = [in_shape[0] if in_shape else 1, p.num_output]
        elif t == "LocallyConnected":
            p = layer.locally_connected_param
            w = params(layer, 1)
            if not in_shape:
                raise UnsupportedLayer(f"layer {layer.name!r}: input shape unknown")
            _, c, h, wd = in_shape
            kh, kw = _pair(p.kernel_size, 0, p.kernel_h, p.kernel_w)
            sh, sw = _pair(p.stride, 0, p.stride_h, p.stride_w, default=1)
            ph, pw = _pair(p.pad, 0, p.pad_h, p.pad_w)
            ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
            cw, cb = export.lc_as_convolution(w[0], w[1] if len(w) > 1 else None, h, wd, kh, kw,
                                       (sh, sw), (ph, pw))
            flat = fresh(f"{layer.name}_flat")
            inputs = [x, const(f"{layer.name}_W", cw)] + \
                ([const(f"{layer.name}_B", cb)] if cb is not None else [])
            nodes.append(helper.make_node("Conv", inputs, [flat], name=layer.name,
                                          kernel_shape=list(cw.shape[2:]),
                                          pads=[ph, pw, ph, pw]))
            shape = const(f"{layer.name}_shape", np.array([0, p.num_output, ho, wo], np.int64))
            nodes.append(helper.make_node("Reshape", [flat, shape], [out]))
            shapes[top] = [in_shape[0], p.num_output, ho, wo]
        elif t == "MVN":
            p = layer.mvn_param
            axes = [1, 2, 3] if p.across_channels else [2, 3]
            mean, centred = fresh("mvn_mean"), fresh("mvn_centred")
            nodes.append(helper.make_node("ReduceMean", [x], [mean], axes=axes, keepdims=1))
            target = out if not p.normalize_variance else centred
            nodes.append(helper.make_node("Sub", [x, mean], [target]))
            if p.normalize_variance:
                sq, var, sd, sde = (fresh(n) for n in ("mvn_sq", "mvn_var", "mvn_sd", "mvn_sde"))
                nodes.append(helper.make_node("Mul", [centred, centred], [sq]))
                nodes.append(helper.make_node("ReduceMean", [sq], [var], axes=axes, keepdims=1))
                nodes.append(helper.make_node("Sqrt", [var], [sd]))
                eps = const(fresh("mvn_eps"), np.array(p.eps, np.float32))
                nodes.append(helper.make_node("Add", [sd, eps], [sde]))
                nodes.append(helper.make_node("Div", [centred, sde], [out]))
            shapes[top] = in_shape
        elif t == "ReLU":
            slope = layer.relu_param.negative_slope
            if slope:
                nodes.append(helper.make_node("LeakyRelu", [x], [out], alpha=float(slope)))
            else:
                nodes.append(helper.make_node("Relu", [x], [out]))
            shapes[top] = in_shape
        elif t == "PReLU":
            slope = params(layer, 1)[0].reshape(-1)
            shape = (-1, 1, 1) if in_shape is None or len(in_shape) == 4 else (-1,)
            nodes.append(helper.make_node("PRelu", [x, const(f"{layer.name}_slope",
                                                             slope.reshape(shape))], [out]))
            shapes[top] = in_shape
        elif t in ("TanH", "Sigmoid"):
            nodes.append(helper.make_node({"TanH": "Tanh", "Sigmoid": "Sigmoid"}[t], [x], [out]))
            shapes[top] = in_shape
        elif t == "Softmax":
            axis = int(layer.softmax_param.axis) if layer.HasField("softmax_param") else 1
            nodes.append(helper.make_node("Softmax", [x], [out], axis=axis))
            shapes[top] = in_shape
        elif t == "Dropout":
            nodes.append(helper.make_node("Identity", [x], [out]))
            shapes[top] = in_shape
        elif t == "Power":
            p = layer.power_param
            y = x
            if p.scale != 1:
                y2 = fresh("pow_scale")
                nodes.append(helper.make_node("Mul", [y, const(fresh("s"), np.array(p.scale, np.float32))], [y2]))
                y = y2
            if p.shift != 0:
                y2 = fresh("pow_shift")
                nodes.append(helper.make_node("Add", [y, const(fresh("b"), np.array(p.shift, np.float32))], [y2]))
                y = y2
            if p.power != 1:
                nodes.append(helper.make_node("Pow", [y, const(fresh("p"), np.array(p.power, np.float32))], [out]))
            else:
                nodes.append(helper.make_node("Identity", [y], [out]))
            shapes[top] = in_shape
        else:
            raise UnsupportedLayer(f"{deploy}: layer {layer.name!r} of type {t} has no ONNX "
                                   "mapping here")
        for extra in layer.top[1:]:
            raise UnsupportedLayer(f"layer {layer.name!r}: more than one top ({extra})")
        if top is not None:
            current[top] = out
    # outputs: the blobs no layer reads, under their Caffe names
    final = [b for b in current if b not in outputs_used and b != input_name]
    out_nodes = []
    for blob in final:
        if current[blob] != blob:
            nodes.append(helper.make_node("Identity", [current[blob]], [blob]))
        known = shapes.get(blob) or [None, None]
        dims_out = ["batch"] + [f"{blob}_{i}" if spatial_dynamic and i >= 2 else int(d)
                                for i, d in enumerate(known) if i > 0]
        out_nodes.append(helper.make_tensor_value_info(blob, TensorProto.FLOAT, dims_out))
    in_dims = ["batch", dims[1]] + (["height", "width"] if spatial_dynamic else list(dims[2:]))
    graph = helper.make_graph(nodes, name or net.name or "net",
                              [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, in_dims)],
                              out_nodes, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="tcdcn")
    model.ir_version = 8   # readable by onnxruntime >= 1.14 and OpenCV's importer
    onnx.checker.check_model(model)
    return model


def export_onnx(deploy: Path, weights: Path, out: Path, spatial_dynamic: bool = False) -> Path:
    """Write the ONNX file of a deploy net, whole or not at all."""
    import onnx

    model = caffe_to_onnx(deploy, weights, spatial_dynamic=spatial_dynamic)
    with atomic_output(out, suffix=".onnx") as tmp:
        onnx.save(model, str(tmp))
    return Path(out)


# The detector nets' folders: (stem, input shape for the parity check, height and width
# dynamic: the fully convolutional nets)
DETECTOR_NETS = {"snet": [("snet", (2, 1, 96, 120), True)],
                 "mtcnn": [("det1", (2, 3, 31, 45), True), ("det2", (4, 3, 24, 24), False),
                           ("det3", (4, 3, 48, 48), False)]}


def parity(folder: Path, stem: str, deploy: str, shape) -> float:
    """Largest |onnx - caffe| over every output of folder/stem.onnx and the Caffe net on
    random inputs (0..255 for the landmark nets' raw pixels, -1..1 for the scaled inputs
    of MTCNN and S-Net)."""
    high = 255.0 if stem.startswith("tcdcn") else 1.0
    x = np.random.default_rng(0).uniform(-1.0 if high == 1.0 else 0.0, high,
                                         shape).astype(np.float32)
    onnx_net = OnnxNet(folder / f"{stem}.onnx")
    caffe_net = CaffeNet(folder / deploy, folder / f"{stem}.caffemodel")
    names = [o.name for o in onnx_net.session.get_outputs()]
    onnx_net.setInput(x)
    caffe_net.setInput(x)
    return max(float(np.abs(a - b).max())
               for a, b in zip(onnx_net.forward(names), caffe_net.forward(names)))


def export_model_folder(folder: Path) -> float:
    """A landmark model folder's ONNX file, recorded (files_onnx, sha256) in its
    model.json; returns its parity with our Caffe."""
    folder = Path(folder)
    meta = json.loads((folder / "model.json").read_text())
    stem = Path(meta["files"]["weights"]).stem
    export_onnx(folder / meta["files"]["deploy"], folder / meta["files"]["weights"],
                folder / f"{stem}.onnx")
    meta["files_onnx"] = {"net": f"{stem}.onnx"}
    write_json(folder / "model.json", meta)
    record_hashes(folder, [f"{stem}.onnx"])
    size = int(meta["input"]["size"])
    return parity(folder, stem, meta["files"]["deploy"], (4, 1, size, size))


def export_detector_folder(folder: Path, name: str) -> float:
    """The ONNX files of a detector folder's nets (DETECTOR_NETS[name]), recorded in its
    model.json; returns the worst parity with our Caffe."""
    folder = Path(folder)
    worst = 0.0
    for stem, shape, dynamic in DETECTOR_NETS[name]:
        export_onnx(folder / f"{stem}.prototxt", folder / f"{stem}.caffemodel",
                    folder / f"{stem}.onnx", spatial_dynamic=dynamic)
        worst = max(worst, parity(folder, stem, f"{stem}.prototxt", shape))
    meta = json.loads((folder / "model.json").read_text())
    meta["files_onnx"] = {stem: f"{stem}.onnx" for stem, _, _ in DETECTOR_NETS[name]}
    write_json(folder / "model.json", meta)
    record_hashes(folder, meta["files_onnx"].values())
    return worst
