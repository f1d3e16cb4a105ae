"""Staged training: stage runs of `caffe train`, their logs, and the early-stopping rule.

Stage 1 (multitask) trains every task. It stops when the auxiliary tasks' validation
measure (the weighted sum of their validation losses) stops improving; all auxiliary tasks
stop at once. Stage 2 (landmarks) starts from stage 1's best snapshot by that measure and
trains landmarks alone until the validation landmark loss stops improving; stage 3
(finetune, weight decay 0) starts from stage 2's best and stops the same way. The model is
stage 3's best snapshot by validation landmark loss.

Stopping rule: the measure is smoothed by a moving average over the last `smooth`
validations; a stage stops when the smoothed value has not improved for `patience`
validations, or at its iteration cap. The best snapshot is the validation with the lowest
raw measure.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from tcdcn.schemes import LANDMARK_LOSS_WEIGHT, TASKS

_NUMBER = r"([-+]?nan|[-+]?inf|[0-9.eE+-]+)"


_ITER = re.compile(r"Iteration (\d+).*?, loss = " + _NUMBER)


_RATE = re.compile(r"Iteration \d+ \(([0-9.]+) iter/s")


_TESTING = re.compile(r"Iteration (\d+), Testing net")


_OUTPUT = re.compile(r"(Train|Test) net output #\d+: (\w+) = " + _NUMBER)


_SNAPSHOT = re.compile(r"Snapshotting solver state to binary proto file (\S+)")


@dataclass
class StopRule:
    patience: int = 4
    smooth: int = 3

    def smoothed(self, values: list[float]) -> list[float]:
        out = []
        for i in range(len(values)):
            window = values[max(0, i - self.smooth + 1):i + 1]
            out.append(sum(window) / len(window))
        return out

    def should_stop(self, values: list[float]) -> bool:
        """True when the smoothed measure's best is `patience` or more validations old."""
        s = self.smoothed(values)
        if len(s) <= self.patience:
            return False
        best = min(range(len(s)), key=lambda i: s[i])
        return len(s) - 1 - best >= self.patience


@dataclass
class DivergenceGuard:
    """Stops a run whose training loss is not finite, or has grown to `factor` times the
    lowest loss displayed so far (the display is caffe's average over 100 iterations); for a
    loss that may be negative (a log-likelihood) the same distance: above the lowest by
    (factor - 1) times its magnitude."""
    factor: float = 20.0

    def __post_init__(self):
        self.lowest: float | None = None

    def check(self, loss: float) -> str | None:
        """None while the loss is healthy, else why the run must stop."""
        if not math.isfinite(loss):
            return f"the training loss is {loss}"
        if self.lowest is not None and \
                loss - self.lowest > (self.factor - 1) * abs(self.lowest):
            return (f"the training loss {loss:.5g} is over {self.factor:g} times the lowest "
                    f"so far ({self.lowest:.5g}): diverging")
        self.lowest = loss if self.lowest is None else min(self.lowest, loss)
        return None


def aux_measure(outputs: dict[str, float]) -> float | None:
    """Weighted sum of the auxiliary tasks' validation losses (None if they are absent)."""
    parts = [t.loss_weight * outputs[f"{t.name}_loss"] for t in TASKS
             if f"{t.name}_loss" in outputs]
    return sum(parts) if parts else None


def uncertainty_measure(outputs: dict[str, float]) -> float | None:
    """The validation negative log-likelihood of the uncertainty head (RegressionNLLLoss;
    may be negative)."""
    return outputs.get("uncertainty_loss")


def landmark_measure(outputs: dict[str, float]) -> float | None:
    """The validation Euclidean landmark loss (a Wing-trained net reports it as
    landmark_euclidean beside its Wing loss)."""
    value = outputs.get("landmark_euclidean", outputs.get("landmark_loss"))
    return None if value is None else LANDMARK_LOSS_WEIGHT * value


class LogParser:
    """Feed it caffe's log lines; it collects training losses and validation outputs."""

    def __init__(self):
        self.train: list[dict] = []   # {"iter", "loss", outputs...}
        self.tests: list[dict] = []   # {"iter", outputs...}
        self.snapshots: list[str] = []
        self._test_iter: int | None = None
        self._train_iter: int | None = None
        self.iters_per_s: float | None = None

    def samples_per_s(self, batch: int) -> float | None:
        """caffe's own rate over the last display interval, in samples/s."""
        return None if self.iters_per_s is None else self.iters_per_s * batch

    def feed(self, line: str) -> dict | None:
        """Returns a finished validation record when `line` completes one."""
        finished = None
        m = _TESTING.search(line)
        if m:
            self._test_iter = int(m.group(1))
            self.tests.append({"iter": self._test_iter})
            return None
        m = _ITER.search(line)
        if m:
            rate = _RATE.search(line)
            if self._test_iter is not None:
                finished = self.tests[-1]
                self._test_iter = None
            self._train_iter = int(m.group(1))
            self.train.append({"iter": self._train_iter, "loss": float(m.group(2))})
            if rate:
                self.iters_per_s = self.train[-1]["iters_per_s"] = float(rate.group(1))
            return finished
        m = _OUTPUT.search(line)
        if m:
            kind, name, value = m.group(1), m.group(2), float(m.group(3))
            if kind == "Test" and self._test_iter is not None:
                self.tests[-1][name] = value
            elif kind == "Train" and self.train:
                self.train[-1][name] = value
            return None
        m = _SNAPSHOT.search(line)
        if m:
            self.snapshots.append(m.group(1))
            if self._test_iter is not None:  # a snapshot line also ends a test block
                finished = self.tests[-1]
                self._test_iter = None
        return finished

    def close(self) -> dict | None:
        if self._test_iter is not None:
            self._test_iter = None
            return self.tests[-1]
        return None
