"""ONNX RNN, LSTM and GRU, and the shape and layout nodes exporters write around them and for ``x.view(x.size(0), -1)``.

ONNX's recurrent operators read a sequence (steps, batch, features) (``layout=0``; ``layout=1`` is batch
first) and write ``Y`` (steps, 1, batch, H) and ``Y_h`` (1, batch, H); PyTorch's exporter puts Transpose,
Squeeze and Gather nodes around them for ``batch_first=True`` and ``out[:, -1]``, and computes the zero
initial states from ``Shape(x)``. Those nodes are followed through ``Graph.seqs`` (tensor -> (arrangement,
read)): ``read(node, last)`` gives the layer computing the tensor and records which of a recurrent layer's
outputs is used, every step or the last (its ``return_sequences``); one layer read both ways is refused.
Shape computations are kept as lists of ints, ``"batch"`` and None (unknown) in ``Graph.shapes``, so a
``Reshape`` to (batch, -1) is recognised as a flatten.
"""

import numpy as np

from symgrad.errors import printable
from symgrad.onnx_ops import _concat, _flatten, attributes

# op -> (PyTorch gate block k: the ONNX block holding it, the ONNX activations PyTorch's cell computes)
GATES = {"RNN": ([0], (["Tanh"], ["Relu"])), "LSTM": ([0, 2, 3, 1], (["Sigmoid", "Tanh", "Tanh"],)),
         "GRU": ([1, 0, 2], (["Sigmoid", "Tanh"],))}
BATCH = "batch"


def _ints(g, node, tensor, what):
    """A constant integer tensor (an input such as axes or indices) as a list of ints."""
    if tensor in g.shapes:
        if not isinstance(g.shapes[tensor], list):
            raise g.error(node, f"its {what} {printable(tensor)!r} is one entry of a shape, not a list of them")
        return g.shapes[tensor]
    return [int(v) for v in g.const(node, tensor, what).reshape(-1)]


def _axes(g, node, rank):
    """The node's axes (attribute, or its second input from opset 13) counted from 0 over ``rank`` dimensions."""
    at = attributes(node)
    axes = at["axes"] if "axes" in at else _ints(g, node, node.input[1], "axes") if len(node.input) > 1 else None
    if axes is None:
        raise g.error(node, "it has no axes: only the axes of one recurrent output are supported")
    return sorted(a + rank if a < 0 else a for a in axes)


# -- shapes computed at run time


def _shape(g, node):
    """Shape(t): [batch, ?, ...] over the per-sample rank of t (only the batch size is ever read from it)."""
    at = attributes(node)
    if at.get("start", 0) != 0 or "end" in at:
        raise g.error(node, "start and end are not supported")
    tensor = node.input[0]
    if tensor not in g.rank:
        raise g.error(node, f"the shape of {printable(tensor)!r} is not known to symgrad (only of batch-first values)")
    g.shapes[node.output[0]] = [BATCH] + [None] * g.rank[tensor]


def _gather(g, node):
    """Gather from a shape (its entries), from stacked states (h_n[k]), or step -1 of a recurrent sequence (out[:, -1])."""
    data, axis = node.input[0], attributes(node).get("axis", 0)
    index = g.const(node, node.input[1], "indices")
    if data in g.shapes:
        dims, picks = g.shapes[data], [int(i) for i in index.reshape(-1)]
        if not isinstance(dims, list) or axis != 0 or not all(-len(dims) <= i < len(dims) for i in picks):
            raise g.error(node, f"indices {picks if index.ndim else picks[0]} along axis {axis} do not pick entries of the shape it reads")
        g.shapes[node.output[0]] = [dims[i] for i in picks] if index.ndim else dims[picks[0]]
        return
    form, read = g.seqs.get(data, (None, None))
    step = int(index) if index.ndim == 0 else None
    if form == "HS" and axis == 0 and step is not None and -len(read) <= step < len(read):
        _last(g, node, read[step])
    elif form in ("TB", "BT") and axis == (0 if form == "TB" else 1) and step == -1:
        _last(g, node, read)
    else:
        raise g.error(node, "a Gather is supported only of a shape, of a recurrent output's last step (axis 1 of a "
                            "batch-first sequence, axis 0 of a (steps, batch, features) one, index -1) or of one layer's "
                            "state in stacked states")


def _last(g, node, read):
    """The node's output is the last step of the recurrent layer ``read`` gives."""
    g.views[node.output[0]] = lambda reader: read(reader, True)
    g.rank[node.output[0]] = 1


def _unsqueeze(g, node):
    """Unsqueeze of a number from a shape: a one-entry shape."""
    if node.input[0] not in g.shapes or isinstance(g.shapes[node.input[0]], list) or _axes(g, node, 1) != [0]:
        raise g.error(node, "an Unsqueeze is supported only of one entry of a shape, on axis 0 (the exporter's x.size(0))")
    g.shapes[node.output[0]] = [g.shapes[node.input[0]]]


