"""The dense layer: ``net = W a + b``, ``out = f(net)``, its parameters and its neuron-level steps."""

from dataclasses import dataclass, replace

import numpy as np
import sympy as sp

from symgrad.checks import BIAS_MODES, INIT_SCHEMES, choice_message, finite_array, flatten_names, names, unit_names
from symgrad.errors import ExpressionError, SpecError
from symgrad.ops.activations import get_activation
from symgrad.ops.base import Step
from symgrad.symbols import derived


@dataclass(frozen=True)
class Param:
    """One parameter tensor: its PyTorch-style name, shape, value, scalar names and whether it trains."""

    name: str
    shape: tuple
    value: np.ndarray | None  # None: drawn by the init scheme
    scalar_names: tuple  # flat, row-major, one per entry
    trainable: bool
    init: str = "zeros"  # scheme used when value is None
    fan_in: int = 1
    fan_out: int = 1

    @property
    def size(self):
        return int(np.prod(self.shape)) if self.shape else 1


@dataclass
class Dense:
    """A dense layer: ``net = W a + b``, ``out = f(net)``; W has rows = units, columns = inputs."""

    name: str
    units: int
    activation: object = "identity"
    activation_params: dict | None = None
    weight: object = None
    bias: str = "unit"
    bias_value: object = None
    neurons: list | None = None
    weight_names: list | None = None
    bias_names: list | None = None
    freeze: tuple = ()
    init: str | None = None
    input: str | None = None  # in a graph network: the layer it reads (default: the previous one)

    def build(self, key, fan_in, default_init, taken=()):
        """(a checked copy of this layer with its activation and neuron names, its Params); self is not changed."""
        try:
            act = get_activation(self.activation, self.activation_params)
        except ExpressionError as exc:
            where = "activation_params" if str(exc).startswith("activation parameter") else "activation"
            raise SpecError(str(exc), f"{key}.{where}") from None
        if isinstance(self.units, bool) or not isinstance(self.units, int) or self.units < 1:
            raise SpecError("units must be a positive integer", f"{key}.units")
        if self.bias not in BIAS_MODES:
            raise SpecError(choice_message("bias", self.bias, BIAS_MODES), f"{key}.bias")
        n = self.units
        neurons = names(self.neurons, n, f"{key}.neurons", unit_names(self.name, n, taken))
        scheme = self.init or default_init
        if scheme not in INIT_SCHEMES:
            raise SpecError(choice_message("init scheme", scheme, INIT_SCHEMES), f"{key}.init")
        frozen = self._frozen(key)
        shape = (n, fan_in)
        weight = None if self.weight is None else finite_array(self.weight, f"{key}.weight", shape)
        wnames = names(None if self.weight_names is None else flatten_names(self.weight_names, shape, f"{key}.weight_names"),
                       n * fan_in, f"{key}.weight_names", [f"{self.name}_w{j + 1}_{i + 1}" for j in range(n) for i in range(fan_in)])
        params = [Param(f"{self.name}.weight", shape, weight, tuple(wnames), "weight" not in frozen, scheme, fan_in, n)]
        if self.bias != "none":
            bshape = (n,) if self.bias == "unit" else ()
            nb = n if self.bias == "unit" else 1
            bnames = names(self.bias_names, nb, f"{key}.bias_names",
                           [f"{self.name}_b{j + 1}" for j in range(nb)] if nb > 1 else [f"{self.name}_b"])
            params.append(Param(f"{self.name}.bias", bshape, self._bias_value(key, bshape), tuple(bnames),
                                "bias" not in frozen, "zeros", fan_in, n))
        elif self.bias_value is not None or "bias" in frozen:
            raise SpecError("the layer has bias = \"none\"", f"{key}.bias_value" if self.bias_value is not None else f"{key}.freeze")
        return replace(self, activation=act, neurons=neurons), params

    def _frozen(self, key):
        freeze = [self.freeze] if isinstance(self.freeze, str) else list(self.freeze)
        if not all(isinstance(f, str) for f in freeze):
            raise SpecError("freeze lists 'weight' and/or 'bias' (strings)", f"{key}.freeze")
        if set(freeze) - {"weight", "bias"}:
            raise SpecError("freeze lists 'weight' and/or 'bias'", f"{key}.freeze")
        return set(freeze)

    def _bias_value(self, key, bshape):
        if self.bias_value is None:
            return None
        bias = finite_array(self.bias_value, f"{key}.bias_value")
        if bias.shape == () and bshape:
            bias = np.full(bshape, float(bias))
        if bias.shape != bshape:
            what = "one number" if not bshape else f"{bshape[0]} numbers"
            raise SpecError(f"expected {what}, got shape {bias.shape}", f"{key}.bias_value")
        return bias

    def net_steps(self, k, a, weight, bias, params):
        """Steps net_j = sum_i w_ji a_i + b_j of this layer (index k); records its scalar parameters; the nets."""
        W = [[sp.Symbol(weight.scalar_names[j * len(a) + i], real=True) for i in range(len(a))] for j in range(self.units)]
        for idx, s in enumerate(weight.scalar_names):
            params[sp.Symbol(s, real=True)] = (weight.name, idx)
        if bias is not None:
            bsyms = [sp.Symbol(s, real=True) for s in bias.scalar_names]
            for idx, s in enumerate(bsyms):
                params[s] = (bias.name, idx)
        steps = []
        for j, neuron in enumerate(self.neurons):
            expr = sp.Add(*[W[j][i] * a[i] for i in range(len(a))], evaluate=False)
            if bias is not None:
                expr = sp.Add(expr, bsyms[j if len(bsyms) > 1 else 0], evaluate=False)
            steps.append(Step(derived(f"net_{neuron}", "net", neuron), expr, "net", k, j, meaning="net input of a neuron"))
        return steps

    @staticmethod
    def net_rule(v, params):
        """The report's rule for d net / d v: net is linear in its weights, bias and inputs."""
        if v in params:
            if params[v][0].endswith(".bias"):
                return "the net input is linear in the bias: its derivative is 1"
            return "the net input is linear in the weight: the derivative of w·a with respect to w is a"
        return "the net input is linear in the previous output: the derivative of w·a with respect to a is w"


