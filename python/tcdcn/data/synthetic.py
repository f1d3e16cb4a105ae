"""Synthetic images with known points and classes, for smoke tests and the setup demo."""
from __future__ import annotations

import numpy as np


def dot_images(n: int, size: int = 16, rng: np.random.Generator | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` grey images, each with one bright Gaussian dot on a noisy background.

    Returns (images n x 1 x size x size uint8, points n x 2 as (x, y) / size,
    classes n int: 1 if the dot is in the right half, else 0).
    """
    rng = rng or np.random.default_rng(0)
    margin = 2.0
    points = rng.uniform(margin, size - 1 - margin, size=(n, 2))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dx = xx[None] - points[:, 0, None, None]
    dy = yy[None] - points[:, 1, None, None]
    images = 200.0 * np.exp(-(dx ** 2 + dy ** 2) / (2 * 1.5 ** 2))
    images += rng.normal(30.0, 8.0, size=images.shape)
    images = np.clip(images, 0, 255).astype(np.uint8)[:, None]
    classes = (points[:, 0] >= size / 2).astype(np.int64)
    return images, (points / size).astype(np.float32), classes


def dot_net(source: str | None, batch: int, size: int = 16):
    """A small multi-task net for dot images, built with both new layers: a shared trunk
    with a LocallyConnected layer, then point regression (2 values, loss weight 1) and
    left/right classification (loss weight 0.1), as TCDCN weighs its tasks.

    With a `source` LMDB (records hold the labels [x, y, class]) it is the training net;
    with `source=None` the deploy net: an Input of batch x 1 x size x size, no losses, and
    the outputs `pred` (points) and `prob` (class probabilities). Both scale pixels inside
    the net, so training and deployment normalise identically. Returns a NetParameter.
    """
    import caffe
    from caffe import layers as L
    from caffe import params as P
    n = caffe.NetSpec()
    if source is None:
        n.data = L.Input(shape=dict(dim=[batch, 1, size, size]))
    else:
        n.data, n.label = L.MultiLabelData(source=source, batch_size=batch, ntop=2)
    n.scaled = L.Power(n.data, scale=1 / 255.0)
    n.conv1 = L.Convolution(n.scaled, num_output=8, kernel_size=3, weight_filler=dict(type="xavier"))
    n.relu1 = L.ReLU(n.conv1, in_place=True)
    n.pool1 = L.Pooling(n.relu1, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.lc = L.LocallyConnected(n.pool1, num_output=8, kernel_size=2, stride=1,
                              weight_filler=dict(type="xavier"))
    n.relu2 = L.ReLU(n.lc, in_place=True)
    n.fc = L.InnerProduct(n.relu2, num_output=32, weight_filler=dict(type="xavier"))
    n.relu3 = L.ReLU(n.fc, in_place=True)
    n.pred = L.InnerProduct(n.relu3, num_output=2, weight_filler=dict(type="xavier"))
    n.logits = L.InnerProduct(n.relu3, num_output=2, weight_filler=dict(type="xavier"))
    if source is None:
        n.prob = L.Softmax(n.logits)
    else:
        n.points, n.cls = L.Slice(n.label, slice_point=[2], axis=1, ntop=2)
        n.landmark_loss = L.EuclideanLoss(n.pred, n.points, loss_weight=1)
        n.cls_loss = L.SoftmaxWithLoss(n.logits, n.cls, loss_weight=0.1)
    return n.to_proto()
