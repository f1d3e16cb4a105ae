"""The TCDCN nets and solvers, built in one place with caffe.NetSpec.

Architecture (ECCV 2014): 40x40x1 -> per-image z-score (MVN, inside the net so training
and deployment normalise identically) -> [ReLU: the write-up's, off by default: it zeroes
every below-mean pixel and measured worse on validation] -> conv1 5x5x20 ->
ReLU -> max-pool 2 -> conv2 3x3x48 -> ReLU -> pool -> conv3 3x3x64 -> ReLU -> pool ->
(the nets run each max-pool before its ReLU: the same function, a quarter of the work)
conv4 2x2x80 (LocallyConnected by default; Convolution as a switch) -> ReLU -> fc5 256 ->
ReLU -> heads: landmarks (2K, then tanh / absolute tanh / linear) and one softmax head per
auxiliary task, weighted as in schemes.TASKS.

Stages change only the heads' loss weights and learning rates and the solver's weight
decay; layer names stay the same, so `-weights` carries a stage's snapshot into the next:
  multitask: every task;  landmarks: auxiliary heads frozen with loss weight 0;
  finetune: as landmarks, with weight decay 0;
  heads (optional): trunk and landmark head frozen, the auxiliary heads retrained on the
  final trunk (their frozen weights decay in usefulness while the trunk moves on);
  uncertainty (optional, with NetOptions.uncertainty): everything above frozen, a new head
  `landmark_logscale` (fc on fc5, 2K outputs) learns the log-scale of each coordinate's
  error with RegressionNLLLoss; the points stay exactly those of the weights it starts
  from.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from tcdcn.schemes import (
    LANDMARK_LOSS_WEIGHT,
    SCHEMES,
    TASKS,
    UNLABELLED,
    cross_layout,
    label_dim,
)

# A cross-dataset net's 5-point head: an auxiliary task like the attributes (on in the
# multitask stage only), weighted as the 5-point net weights its landmarks.
FIVE_POINT_LOSS_WEIGHT = 1.0

STAGES = ("multitask", "landmarks", "finetune", "heads", "uncertainty")

# The uncertainty head's distributions (RegressionNLLLoss in layers/): the head predicts
# ln b (Laplace) or ln sigma (Gaussian) per landmark coordinate, in crop units.
UNCERTAINTY = ("laplace", "gaussian")


INPUT_SIZE = 40


@dataclass(frozen=True)
class NetOptions:
    scheme: str = "5pt"
    conv4: str = "locally_connected"       # or "convolution"
    landmark_activation: str = "tanh"      # or "abs_tanh", "linear"
    relu_after_norm: bool = False          # the write-up's ReLU after MVN: worse here
    auxiliary: bool = True                 # False: landmarks only (an ablation)
    width: float = 1.0                     # channel multiplier of every trunk layer
    trunk_lr_mult: float = 1.0             # conv1-3's rate (0: frozen; 68-point finetuning)
    landmark_loss: str = "euclidean"       # or "wing" (Feng et al. 2018: layers/ WingLoss)
    wing_w: float = 6 / INPUT_SIZE         # Wing's w and epsilon in crop units: the paper's
    wing_epsilon: float = 1.25 / INPUT_SIZE  # 10 and 2 px of a 64-px input, scaled to 40 px
    aux_hidden: int = 0                    # 0: linear auxiliary heads on fc5 (the paper);
                                           # N: conv4 -> fc N -> ReLU -> fc per auxiliary task
    input_size: int = INPUT_SIZE           # crop side in pixels (the LMDB's; 68-point lever)
    uncertainty: str = ""                  # "", "laplace" or "gaussian": the landmark_logscale
                                           # head (stage "uncertainty"; in deploy when set)
    uncertainty_hidden: int = 0            # 0: landmark_logscale is one fc on fc5; N: conv4 ->
                                           # fc N -> ReLU -> landmark_logscale
    aux_branch: bool = False               # with aux_hidden: the heads read their own conv4
                                           # (conv4_aux on conv3's pooled output), not the
                                           # landmarks' (the 68-point recipe's split, for
                                           # attributes)
    cross_dataset: bool = False            # records of two data sets (tools/mix_lmdb.py):
                                           # the dense points masked per face, a 5-point
                                           # head beside the attribute heads (train net only)
    labelled_fraction: float = 1.0         # with cross_dataset: the share of records with
                                           # dense points (their loss weight is 1 / this)

    def channels(self, base: int) -> int:
        return max(1, int(round(base * self.width)))

    def as_dict(self) -> dict:
        return asdict(self)

    def deployed(self) -> "NetOptions":
        """The options of the net a user runs: a cross-dataset net deploys as the plain
        dense-landmark net (its 5-point and attribute heads serve training only)."""
        if not self.cross_dataset:
            return self
        return replace(self, cross_dataset=False, labelled_fraction=1.0, auxiliary=False,
                       aux_hidden=0, aux_branch=False)


@dataclass(frozen=True)
class SolverOptions:
    batch: int = 256
    base_lr: float = 0.03                  # chosen on validation (README)
    momentum: float = 0.9
    weight_decay: float = 0.0005
    test_interval: int = 500
    max_iter: int = 20000
    seed: int = 1
    lr_policy: str = "fixed"   # or "poly" (power 1: linear to 0 at max_iter)


FROZEN = [dict(lr_mult=0, decay_mult=0), dict(lr_mult=0, decay_mult=0)]


def _conv4(L, bottom, opts: NetOptions, **kwargs):
    """conv4 2x2 (80 x width outputs): LocallyConnected, or Convolution as a switch."""
    if opts.conv4 not in ("locally_connected", "convolution"):
        raise ValueError(f"conv4 must be locally_connected or convolution, not {opts.conv4!r}")
    layer = L.LocallyConnected if opts.conv4 == "locally_connected" else L.Convolution
    return layer(bottom, num_output=opts.channels(80), kernel_size=2, **kwargs)


def _trunk(n, L, P, data, opts: NetOptions, frozen: bool = False):
    n.norm = L.MVN(data, normalize_variance=True)
    top = n.norm
    if opts.relu_after_norm:
        n.norm_relu = L.ReLU(n.norm, in_place=True)
        top = n.norm_relu
    filler = dict(type="xavier")
    bias = dict(type="constant", value=0)
    extra = dict(param=FROZEN) if frozen else {}
    m = opts.trunk_lr_mult
    shared = extra or ({} if m == 1 else dict(param=[dict(lr_mult=m, decay_mult=m),
                                                     dict(lr_mult=m, decay_mult=0)]))
    for i, (num, k) in enumerate(((20, 5), (48, 3), (64, 3)), start=1):
        conv = L.Convolution(top, num_output=opts.channels(num), kernel_size=k,
                             weight_filler=filler, bias_filler=bias, **shared)
        setattr(n, f"conv{i}", conv)
        # max-pool, then ReLU on the pooled blob: max and ReLU commute (ReLU is monotone),
        # so outputs and gradients are those of conv -> ReLU -> pool, with the ReLU on a
        # quarter of the elements (relu1 + relu2 were 10% of a batch-256 forward pass)
        setattr(n, f"pool{i}", L.Pooling(conv, pool=P.Pooling.MAX, kernel_size=2, stride=2))
        setattr(n, f"relu{i}", L.ReLU(getattr(n, f"pool{i}"), in_place=True))
        top = getattr(n, f"relu{i}")
    n.conv4 = _conv4(L, top, opts, weight_filler=filler, bias_filler=bias, **extra)
    n.relu4 = L.ReLU(n.conv4, in_place=True)
    n.fc5 = L.InnerProduct(n.relu4, num_output=opts.channels(256), weight_filler=filler,
                           bias_filler=bias, **extra)
    n.relu5 = L.ReLU(n.fc5, in_place=True)
    return n.relu5


def _landmark_head(n, L, feat, opts: NetOptions, frozen: bool = False):
    scheme = SCHEMES[opts.scheme]
    n.fc_landmarks = L.InnerProduct(feat, num_output=2 * scheme.count,
                                    weight_filler=dict(type="xavier"),
                                    bias_filler=dict(type="constant", value=0),
                                    **(dict(param=FROZEN) if frozen else {}))
    if opts.landmark_activation == "linear":
        return n.fc_landmarks
    if opts.landmark_activation not in ("tanh", "abs_tanh"):
        raise ValueError(f"unknown landmark activation {opts.landmark_activation!r}")
    n.landmarks_tanh = L.TanH(n.fc_landmarks)
    if opts.landmark_activation == "tanh":
        return n.landmarks_tanh
    n.landmarks_abs = L.AbsVal(n.landmarks_tanh)
    return n.landmarks_abs


# The log-scale head's bias starts at ln 0.01 (a 0.4-pixel error on a 40-pixel crop: about
# the 5-point model's typical coordinate error), its weights near 0.
LOGSCALE_BIAS = -4.6


def _uncertainty_head(n, L, feat, opts: NetOptions, with_fillers: bool = True):
    """landmark_logscale: ln b (Laplace) or ln sigma (Gaussian) per coordinate, an fc on
    fc5's output, or with opts.uncertainty_hidden an fc N -> ReLU on conv4's output first."""
    if opts.uncertainty not in UNCERTAINTY:
        raise ValueError(f"uncertainty must be one of {UNCERTAINTY}, not {opts.uncertainty!r}")
    fillers = dict(weight_filler=dict(type="gaussian", std=1e-3),
                   bias_filler=dict(type="constant", value=LOGSCALE_BIAS)) if with_fillers else {}
    if opts.uncertainty_hidden:
        hidden = dict(weight_filler=dict(type="xavier"),
                      bias_filler=dict(type="constant", value=0)) if with_fillers else {}
        n.logscale_hidden = L.InnerProduct(n.relu4, num_output=opts.uncertainty_hidden, **hidden)
        n.relu_logscale_hidden = L.ReLU(n.logscale_hidden, in_place=True)
        feat = n.relu_logscale_hidden
    n.landmark_logscale = L.InnerProduct(feat, num_output=2 * SCHEMES[opts.scheme].count,
                                         **fillers)
    return n.landmark_logscale


def _aux_head(n, L, task, feat, opts: NetOptions, param=None, with_fillers: bool = True):
    """One auxiliary task's logits: fc_<task> on fc5 (the paper), or with opts.aux_hidden
    a hidden layer on conv4's output (before fc5, which finetuning on landmarks alone
    specialises): fc_<task>_hidden -> ReLU -> fc_<task>_out. Other names than the linear
    head's, so that weights of the other layout are never copied into them."""
    fillers = dict(weight_filler=dict(type="xavier"),
                   bias_filler=dict(type="constant", value=0)) if with_fillers else {}
    extra = dict(param=param) if param else {}
    if not opts.aux_hidden:
        fc = L.InnerProduct(feat, num_output=len(task.classes), **fillers, **extra)
        setattr(n, f"fc_{task.name}", fc)
        return fc
    if opts.aux_branch and "conv4_aux" not in n.tops:
        # the auxiliary tasks' own conv4, the same layer type and size as the landmarks'
        n.conv4_aux = _conv4(L, n.relu3, opts, **fillers, **extra)
        n.relu4_aux = L.ReLU(n.conv4_aux, in_place=True)
    source = n.relu4_aux if opts.aux_branch else n.relu4
    hidden = L.InnerProduct(source, num_output=opts.aux_hidden, **fillers, **extra)
    setattr(n, f"fc_{task.name}_hidden", hidden)
    relu = L.ReLU(hidden, in_place=True)
    setattr(n, f"relu_{task.name}_hidden", relu)
    fc = L.InnerProduct(relu, num_output=len(task.classes), **fillers, **extra)
    setattr(n, f"fc_{task.name}_out", fc)
    return fc


