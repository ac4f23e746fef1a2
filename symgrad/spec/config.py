"""The plain settings a spec carries besides the model: its worked sample, claimed values, training."""

import math
from dataclasses import dataclass

import numpy as np

from symgrad.checks import choice_message
from symgrad.errors import SpecError


@dataclass
class Sample:
    """The worked-example sample: one input row and its target row."""

    x: np.ndarray | None
    t: np.ndarray | None
    seed: int | None = None  # with no x given: x ~ U(0, 1) and a one-hot t, drawn from this seed


@dataclass
class Expect:
    """A value a text claims (a gradient, output, loss, or forward value) that checks confirm or refute."""

    what: str  # gradient | output | loss | value
    name: str | None
    value: float
    rel_tol: float = 1e-6
    abs_tol: float = 0.0
    source: str = ""


OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "newton", "gauss_newton")
SECOND_ORDER = ("newton", "gauss_newton")  # optimizers that solve with a curvature matrix (small models)
SCHEDULES = ("constant", "step", "exponential", "cosine")


@dataclass
class TrainConfig:
    """Optimizer settings the spec gives (used by reports' update step and by training).

    ``optimizer`` is sgd, momentum (sgd with ``momentum`` > 0), nesterov (momentum with the
    look-ahead), adam or adamw; ``sgd`` with ``momentum`` > 0 (and ``nesterov``) means the same as
    torch.optim.SGD. ``newton`` (damped Newton) and ``gauss_newton`` (Levenberg-Marquardt) solve
    (C + damping I) s = g with C the exact Hessian or the Gauss-Newton matrix of the batch loss.
    Schedules count optimizer steps: lr(k) after k steps.
    """

    learning_rate: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.0
    nesterov: bool = False
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    schedule: str = "constant"
    step_size: int = 1
    gamma: float = 0.1
    total_steps: int = 1000
    min_lr: float = 0.0
    damping: float = 1e-3
    epochs: int = 10
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise SpecError(choice_message("optimizer", self.optimizer, OPTIMIZERS), "train.optimizer")
        if self.schedule not in SCHEDULES:
            raise SpecError(choice_message("schedule", self.schedule, SCHEDULES), "train.schedule")
        for key, lo, hi, closed in (("learning_rate", 0, math.inf, False), ("momentum", 0, 1, True), ("beta1", 0, 1, True),
                                    ("beta2", 0, 1, True), ("eps", 0, math.inf, False), ("weight_decay", 0, math.inf, True),
                                    ("gamma", 0, math.inf, False), ("min_lr", 0, math.inf, True),
                                    ("damping", 0, math.inf, True)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not (
                    (lo <= v if closed else lo < v) and v < hi):
                where = f"{'[' if closed else '('}{lo}, {hi})".replace("inf", "infinity")
                raise SpecError(f"{key} must be a number in {where}, got {v!r}", f"train.{key}")
        for key in ("step_size", "total_steps", "epochs", "batch_size"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SpecError(f"{key} must be a positive integer, got {v!r}", f"train.{key}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise SpecError(f"seed must be a non-negative integer, got {self.seed!r}", "train.seed")
        if not isinstance(self.nesterov, bool):
            raise SpecError("nesterov must be true or false", "train.nesterov")
        if self.optimizer in ("momentum", "nesterov") and self.momentum == 0:
            raise SpecError(f"optimizer {self.optimizer!r} needs momentum > 0", "train.momentum")
        if self.nesterov and (self.optimizer not in ("sgd", "nesterov") or self.momentum == 0):
            raise SpecError("nesterov needs optimizer sgd (or nesterov) and momentum > 0", "train.nesterov")
        if self.optimizer in SECOND_ORDER and self.weight_decay:
            raise SpecError(f"optimizer {self.optimizer!r} takes no weight_decay (add it to the loss)", "train.weight_decay")

    @property
    def kind(self):
        """The update rule: sgd, momentum, nesterov, adam or adamw."""
        if self.optimizer == "sgd" and self.momentum > 0:
            return "nesterov" if self.nesterov else "momentum"
        return self.optimizer
