"""The fit loop: shuffle mini-batches, step a generated module's optimizer, report progress.

The loop calls only the generated module's ``init_state`` and ``train_step`` (see templates/numpy/
train.py.j2), so NumPy and C modules train the same way. An epoch is ceil(N / B) iterations over a
fresh seeded permutation; the last, shorter batch is kept.
"""

import copy
import math
import sys
import time
from dataclasses import dataclass, replace

import numpy as np

from symgrad.train.generated import numpy_module_object


def batches_per_epoch(n, batch_size):
    """ceil(N / B): the last, shorter batch counts (50 000 samples, batch 256 -> 196)."""
    return -(-n // batch_size)


def batches(n, batch_size, rng):
    """Row indices of each mini-batch of one epoch: a fresh permutation cut into ceil(N / B) pieces."""
    order = rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


@dataclass
class Result:
    """Trained parameters, optimizer state, the mean batch loss of each epoch, and the module that trained."""

    params: dict
    state: dict
    losses: list
    module: object


class Progress:
    """A plain-text progress bar with the running loss, redrawn in place on a terminal."""

    def __init__(self, epochs, per_epoch, stream=None, width=24):
        self.epochs, self.per_epoch, self.width = epochs, per_epoch, width
        self.stream = sys.stderr if stream is None else stream
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.last = 0.0

    def update(self, epoch, it, running):
        if not self.tty or (it < self.per_epoch and time.monotonic() - self.last < 0.1):
            return
        self.last = time.monotonic()
        self.stream.write("\r" + self._line(epoch, it, running))
        self.stream.flush()

    def end_epoch(self, epoch, loss):
        every = max(1, self.epochs // 20)
        if self.tty:
            self.stream.write("\r" + self._line(epoch, self.per_epoch, loss) + ("\n" if epoch == self.epochs else ""))
        elif epoch % every == 0 or epoch in (1, self.epochs):
            self.stream.write(self._line(epoch, self.per_epoch, loss) + "\n")
        self.stream.flush()

    def _line(self, epoch, it, loss):
        done = self.width * it // self.per_epoch
        return (f"epoch {epoch:>{len(str(self.epochs))}}/{self.epochs} [{'#' * done}{'.' * (self.width - done)}] "
                f"{it}/{self.per_epoch} loss {loss:.6g}")


def fit(model, x, y, epochs=None, batch_size=None, lr=None, seed=None, params=None, module=None, progress=None):
    """Train model on (x, y) with the optimizer of its [train] table; keyword values override the table."""
    over = {k: v for k, v in (("epochs", epochs), ("batch_size", batch_size), ("learning_rate", lr), ("seed", seed))
            if v is not None}
    config = replace(model.train, **over)
    if module is not None and lr is not None:
        raise ValueError("lr is fixed in a generated module; pass lr without module to regenerate it")
    if module is None:
        model = replace_train(model, config)
        module = numpy_module_object(model)
    params = module.init_params() if params is None else params
    state = module.init_state(params)
    rng = np.random.default_rng(config.seed)
    n = x.shape[0]
    per_epoch = batches_per_epoch(n, config.batch_size)
    bar = progress if progress is not None else Progress(config.epochs, per_epoch, stream=_Null())
    losses = []
    for epoch in range(1, config.epochs + 1):
        total = 0.0
        for it, rows in enumerate(batches(n, config.batch_size, rng), 1):
            params, state, E = module.train_step(params, state, x[rows], None if y is None else y[rows])
            total += E
            bar.update(epoch, it, total / it)
        losses.append(total / per_epoch)
        if not math.isfinite(losses[-1]):
            raise FloatingPointError(f"the loss became {losses[-1]} in epoch {epoch}; try a smaller learning rate")
        bar.end_epoch(epoch, losses[-1])
    return Result(params, state, losses, module)


class _Null:
    def write(self, s):
        pass

    def flush(self):
        pass


def replace_train(model, config):
    """A shallow copy of model with its train table replaced (the TrainConfig is re-checked)."""
    model = copy.copy(model)
    model.train = replace(config)
    return model