def train_net(train_source: str, val_source: str, stage: str, opts: NetOptions = NetOptions(),
              batch: int = 256, val_batch: int = 100, attribute_labels: bool = True):
    """The train/val net of a stage (MultiLabelData for TRAIN and TEST). With
    `attribute_labels` False the records hold landmarks only (300-W) and the net has no
    auxiliary heads."""
    import caffe
    from caffe import layers as L
    from caffe import params as P
    from caffe.proto import caffe_pb2
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}")
    if not attribute_labels and opts.auxiliary:
        raise ValueError("records without attribute labels need NetOptions(auxiliary=False)")
    scheme = SCHEMES[opts.scheme]
    dim = label_dim(scheme, with_attributes=attribute_labels)
    n = caffe.NetSpec()
    if opts.cross_dataset:
        if not attribute_labels:
            raise ValueError("a cross-dataset net needs records with attribute labels "
                             "(tools/mix_lmdb.py)")
        parts = list(cross_layout(scheme).values())   # in label order
        n.data, n.label = L.MultiLabelData(source=train_source, batch_size=batch,
                                           label_dim=parts[-1].stop, ntop=2,
                                           include=dict(phase=caffe.TRAIN))
        tops = L.Slice(n.label, slice_point=[p.start for p in parts[1:]], axis=1,
                       ntop=len(parts))
        n.landmark_target_all, n.landmark_mask, n.landmark5_target = tops[:3]
        for task, top in zip(TASKS, tops[3:]):
            setattr(n, f"{task.name}_label", top)
    elif attribute_labels:
        n.data, n.label = L.MultiLabelData(source=train_source, batch_size=batch,
                                           label_dim=dim, ntop=2,
                                           include=dict(phase=caffe.TRAIN))
        slices = [2 * scheme.count + i for i in range(len(TASKS))]
        tops = L.Slice(n.label, slice_point=slices, axis=1, ntop=1 + len(TASKS))
        n.landmark_target = tops[0]
        for task, top in zip(TASKS, tops[1:]):
            setattr(n, f"{task.name}_label", top)
    else:
        n.data, n.landmark_target = L.MultiLabelData(source=train_source, batch_size=batch,
                                                     label_dim=dim, ntop=2,
                                                     include=dict(phase=caffe.TRAIN))
    if stage == "uncertainty" and not opts.uncertainty:
        raise ValueError("the uncertainty stage needs NetOptions(uncertainty='laplace' or "
                         "'gaussian')")
    heads_only = stage in ("heads", "uncertainty")
    feat = _trunk(n, L, P, n.data, opts, frozen=heads_only)
    pred = _landmark_head(n, L, feat, opts, frozen=heads_only)
    weight = 0 if heads_only else LANDMARK_LOSS_WEIGHT
    if opts.cross_dataset:
        # prediction and target times the face's mask (0: no dense points): such a face
        # adds 0 to the loss and sends 0 back into the head; the losses average over the
        # batch, so 1 / (labelled share) keeps a labelled face's weight that of a plain net
        n.landmark_mask_flat = L.Reshape(n.landmark_mask, reshape_param=dict(shape=dict(dim=[-1])))
        n.landmark_pred_masked = L.Scale(pred, n.landmark_mask_flat, scale_param=dict(axis=0),
                                         propagate_down=[True, False])
        n.landmark_target = L.Scale(n.landmark_target_all, n.landmark_mask_flat,
                                    scale_param=dict(axis=0), propagate_down=[False, False])
        pred = n.landmark_pred_masked
        weight = weight / opts.labelled_fraction
    if opts.landmark_loss == "euclidean":
        n.landmark_loss = L.EuclideanLoss(pred, n.landmark_target, loss_weight=weight)
    elif opts.landmark_loss == "wing":
        n.landmark_loss = L.WingLoss(pred, n.landmark_target, loss_weight=weight,
                                     wing_loss_param=dict(w=opts.wing_w,
                                                          epsilon=opts.wing_epsilon))
        # Validation still reports the Euclidean loss, so that snapshots, stage stops and
        # runs with either loss are chosen and compared on one measure.
        n.landmark_euclidean = L.EuclideanLoss(pred, n.landmark_target, loss_weight=0,
                                               include=dict(phase=caffe.TEST))
    else:
        raise ValueError(f"landmark_loss must be euclidean or wing, not {opts.landmark_loss!r}")
    if stage == "uncertainty":
        # only the log-scale head learns: no gradient flows into the (frozen) points
        logscale = _uncertainty_head(n, L, feat, opts)
        dist = caffe_pb2.RegressionNLLParameter
        n.uncertainty_loss = L.RegressionNLLLoss(
            pred, logscale, n.landmark_target, propagate_down=[False, True, False],
            regression_nll_param=dict(distribution=dist.GAUSSIAN if opts.uncertainty ==
                                      "gaussian" else dist.LAPLACE))
    aux_on = opts.auxiliary and stage in ("multitask", "heads")
    if opts.cross_dataset:
        mult = 1 if aux_on else 0
        n.fc_landmarks_5pt = L.InnerProduct(
            feat, num_output=10, weight_filler=dict(type="xavier"),
            bias_filler=dict(type="constant", value=0),
            param=[dict(lr_mult=mult, decay_mult=mult), dict(lr_mult=mult, decay_mult=0)])
        n.landmarks_5pt_tanh = L.TanH(n.fc_landmarks_5pt)
        w5 = FIVE_POINT_LOSS_WEIGHT if aux_on else 0
        if opts.landmark_loss == "wing":
            n.landmark5_loss = L.WingLoss(n.landmarks_5pt_tanh, n.landmark5_target, loss_weight=w5,
                                          wing_loss_param=dict(w=opts.wing_w,
                                                               epsilon=opts.wing_epsilon))
        else:
            n.landmark5_loss = L.EuclideanLoss(n.landmarks_5pt_tanh, n.landmark5_target,
                                               loss_weight=w5)
    for task in TASKS if attribute_labels else ():
        if not opts.auxiliary:
            # Still consume the label blob, so Caffe does not print it as an output.
            setattr(n, f"{task.name}_silence", L.Silence(getattr(n, f"{task.name}_label"), ntop=0))
            continue
        mult = 1 if aux_on else 0
        fc = _aux_head(n, L, task, feat, opts, param=[dict(lr_mult=mult, decay_mult=mult),
                                                      dict(lr_mult=mult, decay_mult=0)])
        label = getattr(n, f"{task.name}_label")
        # Faces without this label (UNLABELLED, e.g. 300-W faces in 5-point training) add
        # nothing to the loss or the accuracy (the loss averages over labelled faces).
        setattr(n, f"{task.name}_loss", L.SoftmaxWithLoss(
            fc, label, loss_weight=task.loss_weight if aux_on else 0,
            loss_param=dict(ignore_label=UNLABELLED, normalization=P.Loss.VALID)))
        setattr(n, f"{task.name}_accuracy", L.Accuracy(fc, label, include=dict(phase=caffe.TEST),
                                                       accuracy_param=dict(ignore_label=UNLABELLED)))
    proto = n.to_proto()
    proto.name = f"tcdcn_{opts.scheme}_{stage}"
    # The TEST data layer: the same tops, from the validation LMDB.
    test_data = caffe_pb2.LayerParameter()
    test_data.CopyFrom(proto.layer[0])
    test_data.name = "data_val"
    test_data.multilabel_data_param.source = val_source
    test_data.multilabel_data_param.batch_size = val_batch
    del test_data.include[:]
    test_data.include.add().phase = caffe.TEST
    proto.layer.insert(1, test_data)
    return proto


