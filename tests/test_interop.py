"""PyTorch interchange: converted nn.Sequential models agree with PyTorch float64; state_dicts go both ways."""

from collections import OrderedDict

import numpy as np
import pytest

import symgrad
from symgrad.errors import SpecError

torch = pytest.importorskip("torch", reason="PyTorch is the oracle; install the test extra to run it")
nn = torch.nn
F = torch.nn.functional


def _models():
    """(id, module, symgrad loss, torch loss of (output, last net input, one-hot target))."""
    torch.manual_seed(0)
    mse = ("mse", lambda y, z, t: F.mse_loss(y, t))
    ce = ("softmax_cross_entropy", lambda y, z, t: F.nll_loss(F.log_softmax(z, dim=1), t.argmax(dim=1)))
    return [
        ("tanh_sigmoid_mse", nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2), nn.Sigmoid()), *mse),
        ("relu_softmax_ce", nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3), nn.Softmax(dim=1)), *ce),
        ("leaky_elu_gelu_silu", nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.1), nn.Linear(4, 4), nn.ELU(alpha=0.7),
                                              nn.Dropout(0.5), nn.Linear(4, 5), nn.GELU(), nn.Linear(5, 3, bias=False),
                                              nn.SiLU(), nn.Linear(3, 2), nn.Softplus(), nn.Identity()), *mse),
    ]


MODELS = _models()


def _torch_run(module, x, t, torch_loss):
    """Output, loss and {state_dict key: gradient} from PyTorch float64 autograd."""
    module = module.double().eval()
    module.zero_grad()
    z, a = None, torch.tensor(x)
    for child in module:
        if isinstance(child, nn.Softmax):
            z = a
        a = child(a)
    loss = torch_loss(a, z, torch.tensor(t))
    loss.backward()
    grads = {k: p.grad.numpy() for k, p in module.named_parameters()}
    return a.detach().numpy(), loss.item(), grads


@pytest.mark.parametrize("case", MODELS, ids=[c[0] for c in MODELS])
def test_converted_module_matches_pytorch(tmp_path, case):
    name, module, loss, torch_loss = case
    model = symgrad.from_torch(module, loss=loss, name=name)
    symgrad.generate(model, "numpy", tmp_path)
    mod = symgrad.import_generated(name, tmp_path)
    rng = np.random.default_rng(1)
    n_in, n_out = module[0].in_features, model.n_outputs
    for batch in (3, 64):  # the per-sample and the array code paths
        x = rng.normal(size=(batch, n_in))
        t = np.eye(n_out)[rng.integers(n_out, size=batch)]
        params = symgrad.load_state_dict(module.state_dict(), model)
        E, g = mod.loss_and_gradients(params, x, t)
        y, te, tg = _torch_run(module, x, t, torch_loss)
        np.testing.assert_allclose(mod.forward(params, x), y, rtol=1e-10, atol=1e-13)
        assert E == pytest.approx(te, rel=1e-10, abs=1e-13)
        assert {model.torch_keys[k] for k in g} == set(tg)
        for k in g:
            np.testing.assert_allclose(g[k], tg[model.torch_keys[k]], rtol=1e-10, atol=1e-13, err_msg=k)


@pytest.mark.parametrize("case", MODELS, ids=[c[0] for c in MODELS])
def test_state_dict_round_trip(tmp_path, case):
    name, module, loss, _ = case
    model = symgrad.from_torch(module, loss=loss, name=name)
    symgrad.generate(model, "numpy", tmp_path)
    mod = symgrad.import_generated(name, tmp_path)
    params = symgrad.load_state_dict(module.state_dict(), model)
    init = mod.init_params()
    assert set(params) == set(init)
    for k in init:
        np.testing.assert_array_equal(params[k], init[k])
    moved = {k: 0.5 * v + 0.1 for k, v in init.items()}
    state = symgrad.to_state_dict(moved, model)
    assert isinstance(state, OrderedDict) and list(state) == list(module.state_dict())
    assert all(v.dtype == torch.float64 for v in state.values())
    fresh = _models()[[c[0] for c in MODELS].index(name)][1].double().eval()
    fresh.load_state_dict(state)
    x = np.random.default_rng(2).normal(size=(5, module[0].in_features))
    np.testing.assert_allclose(fresh(torch.tensor(x)).detach().numpy(), mod.forward(moved, x), rtol=1e-12, atol=1e-14)


