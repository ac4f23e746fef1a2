"""Generated train_step and lr_at against torch.optim and torch.optim.lr_scheduler, step for step in float64."""

import numpy as np
import pytest

import symgrad
from symgrad.errors import SpecError
from symgrad.train.optim import describe, update_equations

torch = pytest.importorskip("torch", reason="torch is the oracle for the optimizer and schedule formulas")


def network(train, seed=0, freeze=()):
    """A random 3-4-2 tanh/sigmoid network with the given [train] table."""
    return symgrad.Network(
        "opt_net", inputs=3,
        layers=[symgrad.Dense("h", 4, "tanh", freeze=freeze), symgrad.Dense("o", 2, "sigmoid")],
        loss=symgrad.get_loss("mse"), init="xavier", seed=seed, train=train,
    )


def torch_optimizer(cfg, tensors):
    kind = cfg.kind
    if kind in ("sgd", "momentum", "nesterov"):
        return torch.optim.SGD(tensors, lr=cfg.learning_rate, momentum=cfg.momentum, nesterov=kind == "nesterov",
                               weight_decay=cfg.weight_decay)
    cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
    return cls(tensors, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, weight_decay=cfg.weight_decay)


def torch_scheduler(cfg, opt):
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.schedule == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.gamma)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.total_steps, eta_min=cfg.min_lr)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0)


CONFIGS = [
    dict(optimizer="sgd", learning_rate=0.3),
    dict(optimizer="sgd", learning_rate=0.3, weight_decay=0.05),
    dict(optimizer="momentum", learning_rate=0.1, momentum=0.9, weight_decay=0.01),
    dict(optimizer="sgd", learning_rate=0.1, momentum=0.8, nesterov=True),
    dict(optimizer="nesterov", learning_rate=0.1, momentum=0.9, weight_decay=0.02, schedule="step", step_size=3, gamma=0.5),
    dict(optimizer="adam", learning_rate=0.05),
    dict(optimizer="adam", learning_rate=0.05, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.01, schedule="cosine",
         total_steps=11, min_lr=0.001),  # torch restarts after T_max; symgrad holds min_lr
    dict(optimizer="adamw", learning_rate=0.05, weight_decay=0.1, schedule="exponential", gamma=0.9),
]


@pytest.mark.parametrize("kw", CONFIGS, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items() if k != "learning_rate"))
def test_train_step_matches_torch_optim(build, kw):
    cfg = symgrad.TrainConfig(**kw)
    seed = len(str(kw))
    model = network(cfg, seed=seed, freeze=("bias",) if cfg.kind in ("momentum", "adam") else ())
    mod = build(model)
    params = mod.init_params()
    frozen = {n: params[n].copy() for n in mod.PARAM_NAMES if n not in mod.TRAINABLE}
    tensors = {n: torch.tensor(params[n], dtype=torch.float64, requires_grad=True) for n in mod.TRAINABLE}
    opt = torch_optimizer(cfg, list(tensors.values()))
    sched = torch_scheduler(cfg, opt)
    state = mod.init_state(params)
    rng = np.random.default_rng(seed)
    for step in range(12):
        x, y = rng.normal(size=(5, 3)), rng.uniform(size=(5, 2))
        assert mod.lr_at(step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12, abs=1e-15)
        before = {n: p.copy() for n, p in params.items()}
        E_torch, grads = mod.loss_and_gradients({**params, **{n: t.detach().numpy() for n, t in tensors.items()}}, x, y)
        for n, t in tensors.items():
            t.grad = torch.tensor(grads[n])
        opt.step()
        sched.step()
        params, state, E = mod.train_step(params, state, x, y)
        assert E == pytest.approx(E_torch, rel=1e-12)
        for n, p in before.items():  # train_step is functional: the old arrays are untouched
            assert p is not params[n] or n not in mod.TRAINABLE
        for n, t in tensors.items():
            np.testing.assert_allclose(params[n], t.detach().numpy(), rtol=1e-11, atol=1e-14, err_msg=f"{n} at step {step}")
        for n, v in frozen.items():
            np.testing.assert_array_equal(params[n], v)
    assert state["step"] == 12


@pytest.mark.parametrize("kw", [
    dict(schedule="constant"),
    dict(schedule="step", step_size=4, gamma=0.5),
    dict(schedule="exponential", gamma=0.9),
    dict(schedule="cosine", total_steps=20, min_lr=0.001),
], ids=lambda kw: kw["schedule"])
def test_lr_at_matches_torch_schedulers(build, kw):
    cfg = symgrad.TrainConfig(learning_rate=0.2, **kw)
    mod = build(network(cfg))
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.2)
    sched = torch_scheduler(cfg, opt)
    for k in range(21):
        assert mod.lr_at(k) == pytest.approx(sched.get_last_lr()[0], rel=1e-12, abs=1e-15), k
        opt.step()
        sched.step()


def test_cosine_holds_min_lr_after_total_steps(build):
    mod = build(network(symgrad.TrainConfig(learning_rate=0.2, schedule="cosine", total_steps=10, min_lr=0.01)))
    assert mod.lr_at(10) == pytest.approx(0.01) and mod.lr_at(1000) == pytest.approx(0.01)


def test_expression_model_trains_scalars_and_keeps_frozen(build):
    model = symgrad.ExpressionModel("line", ["u"], "a*u + c", {"a": 0.5, "c": 1.0}, loss="mse", freeze=("c",),
                                    train=symgrad.TrainConfig(learning_rate=0.1))
    mod = build(model)
    params = mod.init_params()
    x, y = np.array([[1.0], [2.0]]), np.array([[3.0], [5.0]])
    E, g = mod.loss_and_gradients(params, x, y)
    new, state, E2 = mod.train_step(params, mod.init_state(params), x, y)
    assert E2 == E and state["step"] == 1
    assert float(new["a"]) == pytest.approx(0.5 - 0.1 * float(g["a"]), rel=1e-15)
    assert float(new["c"]) == 1.0 and float(params["a"]) == 0.5


def test_update_equations_are_sympy_for_reports():
    eqs = update_equations(symgrad.TrainConfig(optimizer="nesterov", momentum=0.9, weight_decay=0.1))
    assert [str(lhs) for lhs, _ in eqs] == ["g", "b", "theta"]
    assert str(eqs[-1][1]) == "-eta*(b*mu + g) + theta"
    text = "\n".join(describe(symgrad.TrainConfig(optimizer="adam", schedule="cosine")))
    assert "m_hat <- m/(1 - beta_1**t)" in text and "eta_min" in text


@pytest.mark.parametrize("kw, key", [
    (dict(optimizer="adma"), "train.optimizer"),
    (dict(optimizer="momentum"), "train.momentum"),
    (dict(nesterov=True), "train.nesterov"),
    (dict(schedule="linear"), "train.schedule"),
    (dict(learning_rate=0.0), "train.learning_rate"),
    (dict(momentum=1.0), "train.momentum"),
    (dict(batch_size=0), "train.batch_size"),
])
def test_bad_train_table_names_the_key(kw, key):
    with pytest.raises(SpecError) as err:
        symgrad.TrainConfig(**kw)
    assert err.value.key == key


def test_bad_train_key_in_toml_has_a_line(tmp_path):
    src = (tmp_path / "m.toml")
    src.write_text('name = "m"\ninputs = 1\nloss = "mse"\n[[layers]]\nname = "l"\nunits = 1\n[train]\noptimizer = "adma"\n')
    with pytest.raises(SpecError, match=r"line 8.*did you mean 'adam'"):
        symgrad.load(src)