def deploy_net(opts: NetOptions = NetOptions(), batch: int = 1):
    """Input batch x 1 x S x S (S = opts.input_size, 40 by default; grey, 0..255); outputs
    `landmarks` (2K values, crop units, x1 y1 x2 y2 ...), `<task>_prob` per auxiliary task
    and, with opts.uncertainty, `landmark_logscale` (2K: ln b or ln sigma, crop units)."""
    import caffe
    from caffe import layers as L
    from caffe import params as P
    opts = opts.deployed()
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[batch, 1, opts.input_size, opts.input_size]))
    feat = _trunk(n, L, P, n.data, opts)
    pred = _landmark_head(n, L, feat, opts)
    n.landmarks = L.Power(pred, power=1, scale=1, shift=0)  # a stable output name
    if opts.uncertainty:
        _uncertainty_head(n, L, feat, opts, with_fillers=False)
    if opts.auxiliary:
        for task in TASKS:
            fc = _aux_head(n, L, task, feat, opts, with_fillers=False)
            setattr(n, f"{task.name}_prob", L.Softmax(fc))
    proto = n.to_proto()
    proto.name = f"tcdcn_{opts.scheme}_deploy"
    return proto


def solver(net_path: str, stage: str, snapshot_prefix: str, test_iter: int,
           opts: SolverOptions = SolverOptions()):
    """The solver of a stage: fixed lr, momentum, weight decay (0 when finetuning),
    a snapshot at every test so the best one by validation can be kept."""
    from caffe.proto import caffe_pb2
    s = caffe_pb2.SolverParameter()
    s.net = net_path
    s.test_iter.append(test_iter)
    s.test_interval = opts.test_interval
    s.test_initialization = False
    s.base_lr = opts.base_lr
    if opts.lr_policy not in ("fixed", "poly"):
        raise ValueError(f"lr_policy must be fixed or poly, not {opts.lr_policy!r}")
    s.lr_policy = opts.lr_policy
    if opts.lr_policy == "poly":
        s.power = 1.0
    s.momentum = opts.momentum
    s.weight_decay = 0.0 if stage == "finetune" else opts.weight_decay
    s.display = 100
    s.average_loss = 100
    s.max_iter = opts.max_iter
    s.snapshot = opts.test_interval
    s.snapshot_prefix = snapshot_prefix
    s.solver_mode = caffe_pb2.SolverParameter.CPU
    s.random_seed = opts.seed
    return s