def test_layer_names_and_keys():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Sequential(nn.Linear(3, 3), nn.Tanh()), nn.Linear(3, 2),
                        nn.Softmax(dim=-1))
    model = symgrad.from_torch(seq, loss="softmax_cross_entropy")
    assert [d.name for d in model.layers] == ["linear1", "linear2", "linear3", "softmax1"]
    assert model.torch_keys == {"linear1.weight": "0.weight", "linear1.bias": "0.bias", "linear2.weight": "2.0.weight",
                                "linear2.bias": "2.0.bias", "linear3.weight": "3.weight", "linear3.bias": "3.bias"}
    assert model.name == "torch_model"

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear2, self.act, self.out = nn.Linear(2, 3), nn.SiLU(), nn.Linear(3, 1)

    model = symgrad.from_torch(Net(), input_shape=(1, 2))
    assert [d.name for d in model.layers] == ["linear2", "out"]
    assert model.param_names == ("linear2.weight", "linear2.bias", "out.weight", "out.bias")
    assert model.layers[0].activation.name == "silu"


def test_frozen_parameters_and_a_given_loss():
    seq = nn.Sequential(nn.Linear(2, 2), nn.Sigmoid(), nn.Linear(2, 1))
    seq[0].bias.requires_grad_(False)
    model = symgrad.from_torch(seq, loss=symgrad.get_loss("sse"))
    assert [p.name for p in model.trainable_params] == ["linear1.weight", "linear2.weight", "linear2.bias"]
    np.testing.assert_array_equal(model.params[0].value, seq[0].weight.detach().double().numpy())
    assert model.loss.name == "sse"


def test_a_generic_network_maps_to_sequential_keys():
    net = symgrad.Network("plain", 2, [symgrad.Dense("h", 3, activation="tanh"), symgrad.Dense("o", 1)], "mse")
    params = net.init_params()
    state = symgrad.to_state_dict(params, net)
    assert list(state) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    seq = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)).double()
    seq.load_state_dict(state)
    back = symgrad.load_state_dict(seq.state_dict(), net)
    for k in params:
        np.testing.assert_array_equal(back[k], params[k])


@pytest.mark.parametrize("children, key, words", [
    ([nn.Linear(2, 2), nn.BatchNorm1d(2)], "module[1]", "BatchNorm1d is not supported"),
    ([nn.Linear(2, 2), nn.ReLU(), nn.Tanh()], "module[2]", "Tanh follows ReLU at module[1]"),
    ([nn.Linear(2, 2), nn.ReLU(), nn.Dropout(), nn.Tanh()], "module[3]", "Tanh follows ReLU"),
    ([nn.Sigmoid(), nn.Linear(2, 2)], "module[0]", "Sigmoid comes first"),
    ([nn.Softmax(dim=1), nn.Linear(2, 2)], "module[0]", "Softmax comes before any Linear"),
    ([nn.Linear(2, 2), nn.Softmax(dim=0)], "module[1]", "Softmax(dim=0)"),
    ([nn.Linear(2, 2), nn.GELU(approximate="tanh")], "module[1]", "approximate='tanh'"),
    ([nn.Linear(2, 2), nn.Softplus(beta=2)], "module[1]", "beta=2"),
    ([nn.Linear(2, 2), nn.ReLU6()], "module[1]", "ReLU6 is not supported"),
    ([nn.Dropout()], "module", "no layers"),
])
def test_unsupported_modules_are_named(children, key, words):
    with pytest.raises(SpecError) as err:
        symgrad.from_torch(nn.Sequential(*children))
    assert err.value.key == key
    assert words in err.value.message


