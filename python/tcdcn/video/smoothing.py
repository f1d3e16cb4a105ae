"""Temporal smoothing of landmarks in video: a one-euro filter per coordinate, per tracked face.

One-euro filter (Casiez, Roussel, Vogel, CHI 2012): a low-pass filter whose cut-off rises
with the signal's speed, so still faces stop jittering while moving faces do not lag much.
Faces are followed from frame to frame by box overlap.
"""
from __future__ import annotations

import math

import numpy as np

from tcdcn.detection.base import iou


class OneEuro:
    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x = None
        self.dx = None

    @staticmethod
    def _alpha(cutoff: float, dt: float) -> float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, dt: float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.x is None:
            self.x, self.dx = x.copy(), np.zeros_like(x)
            return x
        dx = (x - self.x) / dt
        a_d = self._alpha(self.d_cutoff, dt)
        self.dx = a_d * dx + (1 - a_d) * self.dx
        cutoff = self.min_cutoff + self.beta * np.abs(self.dx)
        tau = 1.0 / (2 * math.pi * cutoff)
        a = 1.0 / (1.0 + tau / dt)
        self.x = a * x + (1 - a) * self.x
        return self.x.copy()


class LandmarkSmoother:
    """Follows faces across frames (box IoU >= 0.3) and smooths each one's landmarks."""

    def __init__(self, fps: float, **filter_args):
        self.dt = 1.0 / fps
        self.filter_args = filter_args
        self.tracks: list[tuple[np.ndarray, OneEuro]] = []

    def __call__(self, faces: list) -> list:
        new_tracks = []
        free = list(range(len(self.tracks)))
        for face in faces:
            best, best_iou = None, 0.3
            for k in free:
                o = iou(self.tracks[k][0], face.box)
                if o >= best_iou:
                    best, best_iou = k, o
            if best is None:
                filt = OneEuro(**self.filter_args)
            else:
                free.remove(best)
                filt = self.tracks[best][1]
            face.landmarks = filt(face.landmarks, self.dt)
            new_tracks.append((face.box, filt))
        self.tracks = new_tracks
        return faces
