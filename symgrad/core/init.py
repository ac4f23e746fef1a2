"""Parameter initialisation: given values, or a seeded scheme drawn in parameter order.

``init_plan`` is the single description both sides use: symgrad evaluates it here, and the
NumPy backend prints the same calls into the generated ``init_params``, so both draw the same
numbers from ``numpy.random.default_rng(seed)``.

Schemes (weights; biases are zero unless given):
xavier  W ~ U(-a, a), a = sqrt(6 / (fan_in + fan_out))      (Glorot uniform)
he      W ~ N(0, s^2), s = sqrt(2 / fan_in)                  (Kaiming normal)
uniform W ~ U(-a, a), a = 1 / sqrt(fan_in)                   (PyTorch's nn.Linear default)
zeros   W = 0
"""

import math

import numpy as np


def init_plan(model):
    """[(param, call, args)] with call one of 'value', 'uniform', 'normal', 'zeros'."""
    plan = []
    for p in model.params:
        if p.value is not None:
            plan.append((p, "value", (p.value,)))
        elif p.init == "xavier" and len(p.shape) >= 2:
            plan.append((p, "uniform", (math.sqrt(6.0 / (p.fan_in + p.fan_out)),)))
        elif p.init == "he" and len(p.shape) >= 2:
            plan.append((p, "normal", (math.sqrt(2.0 / p.fan_in),)))
        elif p.init == "uniform" and len(p.shape) >= 2:
            plan.append((p, "uniform", (1.0 / math.sqrt(p.fan_in),)))
        else:
            plan.append((p, "zeros", ()))
    return plan


def init_values(model, dtype=np.float64):
    """{param name: ndarray} following init_plan with numpy.random.default_rng(seed)."""
    rng = np.random.default_rng(getattr(model, "seed", 0))
    values = {}
    for p, call, args in init_plan(model):
        if call == "value":
            v = np.array(args[0], dtype=dtype)
        elif call == "uniform":
            v = rng.uniform(-args[0], args[0], size=p.shape).astype(dtype)
        elif call == "normal":
            v = rng.normal(0.0, args[0], size=p.shape).astype(dtype)
        else:
            v = np.zeros(p.shape, dtype=dtype)
        values[p.name] = v
    return values
