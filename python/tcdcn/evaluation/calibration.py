"""Attribute probabilities that mean what they say: expected calibration error, reliability
diagrams, and temperature scaling (one temperature per attribute, chosen on validation).

The net gives softmax probabilities p; a temperature T gives p^(1/T), normalised (the same
as dividing the logits by T), which keeps every face's most likely class and changes only
how sure the model says it is.
"""
from __future__ import annotations

import numpy as np

from tcdcn.landmarks import with_temperature

BINS = 15
TEMPERATURES = np.exp(np.linspace(np.log(0.25), np.log(8.0), 401))   # the grid searched


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0))))


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature with the lowest negative log-likelihood on (probs, labels)."""
    losses = [nll(with_temperature(probs, t), labels) for t in TEMPERATURES]
    return float(TEMPERATURES[int(np.argmin(losses))])


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> dict:
    """Confidence (the top probability) against accuracy in equal-width bins, and the
    expected calibration error (percent): the bins' |accuracy - confidence| weighted by
    their share of the faces."""
    probs = np.asarray(probs, np.float64)
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        sel = which == b
        if not sel.any():
            continue
        acc, c = float(correct[sel].mean()), float(conf[sel].mean())
        ece += sel.mean() * abs(acc - c)
        rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "faces": int(sel.sum()),
                     "confidence": c, "accuracy": acc})
    return {"ece": 100 * float(ece), "accuracy": 100 * float(correct.mean()),
            "mean_confidence": 100 * float(conf.mean()), "bins": rows}


def ece_noise_floor(probs: np.ndarray, draws: int = 200, seed: int = 0,
                    bins: int = BINS) -> dict:
    """The ECE a perfectly calibrated model would show on these faces: labels drawn from
    the probabilities themselves, `draws` times; the median and 90th percentile (percent).
    An ECE within this range cannot be told from perfect calibration on this many faces."""
    probs = np.asarray(probs, np.float64)
    rng = np.random.default_rng(seed)
    cum = np.cumsum(probs, axis=1)
    eces = []
    for _ in range(draws):
        u = rng.random((len(probs), 1))
        labels = np.minimum((u > cum).sum(axis=1), probs.shape[1] - 1)
        eces.append(reliability(probs, labels, bins)["ece"])
    return {"median": float(np.median(eces)), "p90": float(np.percentile(eces, 90))}


def plot_reliability(curves: dict[str, dict], path, title: str):
    """One panel per attribute: accuracy against confidence, before and after."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    tasks = list(curves)
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.3), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        ax.plot([0, 1], [0, 1], color="0.7", lw=1)
        for label, r in curves[task].items():
            xs = [b["confidence"] for b in r["bins"]]
            ys = [b["accuracy"] for b in r["bins"]]
            ax.plot(xs, ys, marker="o", ms=3, label=f"{label}: ECE {r['ece']:.1f}%")
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("confidence")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=6, loc="upper left")
    axes[0][0].set_ylabel("accuracy")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
