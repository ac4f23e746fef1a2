"""Graph networks: layers on shaped values (convolutions, pooling, flatten, dense), joined by ``input``/``inputs``.

A layer reads the previous layer by default, or ``input = "name"`` (an earlier layer, or ``"x"`` for the
network input); ``add`` and ``concat`` read ``inputs = [...]``. The last layer is the output. Layers may
only read earlier layers, so a graph is acyclic by construction; a reference to a later layer (or to
itself) is refused as a cycle, and a layer the output does not depend on is refused as unused.
"""

import math
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from symgrad.checks import check_name, finite_array
from symgrad.errors import ExpressionError, SpecError
from symgrad.limits import check, check_expression
from symgrad.ops.activations import get_activation
from symgrad.ops.dense import Dense, DenseOp
from symgrad.ops.losses import y as LOSS_Y
from symgrad.ops.tensor import Node, TensorOp, show
from symgrad.spec.config import Sample, TrainConfig
from symgrad.spec.model import _ModelBase, loss_or_error


@dataclass
class GraphNetwork(_ModelBase):
    """Shaped layers joined into an acyclic graph, and a loss on the last layer's output."""

    name: str
    input_shape: object  # a list of positive ints, e.g. [1, 28, 28]
    layers: list  # TensorOp or Dense objects (each may name its ``input``/``inputs``)
    loss: object = None
    outputs: list | None = None
    sample: Sample | None = None
    init: str = "xavier"
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)
    expects: list = field(default_factory=list)
    description: str = ""
    source: str = "<python>"

    kind = "graph"

    def __post_init__(self):
        shape = self.input_shape
        if (not isinstance(shape, (list, tuple)) or not shape or len(shape) > 3
                or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape)):
            raise SpecError("input_shape must be a list of 1 to 3 positive integers, e.g. [1, 28, 28]", "input_shape")
        self.input_shape = tuple(shape)
        n_in = math.prod(self.input_shape)
        check("SYMGRAD_MAX_PARAMS", n_in, "the number of inputs", "input_shape")
        self.inputs = [f"x{j + 1}" for j in range(n_in)] if len(shape) == 1 else \
            ["x_" + "_".join(str(i) for i in idx) for idx in np.ndindex(*self.input_shape)]
        self._check_layers_and_init()
        if isinstance(self.loss, str):
            self.loss = loss_or_error(kind=self.loss)
        self._build_nodes()
        last = self.nodes[-1]
        self.output_shape = last.shape
        n_out = last.size
        if self.outputs is None:
            built = getattr(last.op, "built", None)
            self.outputs = list(built.neurons) if built is not None and len(last.shape) == 1 else \
                [f"y{j + 1}" for j in range(n_out)]
        elif len(self.outputs) != n_out:
            raise SpecError(f"{len(self.outputs)} output names for {n_out} outputs ({show(last.shape)})", "outputs")
        else:
            self.outputs = [check_name(n, f"outputs[{k}]", "output name") for k, n in enumerate(self.outputs)]
        self._check_output()
        self._finish_common()

    def _build_nodes(self):
        self.nodes, self.params, by_name, n_params = [], [], {}, 0
        taken = set()
        for k, spec in enumerate(self.layers):
            key = f"layers[{k}]"
            op = DenseOp(spec) if isinstance(spec, Dense) else spec
            if not isinstance(op, (TensorOp, DenseOp)):
                raise SpecError("each layer must be a Dense or a shaped layer (symgrad.ops.tensor.TensorOp)", key)
            check_name(op.name, f"{key}.name", "layer name")
            if op.name in by_name or op.name == "x":
                raise SpecError(f"layer name {op.name!r} is used twice" if op.name != "x" else
                                "layer name 'x' is the network input's", f"{key}.name")
            sources = self._sources(op, k, key, by_name)
            in_shapes = tuple(self.input_shape if s == "x" else by_name[s].shape for s in sources)
            shape, params = op.build(key, in_shapes, self.init, taken)
            check("SYMGRAD_MAX_PARAMS", math.prod(shape), f"the output size of layer {op.name!r}", key)
            n_params += sum(p.size for p in params)
            check("SYMGRAD_MAX_PARAMS", n_params, f"the parameter count up to layer {op.name!r}", key)
            node = Node(op.name, op, sources, in_shapes, tuple(shape), params, self._activation(op, key, params))
            by_name[op.name] = node
            self.nodes.append(node)
            self.params += params
        self._check_used()

    def _sources(self, op, k, key, by_name):
        """The producer names of layer k: its ``input``/``inputs``, or the previous layer."""
        given = op.dense.input if isinstance(op, DenseOp) else op.args.get("inputs") if op.merges else op.args.get("input")
        what = "inputs" if op.merges else "input"
        if op.merges:
            if not isinstance(given, (list, tuple)) or len(given) < 2:
                raise SpecError(f"layer {op.name!r}: {op.kind} needs inputs = [two or more layer names]", f"{key}.inputs")
            sources = tuple(given)
        elif given is None:
            sources = (self.nodes[-1].name if self.nodes else "x",)
        else:
            sources = (given,)
        for s in sources:
            if not isinstance(s, str):
                raise SpecError(f"layer {op.name!r}: {what} names layers (strings), got {s!r}", f"{key}.{what}")
            if s != "x" and s not in by_name:
                later = any(getattr(L, "name", None) == s for L in self.layers[k:])
                why = "a layer may only read earlier layers (this would make a cycle)" if later else \
                    "no such layer (give an earlier layer's name or \"x\")"
                raise SpecError(f"layer {op.name!r} reads {s!r}: {why}", f"{key}.{what}")
        return sources

    def _activation(self, op, key, params):
        """The layer's Activation; None where it takes none, or is parameter-free (pooling, add, concat) and has the
        identity: its output is then the op's own, with no separate net input."""
        if isinstance(op, DenseOp):
            return op.activation
        if not op.has_activation or not params and op.args.get("activation", "identity") == "identity" \
                and op.args.get("activation_params") is None:
            return None
        try:
            return get_activation(op.args.get("activation", "identity"), op.args.get("activation_params"))
        except ExpressionError as exc:
            raise SpecError(str(exc), f"{key}.activation") from None

    def _check_used(self):
        used = {self.nodes[-1].name}
        for node in reversed(self.nodes):
            if node.name in used:
                used.update(node.inputs)
        for k, node in enumerate(self.nodes):
            if node.name not in used:
                raise SpecError(f"layer {node.name!r} is not used by the output (the last layer)", f"layers[{k}].name")
        for k, node in enumerate(self.nodes[:-1]):
            if node.activation is not None and node.activation.is_layer:
                raise SpecError(f"{node.activation.kind} is only allowed on the output layer", f"layers[{k}].activation")

    def _check_output(self):
        last = self.nodes[-1]
        act = last.activation
        if self.loss is None:
            return
        if act is not None and act.is_layer and len(last.shape) != 1:
            raise SpecError(f"{act.kind} needs a flat output, got {show(last.shape)}", f"layers[{len(self.nodes) - 1}]")
        if self.loss.needs_softmax and getattr(act, "kind", None) != "softmax":
            raise SpecError(f"loss {self.loss.name} needs a softmax output layer", "loss.kind")
        if act is not None and not act.is_layer:
            check_expression(sp.diff(self.loss.expr, LOSS_Y) * act.derivative_in_out(),
                             "loss.expression" if self.loss.name == "custom" else "loss")

    def _check_sample(self):
        """The sample's x and t as given, flat or shaped: checked flat, kept shaped."""
        s = self.sample
        if isinstance(s, Sample):
            for what, shape in (("x", self.input_shape), ("t", self.output_shape)):
                v = getattr(s, what)
                if v is not None:
                    v = finite_array(v, f"sample.{what}")
                    if v.size != math.prod(shape):
                        raise SpecError(f"expected {show(shape)} numbers, got shape {v.shape}", f"sample.{what}")
                    setattr(s, what, v.reshape(-1))
        super()._check_sample()
        if isinstance(s, Sample):
            s.x = s.x.reshape(self.input_shape)
            s.t = None if s.t is None else s.t.reshape(self.output_shape)

    def node(self, name):
        return next(n for n in self.nodes if n.name == name)

    def describe(self):
        parts = []
        for k, n in enumerate(self.nodes):
            act = f" {n.activation.name}" if n.activation is not None and n.activation.name != "identity" else ""
            src = "" if n.inputs == ((self.nodes[k - 1].name,) if k else ("x",)) else f" <- {'+'.join(n.inputs)}"
            parts.append(f"{n.name}: {n.op.describe()}{act} -> {show(n.shape)}{src}")
        return (f"graph network {show(self.input_shape)} -> {show(self.output_shape)} ({'; '.join(parts)}), "
                f"loss {self.loss.name} ({self.loss.reduction} over the batch)")