def test_bad_arguments():
    with pytest.raises(SpecError, match="expected a torch.nn.Module"):
        symgrad.from_torch([nn.Linear(2, 2)])
    with pytest.raises(SpecError, match="input_shape .* has 6 values but the first Linear takes 4"):
        symgrad.from_torch(nn.Sequential(nn.Flatten(), nn.Linear(4, 1)), input_shape=(2, 3))
    with pytest.raises(SpecError, match="loss"):
        symgrad.from_torch(nn.Sequential(nn.Linear(2, 2)), loss="softmax_cross_entropy")


def test_state_dict_keys_and_shapes_are_checked():
    seq = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    model = symgrad.from_torch(seq)
    state = {k: v.numpy() for k, v in seq.state_dict().items()}
    with pytest.raises(SpecError, match="missing key '2.bias'"):
        symgrad.load_state_dict({k: v for k, v in state.items() if k != "2.bias"}, model)
    with pytest.raises(SpecError, match="unexpected key '4.weight'"):
        symgrad.load_state_dict({**state, "4.weight": np.zeros((1, 1))}, model)
    with pytest.raises(SpecError, match=r"shape mismatch for '0.weight': the model has \(3, 2\), the state_dict has \(2, 3\)"):
        symgrad.load_state_dict({**state, "0.weight": np.zeros((2, 3))}, model)
    params = symgrad.load_state_dict(state, model)
    with pytest.raises(SpecError, match="params has no 'linear2.bias'"):
        symgrad.to_state_dict({k: v for k, v in params.items() if k != "linear2.bias"}, model)
    with pytest.raises(SpecError, match=r"shape mismatch: the model has \(3,\), params has \(4,\)"):
        symgrad.to_state_dict({**params, "linear1.bias": np.zeros(4)}, model)
    shared = symgrad.Network("shared", 2, [symgrad.Dense("h", 2, bias="shared")], "mse")
    with pytest.raises(SpecError, match="shared bias"):
        symgrad.to_state_dict(shared.init_params(), shared)


def test_without_torch_the_error_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match="pip install torch"):
        symgrad.from_torch(object())
    with pytest.raises(ImportError, match="pip install torch"):
        symgrad.to_state_dict({}, symgrad.Network("n", 1, [symgrad.Dense("h", 1)], "mse"))


def test_from_torch_convolutional_network_matches_torch(tmp_path):
    """Conv/pool/flatten/linear children become a GraphNetwork; outputs and gradients equal PyTorch's, keys round-trip."""
    import symgrad
    from symgrad.api import generate, import_generated

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(4, 6, 3, stride=2, padding="valid", bias=False), torch.nn.Tanh(), torch.nn.AvgPool2d(2, padding=1),
        torch.nn.Flatten(), torch.nn.Linear(24, 5), torch.nn.Softmax(dim=1)).double()
    model = symgrad.from_torch(net, loss="softmax_cross_entropy", input_shape=(1, 12, 12))
    assert model.kind == "graph"
    generate(model, "numpy", tmp_path)
    mod = import_generated(model.name, tmp_path)
    params = symgrad.load_state_dict(net.state_dict(), model)
    rng = np.random.default_rng(0)
    x, labels = rng.normal(size=(3, 1, 12, 12)), rng.integers(5, size=3)
    E, grads = mod.loss_and_gradients(params, x, np.eye(5)[labels])
    logits = net[:-1](torch.tensor(x))
    ref = torch.nn.functional.cross_entropy(logits, torch.tensor(labels))
    ref.backward()
    assert abs(E - ref.item()) < 1e-12
    for key, g in symgrad.to_state_dict(grads, model).items():
        assert np.allclose(g.numpy(), dict(net.named_parameters())[key].grad.numpy(), rtol=1e-10, atol=1e-14), key


def test_from_torch_convolution_needs_input_shape():
    import symgrad
    from symgrad.errors import SpecError

    with pytest.raises(SpecError, match="input_shape"):
        symgrad.from_torch(torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3)))