class DenseOp:
    """A dense layer in a graph network: ``net = a W^T + b`` over the last axis (as ``nn.Linear``)."""

    kind = "dense"
    merges = False
    has_activation = True
    fresh_grads = True
    view = passes_delta = False
    kernels = ()
    rule = ("dE/dW is the delta times the layer's input summed over the batch (and any leading axes); the input "
            "delta is the delta times W")

    def __init__(self, dense):
        self.dense = dense
        self.name = dense.name

    def build(self, key, in_shapes, init, taken):
        """(output shape, params): the last axis becomes ``units``; the built Dense gives the activation."""
        from symgrad.ops.tensor import show

        shape = in_shapes[0]
        if not shape:
            raise SpecError(f"layer {self.name!r}: dense needs an input with at least one axis, got {show(shape)}", key)
        from symgrad.limits import check

        if isinstance(self.dense.units, int):
            check("SYMGRAD_MAX_PARAMS", self.dense.units * shape[-1], f"the weight count of layer {self.name!r}",
                  f"{key}.units")
        self.built, params = self.dense.build(key, shape[-1], init, taken)
        self.activation = self.built.activation
        self.shared = self.built.bias == "shared"
        return shape[:-1] + (self.built.units,), params

    def describe(self):
        n = self.built.units
        return f"dense({n} unit{'' if n == 1 else 's'}, bias {self.built.bias})"

    def sympy_forward(self, xs, params):
        x = xs[0]
        w = params[0]
        z = x.dot(w.T)
        if len(params) > 1:
            z = z + (params[1] if params[1].shape else params[1][()])
        return z

    def numpy_forward(self, node, ins, ps, out):
        lines = [f"{out} = {ins[0]}.dot({ps[0]}.T)  # {node.name}: {self.describe()}"]
        return lines + ([f"{out} += {ps[1]}"] if len(ps) > 1 else [])

    def numpy_backward(self, node, ins, ps, out, d, dins, dps):
        units, fan_in = self.built.units, node.in_shapes[0][-1]
        lead = len(node.shape) > 1
        d2 = f"{d}.reshape(-1, {units})" if lead else d
        a2 = f"{ins[0]}.reshape(-1, {fan_in})" if lead else ins[0]
        lines = []
        if dps[0] is not None:
            lines.append(f"{dps[0]} = {d2}.T.dot({a2})  # {node.name}: dE/dW")
        if len(dps) > 1 and dps[1] is not None:
            lines.append(f"{dps[1]} = np.asarray({d}.sum())" if self.shared else f"{dps[1]} = {d2}.sum(axis=0)")
        if dins[0] is not None:
            lines.append(f"{dins[0]} = {d}.dot({ps[0]})  # {node.name}: dE/d(input)")
        return lines

    second_kernels = ()

    def numpy_jvp(self, node, ins, rins, ps, vps, out, rout):
        """R{z} = R{a} W^T + a V^T + v_b (bilinear in a and W)."""
        terms = [f"{rins[0]}.dot({ps[0]}.T)"] if rins[0] is not None else []
        if vps[0] is not None:
            terms.append(f"{ins[0]}.dot({vps[0]}.T)")
        vb = vps[1] if len(vps) > 1 else None
        if not terms:
            terms.append(f"np.zeros_like({out})")
        return [f"{rout} = {' + '.join(terms + ([vb] if vb else []))}  # {node.name}: R{{z}}"]

    def numpy_rbackward(self, node, ins, rins, ps, vps, out, rout, d, rd, dins, rdins, rdps):
        """dx = d W, R{dx} = R{d} W + d V, R{dW} = R{d}^T a + d^T R{a}, R{db} = sum R{d}."""
        units, fan_in = self.built.units, node.in_shapes[0][-1]
        lead = len(node.shape) > 1

        def flat(v, n):
            return f"{v}.reshape(-1, {n})" if lead else v

        lines = []
        if rdps[0] is not None:
            extra = f" + {flat(d, units)}.T.dot({flat(rins[0], fan_in)})" if rins[0] is not None else ""
            lines.append(f"{rdps[0]} = {flat(rd, units)}.T.dot({flat(ins[0], fan_in)}){extra}  # {node.name}: R{{dE/dW}}")
        if len(rdps) > 1 and rdps[1] is not None:
            lines.append(f"{rdps[1]} = np.asarray({rd}.sum())" if self.shared else f"{rdps[1]} = {flat(rd, units)}.sum(axis=0)")
        if dins[0] is not None:
            lines.append(f"{dins[0]} = {d}.dot({ps[0]})  # {node.name}: dE/d(input)")
        if rdins[0] is not None:
            extra = f" + {d}.dot({vps[0]})" if vps[0] is not None else ""
            lines.append(f"{rdins[0]} = {rd}.dot({ps[0]}){extra}  # {node.name}: R{{dE/d(input)}}")
        return lines

    def _c_rows(self, node):
        """The rows of the layer's input matrix: the batch times any leading axes."""
        lead = int(np.prod(node.shape[:-1]))
        return "batch" if lead == 1 else f"batch * {lead}"

    def c_forward(self, node, ins, ps, out, cx):
        units, fan_in, rows = self.built.units, node.in_shapes[0][-1], self._c_rows(node)
        lines = [f"/* {node.name}: {self.describe()}, net = a W^T + b */",
                 cx.call("symgrad_gemm_nt", f"{rows}, {units}, {fan_in}, {ins[0]}, {ps[0]}, {out}, "
                         f"{cx.scratch('T', units * fan_in)}")]
        if len(ps) > 1:
            shape = f"{rows}, 1, {units}" if self.shared else f"{rows}, {units}, 1"
            lines.append(cx.call("symgrad_add_bias", f"{shape}, {ps[1]}, {out}"))
        return lines

    def c_backward(self, node, ins, ps, out, d, dins, dps, cx):
        units, fan_in, rows = self.built.units, node.in_shapes[0][-1], self._c_rows(node)
        lines = [f"/* {node.name} backward: {self.rule} */"]
        if dps[0] is not None:
            lines.append(cx.call("symgrad_gemm_tn", f"{units}, {fan_in}, {rows}, {d}, {ins[0]}, {dps[0]}"))
        if len(dps) > 1 and dps[1] is not None:
            shape = f"{rows}, 1, {units}" if self.shared else f"{rows}, {units}, 1"
            lines.append(cx.call("symgrad_bias_grad", f"{shape}, {d}, {dps[1]}"))
        if dins[0] is not None:
            lines.append(cx.call("symgrad_gemm_nn", f"{rows}, {fan_in}, {units}, {d}, {ps[0]}, {dins[0]}"))
        return lines

    def _c_bias_shape(self, node):
        rows, units = self._c_rows(node), self.built.units
        return f"{rows}, 1, {units}" if self.shared else f"{rows}, {units}, 1"

    def c_jvp(self, node, ins, rins, ps, vps, out, rout, cx):
        """R{z} = R{a} W^T + a V^T + v_b (bilinear in a and W)."""
        from symgrad.ops.tensor import c_terms

        units, fan_in, rows = self.built.units, node.in_shapes[0][-1], self._c_rows(node)
        T = cx.scratch("T", units * fan_in)
        pairs = ([(rins[0], ps[0])] if rins[0] is not None else []) + ([(ins[0], vps[0])] if vps[0] is not None else [])
        calls = [lambda dst, a=a, w=w: [cx.call("symgrad_gemm_nt", f"{rows}, {units}, {fan_in}, {a}, {w}, {dst}, {T}")]
                 for a, w in pairs]
        lines = [f"/* {node.name}: R{{z}} = R{{a}} W^T + a V^T + v_b */"] + c_terms(calls, rout, node.size, cx)
        if len(vps) > 1 and vps[1] is not None:
            lines.append(cx.call("symgrad_add_bias", f"{self._c_bias_shape(node)}, {vps[1]}, {rout}"))
        return lines

    def c_rbackward(self, node, ins, rins, ps, vps, out, rout, d, rd, dins, rdins, rdps, cx):
        """dx = d W, R{dx} = R{d} W + d V, R{dW} = R{d}^T a + d^T R{a}, R{db} = sum R{d}."""
        from symgrad.ops.tensor import c_terms

        units, fan_in, rows = self.built.units, node.in_shapes[0][-1], self._c_rows(node)
        lines = [f"/* {node.name}: R of the backward (bilinear: one product per term) */"]
        if rdps[0] is not None:
            lines.append(cx.call("symgrad_gemm_tn", f"{units}, {fan_in}, {rows}, {rd}, {ins[0]}, {rdps[0]}"))
            if rins[0] is not None:
                P = cx.scratch("P", units * fan_in)
                lines += [cx.call("symgrad_gemm_tn", f"{units}, {fan_in}, {rows}, {d}, {rins[0]}, {P}"),
                          cx.call("symgrad_add_to", f"{units * fan_in}, {P}, {rdps[0]}")]
        if len(rdps) > 1 and rdps[1] is not None:
            lines.append(cx.call("symgrad_bias_grad", f"{self._c_bias_shape(node)}, {rd}, {rdps[1]}"))
        if dins[0] is not None:
            lines.append(cx.call("symgrad_gemm_nn", f"{rows}, {fan_in}, {units}, {d}, {ps[0]}, {dins[0]}"))
        if rdins[0] is not None:
            pairs = [(rd, ps[0])] + ([(d, vps[0])] if vps[0] is not None else [])
            calls = [lambda dst, g=g, w=w: [cx.call("symgrad_gemm_nn", f"{rows}, {fan_in}, {units}, {g}, {w}, {dst}")]
                     for g, w in pairs]
            lines += c_terms(calls, rdins[0], int(np.prod(node.in_shapes[0])), cx)
        return lines
