"""Graph networks (convolution, pooling, flatten, add, concat, dense) in NumPy against PyTorch float64.

Random specs are drawn from the spec reference (tests/graph_specs.py): every option of stride,
padding (including "same"), dilation and bias, odd sizes, forks joined by add or concat, batch 1
and larger. Forward, loss and every gradient must agree to 1e-10 relative. The default run is
bounded; ``SYMGRAD_PROPERTY_EXAMPLES=200`` draws more.
"""

import os

import numpy as np
import pytest
from graph_specs import NET_ACTIVATIONS, net_activations_spec, random_graph, reference

from symgrad.errors import SpecError
from symgrad.ops.layers import TENSOR_LAYERS
from symgrad.ops.tensor import Node
from symgrad.spec import from_dict

torch = pytest.importorskip("torch")

N = int(os.environ.get("SYMGRAD_PROPERTY_EXAMPLES", 25))


def _close(a, b, tol=1e-10):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    scale = max(np.max(np.abs(b)) if b.size else 0.0, 1e-3)  # a gradient that is exactly 0 (a shared bias under softmax)
    assert np.max(np.abs(a - b)) <= tol * scale, np.max(np.abs(a - b)) / scale


def _data(model, rng, batch):
    x = rng.normal(size=(batch,) + model.input_shape)
    if model.loss.name == "softmax_cross_entropy":
        t = np.eye(model.n_outputs)[rng.integers(model.n_outputs, size=batch)]
    else:
        t = rng.uniform(size=(batch,) + model.output_shape)
    return x, t


@pytest.mark.parametrize("seed", range(N))
def test_random_graph_matches_pytorch(seed, build):
    rng = np.random.default_rng(1000 + seed)
    model = from_dict(random_graph(rng))
    mod = build(model)
    params = {k: rng.normal(size=v.shape) for k, v in mod.init_params().items()}
    for batch in (1, 4):
        x, t = _data(model, rng, batch)
        E, y, ref = reference(model, params, x, t)
        got_E, grads = mod.loss_and_gradients(params, x, t)
        assert abs(got_E - E) <= 1e-10 * max(1.0, abs(E))
        _close(mod.forward(params, x), y)
        assert set(grads) == set(mod.TRAINABLE)
        for name, g in grads.items():
            _close(g, ref[name])
    single = mod.forward(params, x[0])  # one sample without the batch axis
    _close(single, mod.forward(params, x[:1])[0])


def test_random_graphs_put_activations_on_merges_and_pools():
    """The drawn graphs above include add, concat, max and average pooling layers under an activation."""
    kinds = {layer["kind"][:3] for seed in range(25) for layer in random_graph(np.random.default_rng(1000 + seed))["layers"]
             if layer.get("activation", "identity") != "identity" and layer.get("kind", "dense") != "dense"}
    assert {"add", "con", "max", "avg"} <= kinds, kinds


# relu(x + conv(relu(conv(x)))), the residual block reading the input itself; pools, an add of one value twice and a
# concat under activations; and a flat net whose output layer is an add under sigmoid
RESIDUAL_BLOCKS = [
    {"input_shape": [2, 7], "loss": "half_sse", "layers": [
        {"kind": "conv1d", "name": "c1", "out_channels": 2, "kernel_size": 3, "padding": "same", "activation": "relu"},
        {"kind": "conv1d", "name": "c2", "out_channels": 2, "kernel_size": 3, "padding": "same"},
        {"kind": "add", "name": "block", "inputs": ["x", "c2"], "activation": "relu"},
        {"kind": "add", "name": "twice", "inputs": ["block", "block"], "activation": "tanh"},
        {"kind": "maxpool1d", "name": "mp", "kernel_size": 3, "stride": 1, "padding": 1, "activation": "sigmoid"},
        {"kind": "avgpool1d", "name": "ap", "input": "block", "kernel_size": 3, "stride": 1, "padding": 1,
         "activation": "tanh"},
        {"kind": "concat", "name": "cat", "inputs": ["mp", "ap", "c1"], "activation": "relu"},
        {"kind": "flatten", "name": "f"},
        {"name": "out", "units": 2}]},
    {"input_shape": [4], "loss": "mse", "layers": [
        {"name": "d1", "units": 3, "activation": "tanh"}, {"name": "d2", "input": "x", "units": 3},
        {"kind": "add", "name": "out", "inputs": ["d1", "d2"], "activation": "sigmoid"}]},
]


@pytest.mark.parametrize("spec", RESIDUAL_BLOCKS, ids=["resblock", "add_out"])
def test_activations_on_adds_pools_and_concats_match_pytorch(spec, build):
    model = from_dict({"name": "act", **spec})
    mod = build(model)
    rng = np.random.default_rng(5)
    params = {k: rng.normal(size=v.shape) for k, v in mod.init_params().items()}
    kept = {k: v.copy() for k, v in params.items()}
    for batch in (1, 4):
        x, t = _data(model, rng, batch)
        x0 = x.copy()
        E, y, ref = reference(model, params, x, t)
        got, grads = mod.loss_and_gradients(params, x, t)
        assert abs(got - E) <= 1e-10 * max(1.0, abs(E))
        _close(mod.forward(params, x), y)
        for name, g in grads.items():
            _close(g, ref[name])
        assert np.array_equal(x, x0) and all(np.array_equal(params[k], kept[k]) for k in params)  # nothing written


