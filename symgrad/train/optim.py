"""Optimizers and learning-rate schedules as SymPy: the update equations reports print and code printers print.

An optimizer is an ordered list of assignments ``lhs <- rhs`` for one parameter tensor theta with
gradient g (elementwise, read top to bottom, each line seeing the lines before it); a schedule is
one expression eta(k) of the number k of steps already taken. Both read the spec's TrainConfig and
match torch.optim's SGD (momentum, Nesterov, weight decay), Adam, AdamW and its lr_scheduler's
StepLR, ExponentialLR and CosineAnnealingLR (held at min_lr after total_steps).

``newton`` and ``gauss_newton`` act on all trainable parameters at once, flattened in the generated
module's HESSIAN_ORDER: theta <- theta - eta s with s solving (C + lambda_LM I) s = g, C the exact Hessian
(damped Newton) or the generalised Gauss-Newton matrix (Levenberg-Marquardt) of the batch loss; for
small models (the module's ``hessian`` limit).
"""

import sympy as sp

from symgrad.backends.numpy.printer import numpy_code

theta, g, eta = sp.symbols("theta g eta", real=True)
b, m, v, m_hat, v_hat = sp.symbols("b m v m_hat v_hat", real=True)
mu, lam, beta1, beta2, eps = sp.symbols("mu lambda beta_1 beta_2 epsilon", positive=True)
t = sp.Symbol("t", integer=True, positive=True)  # the step being taken, 1, 2, ...
k = sp.Symbol("k", integer=True, nonnegative=True)  # steps already taken
eta0, eta_min, gamma, step_size, total = sp.symbols("eta_0 eta_min gamma step_size T", positive=True)
damp = sp.Symbol("lambda_LM", nonnegative=True)  # damping of the curvature matrix
step_dir = sp.Symbol("s", real=True)  # the solution of (C + lambda_LM I) s = g
CURVATURE = {"newton": "the Hessian H of the batch loss", "gauss_newton": "the Gauss-Newton matrix G = J^T H_loss J"}

# optimizer state carried between steps, per trainable parameter
SLOTS = {"sgd": (), "momentum": (b,), "nesterov": (b,), "adam": (m, v), "adamw": (m, v), "newton": (), "gauss_newton": ()}

# symbol -> name in the generated code
CODE_NAMES = {
    "theta": "p", "g": "g", "eta": "lr", "b": "b", "m": "m", "v": "v", "m_hat": "m_hat", "v_hat": "v_hat", "t": "t",
    "mu": "MOMENTUM", "lambda": "WEIGHT_DECAY", "beta_1": "BETA1", "beta_2": "BETA2", "epsilon": "EPS",
    "k": "step", "eta_0": "BASE_LR", "eta_min": "MIN_LR", "gamma": "GAMMA", "step_size": "STEP_SIZE", "T": "TOTAL_STEPS",
    "lambda_LM": "DAMPING", "s": "s",
}
# symbol -> TrainConfig field of its value
HYPER = {mu: "momentum", lam: "weight_decay", beta1: "beta1", beta2: "beta2", eps: "eps", eta0: "learning_rate",
         eta_min: "min_lr", gamma: "gamma", step_size: "step_size", total: "total_steps", damp: "damping"}


def update_equations(config):
    """The update of one parameter tensor as ordered (lhs, rhs) assignments, for config's optimizer."""
    kind = config.kind
    decay = config.weight_decay > 0
    eqs = []
    if kind in CURVATURE:  # s solves (C + lambda_LM I) s = g over all trainable parameters flattened
        return [(theta, theta - eta * step_dir)]
    if decay and kind != "adamw":
        eqs.append((g, g + lam * theta))  # L2 penalty lambda/2 |theta|^2 added to the loss
    if kind == "sgd":
        eqs.append((theta, theta - eta * g))
    elif kind in ("momentum", "nesterov"):
        eqs.append((b, mu * b + g))
        eqs.append((theta, theta - eta * (g + mu * b) if kind == "nesterov" else theta - eta * b))
    elif kind in ("adam", "adamw"):
        if decay and kind == "adamw":
            eqs.append((theta, theta * (1 - eta * lam)))  # decoupled weight decay
        eqs += [
            (m, beta1 * m + (1 - beta1) * g),
            (v, beta2 * v + (1 - beta2) * g**2),
            (m_hat, m / (1 - beta1**t)),
            (v_hat, v / (1 - beta2**t)),
            (theta, theta - eta * m_hat / (sp.sqrt(v_hat) + eps)),
        ]
    else:
        raise ValueError(f"unknown optimizer {kind!r}")
    return eqs


def lr_expression(config):
    """The learning rate eta(k) after k optimizer steps, for config's schedule."""
    if config.schedule == "constant":
        return eta0
    if config.schedule == "step":
        return eta0 * gamma ** sp.floor(k / step_size)
    if config.schedule == "exponential":
        return eta0 * gamma**k
    if config.schedule == "cosine":  # for k <= T; held at eta_min after
        return eta_min + (eta0 - eta_min) * (1 + sp.cos(sp.pi * k / total)) / 2
    raise ValueError(f"unknown schedule {config.schedule!r}")


def hyperparameters(config):
    """{symbol: value} of the hyper-parameters the update and the schedule use."""
    used = set(lr_expression(config).free_symbols) | {eta0} | ({damp} if config.kind in CURVATURE else set())
    for lhs, rhs in update_equations(config):
        used |= rhs.free_symbols
    values = {s: getattr(config, f) for s, f in HYPER.items() if s in used}
    return {s: values[s] for s in sorted(values, key=lambda s: list(HYPER).index(s))}


def describe(config):
    """Plain-text lines of the update rule and the schedule (for docstrings and reports)."""
    if config.kind in CURVATURE:
        lines = [f"optimizer {config.kind}: all trainable parameters theta flattened (HESSIAN_ORDER), gradient g,",
                 f"    s solves (C + lambda_LM I) s = g with C {CURVATURE[config.kind]},", "    theta <- theta - eta*s"]
    else:
        lines = [f"optimizer {config.kind}, per trainable parameter theta with gradient g, in order:"]
        lines += [f"    {lhs} <- {rhs}" for lhs, rhs in update_equations(config)]
    lines.append(f"learning rate after k steps ({config.schedule} schedule): eta = {lr_expression(config)}")
    if config.schedule == "cosine":
        lines.append("    (for k <= T; eta_min after)")
    lines.append("hyper-parameters: " + ", ".join(f"{s} = {val!r}" for s, val in hyperparameters(config).items()))
    return lines


def train_context(model):
    """The printed strings train.py.j2 lays out: constants, state slots, update lines and eta(k)."""
    c = model.train
    code = {str(s): n for s, n in CODE_NAMES.items()}
    constants = [(CODE_NAMES[str(s)], repr(val)) for s, val in hyperparameters(c).items()]
    return {
        "optimizer": c.kind,
        "schedule": c.schedule,
        "constants": constants,
        "slots": [CODE_NAMES[str(s)] for s in SLOTS[c.kind]],
        "uses_t": any(rhs.has(t) for _, rhs in update_equations(c)),
        "updates": [f"{code[str(lhs)]} = {numpy_code(rhs, code)}" for lhs, rhs in update_equations(c)],
        "curvature": {"newton": "hessian", "gauss_newton": "gauss_newton_matrix"}.get(c.kind),
        "lr": numpy_code(lr_expression(c), code),
        "cosine": c.schedule == "cosine",
        "describe": describe(c),
        "epochs": c.epochs,
        "batch_size": c.batch_size,
        "seed": c.seed,
    }
