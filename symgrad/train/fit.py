"""The fit loop: shuffle mini-batches, step a generated module's optimizer, report progress.

The loop calls only the generated module's ``init_state``, ``train_step`` and ``loss`` (see templates/numpy/),
so NumPy and C modules train the same way. An epoch is ceil(N / B) iterations over a fresh seeded
permutation; the last, shorter batch is kept. A validation split holds out the last rows of the data, in
file order, before any shuffling.
"""

import copy
import math
from dataclasses import dataclass, field, replace

import numpy as np

from symgrad.errors import SpecError
from symgrad.train.generated import numpy_module_object
from symgrad.train.progress import Silent


def batches_per_epoch(n, batch_size):
    """ceil(N / B): the last, shorter batch counts (50 000 samples, batch 256 -> 196)."""
    return -(-n // batch_size)


def batches(n, batch_size, rng):
    """Row indices of each mini-batch of one epoch: a fresh permutation cut into ceil(N / B) pieces."""
    order = rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def validation_rows(n, fraction, key="val_split"):
    """How many of n rows a validation fraction holds out: round(fraction * N), at least 1, leaving 1 to train on."""
    if not 0 < fraction < 1:
        raise SpecError(f"expected a fraction between 0 and 1 (exclusive), got {fraction}", key)
    held = max(1, round(fraction * n))
    if held >= n:
        raise SpecError(f"{fraction} of {n} rows leaves no rows to train on", key)
    return held


@dataclass
class Result:
    """Trained parameters, optimizer state, the mean batch loss of each epoch, and the module that trained.

    val_losses: the validation loss after each epoch (empty without a validation split).
    """

    params: dict
    state: dict
    losses: list
    module: object
    val_losses: list = field(default_factory=list)


def batch_mean_loss(module, params, x, y, batch_size):
    """The mean loss of x cut in order into batches of batch_size, on the same scale as the training loss."""
    parts = range(0, x.shape[0], batch_size)
    return sum(module.loss(params, x[i:i + batch_size], None if y is None else y[i:i + batch_size]) for i in parts) / len(parts)


def fit(model, x, y, epochs=None, batch_size=None, lr=None, seed=None, params=None, module=None, progress=None,
        val_split=None):
    """Train model on (x, y) with the optimizer of its [train] table; keyword values override the table.

    val_split: hold out the last round(val_split * N) rows (file order) and record their loss after each epoch.
    """
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
    x_val = y_val = None
    if val_split is not None:
        held = validation_rows(x.shape[0], val_split)
        x, x_val = x[:-held], x[-held:]
        if y is not None:
            y, y_val = y[:-held], y[-held:]
    bar = progress if progress is not None else Silent()
    try:
        return _epochs(module, params, state, x, y, x_val, y_val, config, bar)
    finally:
        bar.close()


def _epochs(module, params, state, x, y, x_val, y_val, config, bar):
    """Run config.epochs epochs of seeded shuffled mini-batches; the Result with the losses of each epoch."""
    rng = np.random.default_rng(config.seed)
    n = x.shape[0]
    per_epoch = batches_per_epoch(n, config.batch_size)
    losses, val_losses = [], []
    for epoch in range(1, config.epochs + 1):
        total = 0.0
        for it, rows in enumerate(batches(n, config.batch_size, rng), 1):
            params, state, E = module.train_step(params, state, x[rows], None if y is None else y[rows])
            total += E
            bar.update(epoch, it, total / it)
        losses.append(total / per_epoch)
        if not math.isfinite(losses[-1]):
            raise FloatingPointError(f"the loss became {losses[-1]} in epoch {epoch}; try a smaller learning rate")
        if x_val is not None:
            val_losses.append(batch_mean_loss(module, params, x_val, y_val, config.batch_size))
        bar.end_epoch(epoch, losses[-1], val_losses[-1] if val_losses else None)
    return Result(params, state, losses, module, val_losses)


def replace_train(model, config):
    """A shallow copy of model with its train table replaced (the TrainConfig is re-checked)."""
    model = copy.copy(model)
    model.train = replace(config)
    return model