@pytest.mark.parametrize("kind", [k for k, c in TENSOR_LAYERS.items() if c.has_activation])
def test_ops_that_take_an_activation_write_new_arrays(kind):
    """The activation runs in place on the op's output, so that output never shares memory with its input (a window of
    one entry, an add or concat of x with itself included)."""
    from symgrad.backends.numpy import kernels

    cls = TENSOR_LAYERS[kind]
    shape = (2, 5) if kind.endswith("1d") else (2, 3, 4)
    args = {"inputs": ["x", "x"]} if cls.merges else {"kernel_size": 1, **({"out_channels": 2} if "conv" in kind else {})}
    op = cls("l", **args)
    ins = (shape, shape) if cls.merges else (shape,)
    out_shape, params = op.build("layers[0]", ins, "xavier", set())
    node = Node("l", op, ("x",) * len(ins), ins, out_shape, params)
    x = np.random.default_rng(0).normal(size=(3,) + shape)
    ns = {"np": np, "a": x, **{f"p{j}": np.ones(p.shape) for j, p in enumerate(params)},
          **{k: getattr(kernels, k) for k in dir(kernels) if k.startswith("_") and not k.startswith("__")}}
    exec("\n".join(op.numpy_forward(node, ["a"] * len(ins), [f"p{j}" for j in range(len(params))], "z")), ns)
    assert ns["z"].shape == (3,) + out_shape and not np.shares_memory(ns["z"], x)


@pytest.mark.parametrize("act, params", NET_ACTIVATIONS, ids=[a for a, _ in NET_ACTIVATIONS])
def test_any_activation_on_adds_pools_and_concats_matches_pytorch(act, params, build):
    model = from_dict({"name": "acts", **net_activations_spec(act, params)})
    mod = build(model)
    rng = np.random.default_rng(7)
    params_ = {k: rng.normal(size=v.shape) for k, v in mod.init_params().items()}
    x, t = _data(model, rng, 3)
    E, y, ref = reference(model, params_, x, t)
    got, grads = mod.loss_and_gradients(params_, x, t)
    assert abs(got - E) <= 1e-10 * max(1.0, abs(E))
    for name, g in grads.items():
        _close(g, ref[name])


@pytest.mark.parametrize("layers, key, words", [
    ([{"kind": "flatten", "name": "f", "activation": "relu"}], "layers[0].activation", "flatten takes no activation"),
    ([{"kind": "maxpool1d", "name": "p", "kernel_size": 2, "activation": "softmax"}, {"kind": "flatten", "name": "f"}],
     "layers[0].activation", "only allowed on the output layer"),
    ([{"kind": "add", "name": "s", "inputs": ["x", "x"], "activation": "nope"}], "layers[0].activation", "nope"),
])
def test_activation_keys_are_checked(layers, key, words):
    with pytest.raises(SpecError) as exc:
        from_dict({"name": "bad", "input_shape": [2, 4], "loss": "mse", "layers": layers})
    assert exc.value.key == key, str(exc.value)
    assert words in str(exc.value)


def test_residual_fork_sums_branch_deltas(build):
    """x -> a (dense) -> b (dense) and add(a, b): a's delta is its own branch's plus the one through b."""
    spec = {"name": "res", "inputs": 3, "loss": "half_sse", "layers": [
        {"name": "a", "units": 3, "activation": "tanh"},
        {"name": "b", "units": 3, "activation": "tanh"},
        {"kind": "add", "name": "s", "inputs": ["a", "b"]},
        {"name": "out", "units": 2}]}
    model = from_dict(spec)
    mod = build(model)
    rng = np.random.default_rng(0)
    params = {k: rng.normal(size=v.shape) for k, v in mod.init_params().items()}
    x, t = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
    E, y, ref = reference(model, params, x, t)
    _, grads = mod.loss_and_gradients(params, x, t)
    for name, g in grads.items():
        _close(g, ref[name])


def test_max_pool_ties_route_to_the_first_maximum(build):
    """A constant input: every window ties; PyTorch routes the delta to the first entry of each window."""
    spec = {"name": "ties", "input_shape": [1, 4, 4], "loss": "half_sse", "layers": [
        {"kind": "conv2d", "name": "c", "out_channels": 1, "kernel_size": 1, "weight": [[[[1.0]]]], "bias_value": [0.0]},
        {"kind": "maxpool2d", "name": "p", "kernel_size": 2, "stride": 1},
        {"kind": "flatten", "name": "f"},
        {"name": "out", "units": 1}]}
    model = from_dict(spec)
    mod = build(model)
    rng = np.random.default_rng(1)
    params = {k: rng.normal(size=v.shape) for k, v in mod.init_params().items()}
    x, t = np.ones((2, 1, 4, 4)), rng.normal(size=(2, 1))
    _, _, ref = reference(model, params, x, t)
    _, grads = mod.loss_and_gradients(params, x, t)
    for name, g in grads.items():
        _close(g, ref[name])