def _concat_any(g, node):
    """Concat of shapes (axis 0), of stacked recurrent states (h_n), else a concat layer."""
    inputs = list(node.input)
    if all(n in g.shapes or n in g.consts for n in inputs) and any(n in g.shapes for n in inputs):
        g.shapes[node.output[0]] = [d for n in inputs for d in _ints(g, node, n, "input")]
    elif any(g.seqs.get(n, ("",))[0] == "H0" for n in inputs):
        if not all(g.seqs.get(n, ("",))[0] == "H0" for n in inputs) or attributes(node)["axis"] != 0:
            raise g.error(node, "a Concat of recurrent states is supported only of Y_h outputs along axis 0 (h_n)")
        g.seqs[node.output[0]] = ("HS", [g.seqs[n][1] for n in inputs])
    else:
        _concat(g, node)


def _constant_of_shape(g, node):
    """ConstantOfShape of zeros (the exporter's initial states)."""
    value = attributes(node).get("value")
    if value is not None:
        from onnx import numpy_helper

        value = numpy_helper.to_array(value)
    if value is not None and np.any(value != 0):
        raise g.error(node, f"value={value.tolist()} is not supported: only zeros (a recurrent layer's initial state)")
    g.zeros.add(node.output[0])


def _slice(g, node):
    """Slice of zeros (one layer's initial state out of the stacked ones): zeros."""
    if node.input[0] not in g.zeros:
        raise g.error(node, "a Slice is supported only of zeros (the exporter's initial states of stacked layers)")
    g.zeros.add(node.output[0])


def _reshape(g, node):
    """Reshape to (batch, -1) (``x.view(x.size(0), -1)``): a flatten of each sample."""
    target = _ints(g, node, node.input[1], "shape")
    allowzero = attributes(node).get("allowzero", 0)
    if len(target) != 2 or not (target[0] == BATCH or (target[0] == 0 and not allowzero)) or target[1] != -1:
        shown = ["batch" if d == BATCH else "?" if d is None else d for d in target]
        raise g.error(node, f"a Reshape to {shown} is not supported: only to (batch, -1), a flatten of each sample "
                            "(x.view(x.size(0), -1))")
    _flatten(g, node)


def _transpose(g, node):
    """Transpose of a (batch, A, B) value V, or of V held as (A, batch, B): to V, V^T (a transpose layer, made when
    read), or either in the (steps, batch, features) order ONNX's recurrent operators read."""
    tensor, perm = node.input[0], list(attributes(node).get("perm", []))
    form, read = g.seqs.get(tensor, (None, None))
    if form not in (None, "BT", "TB") or (form is None and g.rank.get(tensor) != 2) or sorted(perm) != [0, 1, 2]:
        raise g.error(node, f"perm={perm} of this value is not supported: only of a (batch, A, B) value or of a "
                            "recurrent sequence")
    source = read or _plain(g, tensor)
    axes = [([1, 0, 2] if form == "TB" else [0, 1, 2])[p] for p in perm]  # the output's axes as axes of V
    out, made = node.output[0], {}

    def swapped(reader):  # one transpose layer, made when a node first reads it
        if not made:
            made["name"] = g.add_layer(node, "transpose", [source(reader, False)], {}, None)["name"]
        return made["name"]
    if axes == [0, 1, 2]:
        g.seqs[out] = ("BT", source)
        g.views[out], g.rank[out] = (lambda reader: source(reader, False)), 2
    elif axes == [1, 0, 2]:
        g.seqs[out] = ("TB", source)
    elif axes == [0, 2, 1]:
        g.views[out], g.rank[out] = swapped, 2
    elif axes == [2, 0, 1]:
        g.seqs[out] = ("TB", lambda reader, last: _every(g, reader, last) or swapped(reader))
    else:
        raise g.error(node, f"perm={perm} is not supported: only swapping the two axes after the batch, or moving "
                            "the steps first for a recurrent operator")


def _every(g, node, last):
    """Refuse taking the last step of a sequence no recurrent layer computed."""
    if last:
        raise g.error(node, "it takes the last step of a sequence that is not a recurrent layer's output")


def _plain(g, tensor):
    """read(node, last) of a batch-first value in (steps, batch, features) order."""
    return lambda node, last: _every(g, node, last) or g.data(node, tensor)


# -- the recurrent operators


