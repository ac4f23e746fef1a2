"""PyTorch interchange: converted nn.Sequential models agree with PyTorch float64; state_dicts go both ways."""

import shutil
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


# recurrent children: nn.RNN, nn.LSTM, nn.GRU (batch_first=True)


class _SeqModel(nn.Module):
    """Recurrent children run in turn on the output sequence; the head reads the last step or every step."""

    def __init__(self, recs, head, last=True):
        super().__init__()
        self.recs = recs
        for k, rec in enumerate(recs):  # registration order is the order forward runs them
            self.add_module(f"rec{k}", rec)
        self.head, self.last = head, last

    def forward(self, x):
        for rec in self.recs:
            x, _ = rec(x)
        return self.head(x[:, -1] if self.last else x)


def _check_recurrent(tmp_path, module, input_shape, return_sequences=False, batch=4, seed=0):
    """Forward, loss and every gradient of the converted module (NumPy) against PyTorch float64, 1e-10 relative."""
    model = symgrad.from_torch(module, input_shape=input_shape, return_sequences=return_sequences, name="rec")
    symgrad.generate(model, "numpy", tmp_path)
    mod = symgrad.import_generated("rec", tmp_path)
    module = module.double()
    params = symgrad.load_state_dict(module.state_dict(), model)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, *input_shape))
    out = module(torch.tensor(x))
    y = out[0][:, -1] if isinstance(out, tuple) else out  # a bare recurrent module: its last step
    t = rng.normal(size=tuple(y.shape))
    loss = F.mse_loss(y, torch.tensor(t))
    loss.backward()
    worst = lambda a, b: np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)  # noqa: E731
    assert worst(mod.forward(params, x), y.detach().numpy()) < 1e-10
    E, grads = mod.loss_and_gradients(params, x, t)
    assert abs(E - loss.item()) < 1e-10 * loss.item()
    ref = {k: p.grad.numpy() for k, p in module.named_parameters()}
    assert {model.torch_keys[k] for k in grads} == set(ref)
    errors = {k: worst(g, ref[model.torch_keys[k]]) for k, g in grads.items()}
    assert max(errors.values()) < 1e-10, errors
    return model


RECURRENT = {
    "rnn_tanh": lambda **kw: nn.RNN(3, 4, batch_first=True, **kw),
    "rnn_relu": lambda **kw: nn.RNN(3, 4, nonlinearity="relu", batch_first=True, **kw),
    "lstm": lambda **kw: nn.LSTM(3, 4, batch_first=True, **kw),
    "gru": lambda **kw: nn.GRU(3, 4, batch_first=True, **kw),
}


@pytest.mark.parametrize("kind", list(RECURRENT))
@pytest.mark.parametrize("num_layers, bias, last", [(1, True, True), (2, True, False), (2, False, True)])
def test_recurrent_child_matches_pytorch(tmp_path, kind, num_layers, bias, last):
    torch.manual_seed(0)
    module = _SeqModel([RECURRENT[kind](num_layers=num_layers, bias=bias)], nn.Linear(4, 2), last)
    model = _check_recurrent(tmp_path, module, (5, 3), return_sequences=not last)
    names = ["rec0"] if num_layers == 1 else ["rec0_l0", "rec0_l1"]
    assert [n.name for n in model.nodes] == [*names, "head"]
    assert [n.op.return_sequences for n in model.nodes[:-1]] == [True] * (num_layers - 1) + [not last]
    assert model.output_shape == ((2,) if last else (5, 2))
    top = names[-1]
    assert model.torch_keys[f"{top}.weight_hh"] == f"rec0.weight_hh_l{num_layers - 1}"
    assert (f"{top}.bias_ih" in model.torch_keys) == bias


def test_stacked_recurrent_children_pass_every_step_to_the_next(tmp_path):
    torch.manual_seed(1)
    module = _SeqModel([nn.LSTM(3, 5, batch_first=True), nn.GRU(5, 4, batch_first=True),
                        nn.RNN(4, 3, batch_first=True)], nn.Linear(3, 1))
    model = _check_recurrent(tmp_path, module, (6, 3), batch=1)
    assert [n.op.return_sequences for n in model.nodes[:-1]] == [True, True, False]