@pytest.mark.parametrize("layers, key, words", [
    ([{"kind": "conv2d", "name": "c", "out_channels": 2, "kernel_size": 7}], "layers[0].kernel_size", "empty output"),
    ([{"kind": "conv2d", "name": "c", "out_channels": 2, "kernel_size": 2, "input": "later"},
      {"kind": "flatten", "name": "later"}], "layers[0].input", "cycle"),
    ([{"kind": "conv2d", "name": "c", "out_channels": 2, "kernel_size": 2, "input": "nope"}], "layers[0].input",
     "no such layer"),
    ([{"kind": "conv1d", "name": "c", "out_channels": 2, "kernel_size": 2}], "layers[0].input", "conv1d needs"),
    ([{"kind": "conv2d", "name": "c", "out_channels": 2, "kernel_size": 2, "stride": 2, "padding": "same"}],
     "layers[0].padding", "stride 1"),
    ([{"kind": "maxpool2d", "name": "p", "kernel_size": 2, "padding": 2}], "layers[0].padding", "half"),
    ([{"kind": "conv2d", "name": "c", "out_channels": 2, "kernel_size": 2},
      {"kind": "add", "name": "s", "inputs": ["x", "c"]}], "layers[1].inputs", "one shape"),
    ([{"kind": "conv2d", "name": "c", "out_channels": 2, "kernel_size": 2, "strides": 1}], "layers[0].strides",
     "did you mean 'stride'"),
    ([{"kind": "conv2d", "name": "c", "out_channels": 2, "kernel_size": 2},
      {"kind": "flatten", "name": "f", "input": "x"}], "layers[0].name", "not used"),
])
def test_shape_errors_name_the_layer_and_shapes(layers, key, words):
    spec = {"name": "bad", "input_shape": [1, 5, 5], "loss": "mse", "layers": layers}
    with pytest.raises(SpecError) as exc:
        from_dict(spec)
    assert exc.value.key == key, str(exc.value)
    assert words in str(exc.value)


@pytest.mark.parametrize("layer", [
    {"kind": "conv2d", "name": "c", "out_channels": 3, "kernel_size": 1},  # a 1x1 convolution
    {"kind": "conv2d", "name": "c", "out_channels": 2, "kernel_size": 4, "padding": "same"},  # even kernel, "same"
    {"kind": "conv2d", "name": "c", "out_channels": 2, "kernel_size": [2, 3], "padding": "same", "dilation": [3, 2]},
    {"kind": "conv1d", "name": "c", "out_channels": 2, "kernel_size": 4, "padding": "same"},
    {"kind": "maxpool2d", "name": "c", "kernel_size": 3, "stride": 1, "padding": 1},  # overlapping windows
    {"kind": "avgpool2d", "name": "c", "kernel_size": [3, 2], "stride": [2, 1], "padding": [1, 1]},
])
def test_edge_cases_match_pytorch(layer, build):
    d = 1 if layer["kind"].endswith("1d") else 2
    spec = {"name": "edge", "input_shape": [2, 7] if d == 1 else [2, 6, 5], "loss": "mse",
            "layers": [layer, {"kind": "flatten", "name": "f"}, {"name": "out", "units": 2, "activation": "tanh"}]}
    model = from_dict(spec)
    if "padding" in layer and layer["padding"] == "same":
        assert model.nodes[0].shape[1:] == model.input_shape[1:]
    mod = build(model)
    rng = np.random.default_rng(3)
    params = {k: rng.normal(size=v.shape) for k, v in mod.init_params().items()}
    for batch in (1, 3):
        x, t = _data(model, rng, batch)
        E, y, ref = reference(model, params, x, t)
        got, grads = mod.loss_and_gradients(params, x, t)
        assert abs(got - E) <= 1e-10 * max(1.0, abs(E))
        for name, g in grads.items():
            _close(g, ref[name])


@pytest.mark.parametrize("change, key", [
    ({"out_channels": 10**9}, "layers[0].out_channels"),
    ({"kernel_size": 10**9}, "layers[0].kernel_size"),
    ({"kernel_size": [2, True]}, "layers[0].kernel_size"),
    ({"padding": "valid"}, "layers[0].padding"),
    ({"stride": 0}, "layers[0].stride"),
    ({"activation": "__import__('os')"}, "layers[0].activation"),
])
def test_hostile_conv_arguments_are_refused_cleanly(change, key):
    layer = {"kind": "conv2d", "name": "c", "out_channels": 2, "kernel_size": 2, **change}
    spec = {"name": "bad", "input_shape": [1, 5, 5], "loss": "mse", "layers": [layer, {"kind": "flatten", "name": "f"}]}
    with pytest.raises(SpecError) as exc:
        from_dict(spec)
    assert exc.value.key == key, str(exc.value)


def test_huge_input_shape_is_refused_before_any_work():
    spec = {"name": "big", "input_shape": [10**4, 10**4, 10**4], "loss": "mse", "layers": [{"kind": "flatten", "name": "f"}]}
    with pytest.raises(SpecError, match="limit"):
        from_dict(spec)
