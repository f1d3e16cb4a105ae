"""What tests share besides fixtures: where the checkout and the shared data are, a command
runner, and the synthetic faces of the `dataset` fixture (tests import these by name;
fixtures live in conftest.py)."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
from tcdcn.paths import checkout, data_root

REPO = checkout()
# The one place tests find the shared data and models: tcdcn.paths, as the tools do.
SHARED_DATA = data_root()
SHARED_MODELS = SHARED_DATA.parent / "models"


def needs_shared(relative: str, what: str | None = None):
    """Skip unless SHARED_DATA/relative exists (for '../models/...', the shared models)."""
    path = (SHARED_DATA / relative).resolve()
    return pytest.mark.skipif(not path.exists(), reason=f"{what or path} not present")


def run(cmd, **kwargs) -> subprocess.CompletedProcess:
    """Run a command, capturing text output; never raises on a non-zero exit."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run([str(c) for c in cmd], **kwargs)


N_FACES = 24


def face_points(rng) -> np.ndarray:
    """Five well separated points inside a 40x40 box at (30, 20)-(70, 60)."""
    base = np.array([[42, 32], [58, 32], [50, 42], [43, 51], [57, 51]], float)
    return base + rng.uniform(-1.5, 1.5, size=base.shape)


def cascades(node) -> list[dict]:
    """The MTCNN cascades in a detector's description (factory.BuiltDetector.describe's
    graph, or a part of it), depth first."""
    if isinstance(node, list):
        return [c for n in node for c in cascades(n)]
    if not isinstance(node, dict):
        return []
    if node.get("type") == "mtcnn":
        return [node]
    return [c for k, v in node.items() if k != "settings" for c in cascades(v)]