def test_a_bare_recurrent_module_gives_its_last_step(tmp_path):
    torch.manual_seed(2)
    model = _check_recurrent(tmp_path, nn.GRU(3, 4, num_layers=2, batch_first=True), (7, 3))
    assert model.torch_keys == {f"gru1_l{k}.{w}": f"{w}_l{k}" for k in (0, 1)
                                for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}


def test_frozen_recurrent_weights_get_no_gradient():
    lstm = nn.LSTM(2, 3, batch_first=True)
    lstm.weight_hh_l0.requires_grad_(False)
    model = symgrad.from_torch(_SeqModel([lstm], nn.Linear(3, 1)), input_shape=(4, 2))
    assert "rec0.weight_hh" not in [p.name for p in model.trainable_params]


@pytest.mark.parametrize("child, words", [
    (nn.LSTM(3, 4), "LSTM(batch_first=False) is not supported: only batch_first=True, one direction, proj_size=0 and "
                    "dropout=0"),
    (nn.GRU(3, 4, batch_first=True, bidirectional=True), "GRU(bidirectional=True) is not supported"),
    (nn.LSTM(3, 4, batch_first=True, proj_size=2), "LSTM(proj_size=2) is not supported"),
    (nn.RNN(3, 4, num_layers=2, dropout=0.25, batch_first=True), "RNN(dropout=0.25) is not supported"),
])
def test_unsupported_recurrent_settings_name_the_child(child, words):
    with pytest.raises(SpecError) as err:
        symgrad.from_torch(_SeqModel([child], nn.Linear(4, 1)), input_shape=(5, 3))
    assert err.value.key == "module[rec0]"
    assert words in err.value.message


def test_recurrent_conversion_arguments_are_checked():
    with pytest.raises(SpecError, match=r"needs input_shape, .* or \(T, F\) for sequences"):
        symgrad.from_torch(_SeqModel([nn.GRU(3, 4, batch_first=True)], nn.Linear(4, 1)))
    with pytest.raises(SpecError, match="return_sequences applies to a module with a recurrent child"):
        symgrad.from_torch(nn.Sequential(nn.Linear(2, 2)), return_sequences=True)
    with pytest.raises(SpecError, match="activation Tanh must follow a Linear, a convolution or a pooling"):
        symgrad.from_torch(nn.Sequential(nn.GRU(3, 4, batch_first=True), nn.Tanh()), input_shape=(5, 3))


class _ConvSeq(nn.Module):
    """Conv1d children on (batch, C, L), then recurrent children on (batch, T, F): forward transposes between them."""

    def __init__(self, convs, recs, head):
        super().__init__()
        self.convs, self.recs = nn.Sequential(*convs), recs
        for k, rec in enumerate(recs):  # registration order is the order forward runs them
            self.add_module(f"rec{k}", rec)
        self.head = head

    def forward(self, x):
        x = self.convs(x).transpose(1, 2)
        for rec in self.recs:
            x, _ = rec(x)
        return self.head(x[:, -1])


@pytest.mark.parametrize("kind", ["rnn_relu", "lstm", "gru"])
def test_a_conv1d_child_before_a_recurrent_child_gets_a_transpose(tmp_path, kind):
    """conv1d -> relu -> maxpool1d -> tanh, then recurrent layers read (length, channels): a transpose layer is inserted."""
    torch.manual_seed(3)
    convs = [nn.Conv1d(2, 3, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2, stride=1), nn.Tanh()]
    module = _ConvSeq(convs, [RECURRENT[kind](num_layers=2)], nn.Linear(4, 2))
    model = _check_recurrent(tmp_path, module, (2, 7))
    assert [(n.kind, n.shape) for n in model.nodes] == [
        ("conv1d", (3, 7)), ("maxpool1d", (3, 6)), ("transpose", (6, 3)), (kind[:3] if kind != "lstm" else "lstm", (6, 4)),
        (kind[:3] if kind != "lstm" else "lstm", (4,)), ("dense", (2,))]
    assert model.nodes[2].name == "transpose1" and model.nodes[1].activation.name == "tanh"


