"""Shared fixtures: the repository root on sys.path, and generate-and-import of models."""

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from symgrad.api import generate, import_generated  # noqa: E402


@pytest.fixture
def build(tmp_path):
    """build(model, dtype='float64') -> the imported generated NumPy module."""
    count = [0]

    def _build(model, dtype="float64"):
        count[0] += 1
        out = tmp_path / f"gen{count[0]}"
        generate(model, "numpy", out, dtype=dtype)
        return import_generated(model.name, out)

    return _build


def central_differences(mod, params, x, y, h=1e-6):
    """dE/dp by central differences for every trainable parameter of a generated module."""
    grads = {}
    for name in mod.TRAINABLE:
        p = {k: np.array(v, dtype=np.float64, copy=True) for k, v in params.items()}
        g = np.zeros_like(p[name])
        flat = p[name].reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + h
            ep = mod.loss(p, x, y)
            flat[i] = old - h
            em = mod.loss(p, x, y)
            flat[i] = old
            g.reshape(-1)[i] = (ep - em) / (2 * h)
        grads[name] = g
    return grads
