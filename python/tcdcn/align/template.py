"""Face templates and the similarity transform that warps a face's five points onto one.

A template is five points (eye centres, nose tip, mouth corners: the 5-point scheme's
order, image-left eye first) in a crop of a given size. Crops are made by the similarity
transform (rotation, uniform scale, shift) that best maps the face's five points onto the
template's in the least-squares sense (Umeyama 1991, without reflection).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Template:
    name: str
    width: int
    height: int
    points: tuple   # five (x, y), in pixels of a width x height crop

    def scaled(self, size: int | None) -> "Template":
        """The template for a crop `size` pixels wide (the height in proportion)."""
        if size is None or size == self.width:
            return self
        if not 16 <= size <= 2048:
            raise ValueError(f"crop size must be 16 to 2048 pixels, not {size}")
        s = size / self.width
        return Template(self.name, size, int(round(self.height * s)),
                        tuple((x * s, y * s) for x, y in self.points))


# The 112x112 template face-recognition models are trained on (InsightFace's ArcFace
# alignment), and SphereFace / CosFace's 96x112 one: the same points, 8 px narrower.
TEMPLATES = {
    "arcface": Template("arcface", 112, 112, ((38.2946, 51.6963), (73.5318, 51.5014),
                                              (56.0252, 71.7366), (41.5493, 92.3655),
                                              (70.7299, 92.2041))),
    "sphereface": Template("sphereface", 96, 112, ((30.2946, 51.6963), (65.5318, 51.5014),
                                                   (48.0252, 71.7366), (33.5493, 92.3655),
                                                   (62.7299, 92.2041))),
}


def template(name: str, size: int | None = None) -> Template:
    if name not in TEMPLATES:
        raise ValueError(f"template must be one of {sorted(TEMPLATES)}, not {name!r}")
    return TEMPLATES[name].scaled(size)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 similarity transform (no reflection) mapping points `src` onto `dst` with
    the least squared error (Umeyama's closed form)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rotation = u @ sign @ vt
    var = (s ** 2).sum() / len(src)
    if var <= 1e-12:
        raise ValueError("the five points coincide: no transform")
    scale = float(np.trace(np.diag(sigma) @ sign) / var)
    m = np.zeros((2, 3))
    m[:, :2] = scale * rotation
    m[:, 2] = mu_d - scale * rotation @ mu_s
    return m


def warp(image: np.ndarray, five: np.ndarray, tpl: Template) -> tuple[np.ndarray, np.ndarray]:
    """The aligned crop of the face whose five points are `five`, and its 2x3 matrix
    (image -> crop)."""
    m = similarity(five, np.array(tpl.points))
    crop = cv2.warpAffine(image, m, (tpl.width, tpl.height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return crop, m