@pytest.mark.skipif(not shutil.which("cc") and not shutil.which("gcc"), reason="no C compiler")
def test_the_inserted_transpose_in_the_c_package_matches_pytorch(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMGRAD_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(4)
    module = _ConvSeq([nn.Conv1d(2, 3, 3, padding=1), nn.ReLU()], [nn.LSTM(3, 4, batch_first=True)], nn.Linear(4, 2))
    model = symgrad.from_torch(module, input_shape=(2, 6), name="convlstm")
    symgrad.generate(model, "c", tmp_path)
    pkg = symgrad.import_generated("convlstm_c", tmp_path)
    module = module.double()
    params = symgrad.load_state_dict(module.state_dict(), model)
    rng = np.random.default_rng(4)
    x, t = rng.normal(size=(3, 2, 6)), rng.normal(size=(3, 2))
    loss = F.mse_loss(module(torch.tensor(x)), torch.tensor(t))
    loss.backward()
    E, grads = pkg.loss_and_gradients(params, x, t)
    assert abs(E - loss.item()) < 1e-10 * loss.item()
    for k, g in grads.items():
        ref = dict(module.named_parameters())[model.torch_keys[k]].grad.numpy()
        assert np.abs(g - ref).max() <= 1e-10 * np.abs(ref).max(), k


def test_a_module_whose_forward_is_a_residual_block_is_refused_clearly():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.relu, self.fc2 = nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4)

        def forward(self, x):
            return torch.relu(x + self.fc2(self.relu(self.fc1(x))))

    class Join(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv1d(2, 2, 3, padding=1), nn.Linear(20, 1)

        def forward(self, x):
            y = self.conv(x)
            return self.fc(torch.flatten(torch.cat([y, y], 1), 1))

    class Sizes(nn.Module):  # reading a value's size is not a fork
        def __init__(self):
            super().__init__()
            self.conv, self.flat, self.fc = nn.Conv1d(2, 2, 3), nn.Flatten(), nn.Linear(6, 1)

        def forward(self, x):
            y = self.flat(self.conv(x))
            return self.fc(y.view(x.size(0), -1).reshape(y.shape[0], -1))

    assert [n.kind for n in symgrad.from_torch(Sizes(), input_shape=(2, 5)).nodes] == ["conv1d", "flatten", "dense"]
    for module, what, shape in ((Block(), "the value 'x' is read by 'fc1' and 'add'", None),
                                (Join(), "'cat' joins 'conv' and 'conv'", (2, 5))):
        with pytest.raises(SpecError) as err:
            symgrad.from_torch(module, input_shape=shape)
        assert err.value.key == "module"
        assert f"{type(module).__name__}.forward is not a chain of its children: {what} (a residual connection" in \
            err.value.message and "symgrad.from_onnx" in err.value.message


def test_a_forward_computing_outside_its_children_or_out_of_order_is_refused():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(3, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.fc2(torch.relu(self.fc1(x)))

    class Swapped(Functional):
        def forward(self, x):
            return self.fc1(self.fc2(x))

    for module, what in ((Functional(), "computes 'relu' ('relu') outside its children"),
                         (Swapped(), "calls its children as ['fc2', 'fc1'], not in their order ['fc1', 'fc2']")):
        with pytest.raises(SpecError) as err:
            symgrad.from_torch(module)
        assert err.value.key == "module" and what in err.value.message


class _Seq(nn.Module):
    """An LSTM then a Linear, its forward handing on every step (out), the last step (out[:, -1]) or h_n[-1]."""

    def __init__(self, read):
        super().__init__()
        self.read, self.rnn, self.fc = read, nn.LSTM(3, 4, num_layers=2, batch_first=True), nn.Linear(4, 1)

    def forward(self, x):
        out, (h, _) = self.rnn(x)
        return self.fc(out if self.read == "every" else out[:, -1] if self.read == "last" else h[-1])


@pytest.mark.parametrize("read", ["every", "last", "h_n"])
def test_which_steps_a_recurrent_child_hands_on_is_read_from_its_forward(tmp_path, read):
    torch.manual_seed(0)
    module = _Seq(read).double()
    every = read == "every"
    with pytest.raises(SpecError, match="return_sequences") as err:
        symgrad.from_torch(module, input_shape=(5, 3), return_sequences=not every)
    assert err.value.key == "module[rnn]"
    _check_recurrent(tmp_path, module, (5, 3), return_sequences=every)
