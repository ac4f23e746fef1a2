"""Write examples/conv1d_signal.npz: 600 noisy signals of length 32 (sine, square, sawtooth) and one-hot labels."""

from pathlib import Path

import numpy as np


def signals(n=600, length=32, seed=0):
    """(x (n, 1, length), y (n, 3)): class k's waveform at a random frequency and phase, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(3, size=n)
    t = np.arange(length)
    freq = rng.uniform(1.5, 4.0, size=(n, 1)) / length
    phase = rng.uniform(0.0, 1.0, size=(n, 1))
    u = (t * freq + phase) % 1.0
    waves = np.stack([np.sin(2 * np.pi * u), np.where(u < 0.5, 1.0, -1.0), 2.0 * u - 1.0])
    x = waves[labels, np.arange(n)] + rng.normal(0.0, 0.2, size=(n, length))
    return x[:, None, :].astype(np.float32), np.eye(3, dtype=np.float32)[labels]


if __name__ == "__main__":
    x, y = signals()
    np.savez_compressed(Path(__file__).with_name("conv1d_signal.npz"), x=x, y=y)