def _recurrent(g, node):
    """RNN, LSTM, GRU (forward, one direction): an rnn, lstm or gru layer with PyTorch's weight layout and gate order."""
    op, at = node.op_type, attributes(node)
    order, activations = GATES[op]
    layout = at.get("layout", 0)
    if at.get("direction", "forward") != "forward":
        raise g.error(node, f"direction={at['direction']} is not supported: only forward (PyTorch's bidirectional "
                            "layers are not converted)")
    if at.get("input_forget", 0):
        raise g.error(node, "input_forget=1 is not supported")
    if layout not in (0, 1):
        raise g.error(node, f"layout={layout} is not supported")
    if op == "GRU" and at.get("linear_before_reset", 0) != 1:
        raise g.error(node, "linear_before_reset=0 is not supported: symgrad's GRU is PyTorch's, which applies the "
                            "reset gate after the recurrent product (linear_before_reset=1)")
    for attr in ("clip", "activation_alpha", "activation_beta"):
        if attr in at:
            raise g.error(node, f"{attr} is not supported")
    acts = at.get("activations", activations[0])
    if [a.lower() for a in acts] not in [[a.lower() for a in choice] for choice in activations]:
        raise g.error(node, f"activations={acts} is not supported: only {' or '.join(map(str, activations))}")
    names = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"]
    for k, tensor in enumerate(node.input[4:], 4):
        if not tensor:
            continue
        if names[k] == "sequence_lens" or names[k] == "P":
            raise g.error(node, f"input {names[k]} is not supported")
        if tensor not in g.zeros and not (tensor in g.consts and not np.any(g.consts[tensor])):
            raise g.error(node, f"input {names[k]} {printable(tensor)!r} is not zeros: symgrad's recurrent layers "
                                "start from a zero state")
    source = _sequence(g, node, layout)
    w, r = g.const(node, node.input[1], "weight W"), g.const(node, node.input[2], "weight R")
    G, H = len(order), at.get("hidden_size", r.shape[-1])
    if w.ndim != 3 or w.shape[0] != 1 or w.shape[1] != G * H or r.shape != (1, G * H, H):
        raise g.error(node, f"its weights W {w.shape} and R {r.shape} do not fit hidden_size={H} with {G} gate blocks")

    def blocks(a):  # ONNX's gate blocks in PyTorch's order
        return np.concatenate([a[k * H:(k + 1) * H] for k in order])
    table = {"hidden_size": H}
    if op == "RNN":
        table["activation"] = acts[0].lower()
    has_b = len(node.input) > 3 and node.input[3]
    if not has_b:
        table["bias"] = "none"
    layer = g.add_layer(node, op.lower(), [source], table, None)
    g.store(node, layer, "weight_ih", blocks(w[0]))
    g.store(node, layer, "weight_hh", blocks(r[0]))
    if has_b:
        b = g.const(node, node.input[3], "bias B")
        if b.shape != (1, 2 * G * H):
            raise g.error(node, f"its bias B has shape {b.shape}; expected (1, {2 * G * H})")
        g.store(node, layer, "bias_ih", blocks(b[0, :G * H]))
        g.store(node, layer, "bias_hh", blocks(b[0, G * H:]))
    read = _reader(g, layer)
    outs = list(node.output) + [""] * 3
    g.seqs[outs[0]] = ("Y1" if layout else "Y0", read)
    g.seqs[outs[1]] = ("H1" if layout else "H0", read)
    if outs[2] and (g.readers.get(outs[2]) or outs[2] in g.outputs):
        raise g.error(node, "its output Y_c (the cell state) is read: only Y and Y_h are supported")


def _sequence(g, node, layout):
    """The layer computing the recurrent node's input X, (steps, batch, features) for layout 0, batch first for 1."""
    x = node.input[0]
    form, read = g.seqs.get(x, (None, None))
    if layout == 0 and form == "TB":
        return read(node, False)
    if layout == 1 and form is None and g.rank.get(x) == 2:
        return g.data(node, x)
    raise g.error(node, f"its input X {printable(x)!r} is not a sequence in layout={layout}'s order: "
                        + ("(steps, batch, features), a Transpose perm [1, 0, 2] of a batch-first value or the "
                           "Squeeze of a recurrent Y" if layout == 0 else "(batch, steps, features)"))


def _reader(g, layer):
    """read(node, last): the layer's name, recording that ``node`` reads every step or only the last."""
    def read(node, last):
        want = not last
        have = layer.get("return_sequences")
        if have is not None and have != want:
            raise g.error(node, f"it reads {'the last step' if last else 'every step'} of layer {layer['name']!r}, "
                                f"which another node reads {'every step' if have else 'the last step'} of: a "
                                "symgrad recurrent layer hands on one of them")
        layer["return_sequences"] = want
        return layer["name"]
    return read


def _squeeze(g, node):
    """Squeeze of a recurrent output's direction axis: Y to the sequence, Y_h to the last step."""
    form, read = g.seqs.get(node.input[0], (None, None))
    want = {"Y0": [1], "Y1": [2], "H0": [0], "H1": [1]}.get(form)
    if want is None or _axes(g, node, 4 if form[0] == "Y" else 3) != want:
        raise g.error(node, "a Squeeze is supported only of the direction axis of a recurrent operator's Y or Y_h")
    out = node.output[0]
    if form == "Y0":
        g.seqs[out] = ("TB", read)
    elif form == "Y1":
        g.seqs[out] = ("BT", read)
        g.views[out], g.rank[out] = (lambda reader: read(reader, False)), 2
    else:
        _last(g, node, read)


OPS = {
    "RNN": _recurrent, "LSTM": _recurrent, "GRU": _recurrent, "Squeeze": _squeeze, "Transpose": _transpose,
    "Gather": _gather, "Shape": _shape, "Unsqueeze": _unsqueeze, "Concat": _concat_any,
    "ConstantOfShape": _constant_of_shape, "Slice": _slice, "Reshape": _reshape,
}
