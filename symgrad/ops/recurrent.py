"""Recurrent layers (``rnn``, ``lstm``, ``gru``) on sequences (T, F): PyTorch's single-layer cells, unrolled in time.

Every step reads the input projection of its own step and the previous hidden state; with G gates
of H units, ``a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh`` (G*H values, gate blocks in PyTorch's
order: LSTM i, f, g, o; GRU r, z, n, where GRU keeps ``W_hn h + b_hn`` apart inside ``r * (...)``).
The initial state is zeros. The output is the last hidden state (H,) or, with ``return_sequences``,
every step's (T, H).

Backpropagation through time: the delta of h_t is the delta from the output at step t plus the
delta carried back from step t+1 (through W_hh and, for the LSTM, the cell state c_t); each gate's
local derivative comes from SymPy (:meth:`Recurrent.local_derivatives`); weight gradients sum over
steps and the batch. ``bptt_steps = k`` detaches the state every k steps, as ``h = h.detach()``
every k steps does in PyTorch: no delta is carried from step t back to step t-1 when t (counted
from 0) is a multiple of k, while W_hh still collects its term from every step.
"""

import numpy as np
import sympy as sp

from symgrad.checks import INIT_SCHEMES, choice_message, finite_array
from symgrad.limits import check
from symgrad.ops.activations import get_activation
from symgrad.ops.activations import out as OUT
from symgrad.ops.dense import Param
from symgrad.ops.tensor import TensorOp, show

WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
SIGMOID, TANH = get_activation("sigmoid"), get_activation("tanh")


class Recurrent(TensorOp):
    """A recurrent layer: ``hidden_size`` units read a (T, F) sequence step by step; subclasses give the cell."""

    gates = ""  # one letter per gate block, in PyTorch's order
    cached = True  # the forward kernel returns a cache (gate values, cell states) besides h
    equations = ()  # the cell, one line each (reports)
    deltas = ()  # its backward pass through time, one line each (reports)
    keys = {"hidden_size": None, "bias": "unit", "return_sequences": False, "bptt_steps": None,
            "weight_ih": None, "weight_hh": None, "bias_ih": None, "bias_hh": None, "freeze": (), "init": None}
    rule = ("backpropagation through time: the delta of h_t is the output's delta at step t plus the delta "
            "carried back from step t+1 through W_hh and the gates' derivatives; every weight gradient sums "
            "over the steps and the batch")

    def build(self, key, in_shapes, init, taken):
        (shape,) = in_shapes
        if len(shape) != 2:
            raise self.error(f"{self.kind} needs an input of shape (steps, features), got {show(shape)} "
                             "(a conv1d output (channels, length) goes through kind = \"transpose\" first)", f"{key}.input")
        H = self.hidden_size
        if isinstance(H, bool) or not isinstance(H, int) or H < 1:
            raise self.error("hidden_size must be a positive integer", f"{key}.hidden_size")
        if self.bias not in ("unit", "none"):
            raise self.error(choice_message("bias", self.bias, ("unit", "none")), f"{key}.bias")
        if not isinstance(self.return_sequences, bool):
            raise self.error("return_sequences must be true or false", f"{key}.return_sequences")
        k = self.bptt_steps
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise self.error("bptt_steps must be a positive integer", f"{key}.bptt_steps")
        self.T, self.F, self.H = shape[0], shape[1], H
        self.truncate = k if k is not None and k < self.T else 0  # 0: gradients flow through every step
        out = (self.T, H) if self.return_sequences else (H,)
        return out, self._params(key, init)

    def _params(self, key, default_init):
        name, G, F, H = self.name, len(self.gates) * self.H, self.F, self.H
        check("SYMGRAD_MAX_PARAMS", G * (F + H + (2 if self.bias == "unit" else 0)),
              f"the parameter count of layer {name!r}", f"{key}.hidden_size")
        scheme = self.init or default_init
        if scheme not in INIT_SCHEMES:
            raise self.error(choice_message("init scheme", scheme, INIT_SCHEMES), f"{key}.init")
        freeze = [self.freeze] if isinstance(self.freeze, str) else list(self.freeze)
        if not all(isinstance(f, str) for f in freeze) or set(freeze) - set(WEIGHTS):
            raise self.error(f"freeze lists some of {', '.join(WEIGHTS)}", f"{key}.freeze")
        if self.bias == "none" and (set(freeze) & {"bias_ih", "bias_hh"} or self.bias_ih is not None
                                    or self.bias_hh is not None):
            raise self.error("the layer has bias = \"none\"", f"{key}.bias")
        shapes = {"weight_ih": (G, F), "weight_hh": (G, H), "bias_ih": (G,), "bias_hh": (G,)}
        short = {"weight_ih": "wih", "weight_hh": "whh", "bias_ih": "bih", "bias_hh": "bhh"}
        params = []
        for what in WEIGHTS[:2] if self.bias == "none" else WEIGHTS:
            shape = shapes[what]
            given = self.args[what]
            value = None if given is None else finite_array(given, f"{key}.{what}", shape)
            scalars = tuple(f"{name}_{short[what]}" + "_".join(str(i + 1) for i in idx) for idx in np.ndindex(*shape))
            cols = shape[1] if len(shape) == 2 else H
            params.append(Param(f"{name}.{what}", shape, value, scalars, what not in freeze,
                                scheme if len(shape) == 2 else "zeros", cols, G))
        return params

    def describe(self):
        seq = "every step" if self.return_sequences else "last step"
        cut = f", bptt {self.truncate} steps" if self.truncate else ""
        return f"{self.kind}({self.H} hidden, {self._cell_name()}, bias {self.bias}, {seq}{cut})"

    def _cell_name(self):
        return "gates " + ", ".join(self.gates)

    # -- the definition, element by element (reports, tests)

    def sympy_forward(self, xs, params):
        """The hidden states of one sequence as SymPy expressions (truncation changes gradients only)."""
        (x,) = xs
        H, G = self.H, len(self.gates) * self.H
        zero = np.full(G, sp.S.Zero, dtype=object)
        wih, whh = params[0], params[1]
        bih, bhh = (params[2], params[3]) if len(params) > 2 else (zero, zero)
        h = np.full(H, sp.S.Zero, dtype=object)
        state = h.copy()
        hs = []
        for t in range(x.shape[0]):
            h, state = self.cell(wih.dot(x[t]) + bih, whh.dot(h) + bhh, h, state)
            hs.append(h)
        return np.array(hs, dtype=object) if self.return_sequences else hs[-1]

    def cell(self, gi, gh, h, state):
        """(h_t, state_t) from the input part gi and recurrent part gh of the gates, h_{t-1} and the state."""
        raise NotImplementedError

    def local_derivatives(self):
        """[(what, SymPy expression)]: each gate's and the state's local derivatives, from sympy.diff."""
        raise NotImplementedError

    # -- NumPy

    def _kernel_args(self, ps):
        b = f"{ps[2]}, {ps[3]}" if len(ps) > 2 else "None, None"
        return f"{ps[0]}, {ps[1]}, {b}"

    def _flags(self):
        return ""

    def numpy_forward(self, node, ins, ps, out):
        head = f"{out}_h" if not self.return_sequences else out
        if self.cached:
            head += f", {out}_s"
        lines = [f"{head} = _{self.kind}({ins[0]}, {self._kernel_args(ps)}{self._flags()})  # {node.name}: "
                 f"{self.describe()}"]
        if not self.return_sequences:
            lines.append(f"{out} = {out}_h[:, -1]  # the last hidden state")
        return lines

    def numpy_backward(self, node, ins, ps, out, d, dins, dps):
        h = out if self.return_sequences else f"{out}_h"
        names = [dins[0] or "_"] + [p or "_" for p in dps] + ["_"] * (4 - len(dps))
        need_b = len(dps) > 2 and any(p is not None for p in dps[2:])
        cache = f"{out}_s, " if self.cached else ""
        return [f"{', '.join(names)} = _{self.kind}_backward({d}, {h}, {cache}{ins[0]}, {ps[0]}, {ps[1]}, "
                f"{self.truncate}, {dins[0] is not None}, {need_b}{self._flags()})  # {node.name}: through time"]

    @property
    def kernels(self):
        return (f"_{self.kind}", f"_{self.kind}_backward")

    @property
    def second_kernels(self):
        return (f"_{self.kind}_jvp", f"_{self.kind}_rbackward")

    def _directions(self, vps):
        """The kernel arguments of the directions on W_ih, W_hh, b_ih, b_hh (None: no direction)."""
        return ", ".join(str(v) for v in list(vps) + [None] * (4 - len(vps)))

    def numpy_jvp(self, node, ins, rins, ps, vps, out, rout):
        """R{h} through time: every step's R of its gates from R{x_t}, R{h_{t-1}} and the direction on the weights."""
        h = out if self.return_sequences else f"{out}_h"
        head = rout if self.return_sequences else f"{rout}_h"
        cache = f"{out}_s, " if self.cached else ""
        lines = [f"{head}, {rout}_s = _{self.kind}_jvp({ins[0]}, {rins[0]}, {h}, {cache}{ps[0]}, {ps[1]}, "
                 f"{self._directions(vps)}, {self.truncate}{self._flags()})  # {node.name}: R through time"]
        if not self.return_sequences:
            lines.append(f"{rout} = {rout}_h[:, -1]")
        return lines

    def numpy_rbackward(self, node, ins, rins, ps, vps, out, rout, d, rd, dins, rdins, rdps):
        """dE/dx and the R of every gradient, backward through time beside the first-order deltas."""
        h = out if self.return_sequences else f"{out}_h"
        rh = rout if self.return_sequences else f"{rout}_h"
        names = [dins[0] or "_", rdins[0] or "_"] + [p or "_" for p in rdps] + ["_"] * (4 - len(rdps))
        need_b = len(rdps) > 2 and any(p is not None for p in rdps[2:])
        cache = f"{out}_s, " if self.cached else ""
        vps = list(vps) + [None] * (4 - len(vps))
        return [f"{', '.join(names)} = _{self.kind}_rbackward({d}, {rd}, {h}, {cache}{rh}, {rout}_s, {ins[0]}, {rins[0]}, "
                f"{ps[0]}, {ps[1]}, {vps[0]}, {vps[1]}, {self.truncate}, {dins[0] is not None}, {need_b}{self._flags()})"
                f"  # {node.name}: R through time"]

    # -- C: the kernels of templates/c/symgrad_rnn.h, one sequence at a time

    c_states = ()  # suffixes of the per-batch buffers of T x H values besides h and the gate values (LSTM: c, tanh c)

    def multiply_adds(self, node):
        """Multiply-adds per sequence of the forward pass: every step's gates from x_t and h_{t-1}."""
        return self.T * len(self.gates) * self.H * (self.F + self.H)

    def _c_buffers(self, out, cx):
        """(h of every step, the gate values, the cell's other states): the layer's buffers, kept for the backward pass."""
        T, H = self.T, self.H
        h = out if self.return_sequences else cx.buffer(f"{out}_H", T * H)
        return h, cx.buffer(f"{out}_G", T * len(self.gates) * H), [cx.buffer(f"{out}_{s}", T * H) for s in self.c_states]

    def _c_block(self, comment, node, ps, lines):
        b = f"{ps[2]}, .bhh = {ps[3]}" if len(ps) > 2 else "0, .bhh = 0"
        layer = [f"const symgrad_rnn_layer L = {{.B = batch, .T = {self.T}, .F = {self.F}, .H = {self.H}, "
                 f".bptt = {self.truncate}, .seq = {int(self.return_sequences)},",
                 f"    .wih = {ps[0]}, .whh = {ps[1]}, .bih = {b}}};"]
        return [f"{{  /* {node.name}{comment} */", *("    " + s for s in layer + lines), "}"]

    def _c_flag(self):
        return ""

    def c_forward(self, node, ins, ps, out, cx):
        h, gates, states = self._c_buffers(out, cx)
        G, F, H = len(self.gates), self.F, self.H
        scratch = cx.scratch("RNN", (F + H + 3) * G * H)
        last = "0" if self.return_sequences else out
        cache = "".join(f", {s}" for s in ([gates] if G > 1 else []) + states)
        call = cx.call(f"symgrad_{self.kind}_forward", f"&L{self._c_flag()}, {ins[0]}, {h}, {last}{cache}, {scratch}")
        return self._c_block(f": {self.describe()}", node, ps, [call])

    def c_backward(self, node, ins, ps, out, d, dins, dps, cx):
        h, gates, states = self._c_buffers(out, cx)
        grads = ", ".join(v or "0" for v in [dins[0]] + list(dps) + [None] * (4 - len(dps)))
        cache = "".join(f", {s}" for s in states)
        work = cx.scratch("RNN", 3 * self.H + (self.F + self.H) * len(self.gates) * self.H)
        if len(self.gates) == 1:
            call = f"&L{self._c_flag()}, {ins[0]}, {h}, {d}, {gates}, {work}, &g"
        else:
            call = f"&L, {ins[0]}, {h}, {gates}{cache}, {d}, {work}, &g"
        return self._c_block(f" backward: {self.rule}", node, ps,
                             [f"const symgrad_rnn_grads g = {{{grads}}};", cx.call(f"symgrad_{self.kind}_backward", call)])

    # -- C second order: R through time (templates/c/symgrad_rnn.h, the <kind>_jvp and <kind>_rbackward kernels)

    c_rstates = ("A",)  # suffixes of the R-passes' own per-batch buffers of T x H values (besides R{h}): RNN R{a}

    def _c_direction(self, vps):
        """The direction on W_ih, W_hh, b_ih, b_hh as a symgrad_rnn_layer D (0: no direction)."""
        v = [p or "0" for p in list(vps) + [None] * (4 - len(vps))]
        return (f"const symgrad_rnn_layer D = {{.B = batch, .T = {self.T}, .F = {self.F}, .H = {self.H}, "
                f".bptt = {self.truncate}, .seq = {int(self.return_sequences)}, .wih = {v[0]}, .whh = {v[1]}, "
                f".bih = {v[2]}, .bhh = {v[3]}}};")

    def _c_r_args(self, out, rout, cx):
        """The kernels' arguments from h to the R-passes' own buffers: h, the forward's gates and states (LSTM, GRU),
        R{h} of every step, R of the gates (LSTM, GRU) and the states' R."""
        T, G, H = self.T, len(self.gates), self.H
        h, gates, states = self._c_buffers(out, cx)
        rh = rout if self.return_sequences else cx.buffer(f"{rout}_H", T * H)
        own = ([cx.buffer(f"{rout}_G", T * G * H)] if G > 1 else []) + [cx.buffer(f"{rout}_{s}", T * H)
                                                                         for s in self.c_rstates]
        return ", ".join([h] + ([gates] + states if G > 1 else []) + [rh] + own)

    def c_jvp(self, node, ins, rins, ps, vps, out, rout, cx):
        """R{h} through time: every step's R of its gates from R{x_t}, R{h_{t-1}} and the direction on the weights."""
        G, H = len(self.gates), self.H
        last = "0" if self.return_sequences else rout
        fixed = f", {cx.scratch('RNNF', 2 * G * H + 2 * (self.F + H) * G * H)}"
        call = cx.call(f"symgrad_{self.kind}_jvp", f"&L{self._c_flag()}, &D, {ins[0]}, {rins[0] or '0'}, "
                       f"{self._c_r_args(out, rout, cx)}, {last}{fixed}")
        return self._c_block(": R through time", node, ps, [self._c_direction(vps), call])

    def c_rbackward(self, node, ins, rins, ps, vps, out, rout, d, rd, dins, rdins, rdps, cx):
        """dE/dx and the R of every gradient, backward through time beside the first-order deltas."""
        T, F, G, H = self.T, self.F, len(self.gates), self.H
        work = cx.temp("RNNR", 2 * T * G * H + T * H + T * F + (2 * T * H if self.kind == "gru" else 0))
        fixed = cx.scratch("RNNF", (6 if self.kind == "lstm" else 4) * H + (2 * F + 2 * H) * G * H)
        grads = ", ".join(v or "0" for v in [rdins[0]] + list(rdps) + [None] * (4 - len(rdps)))
        call = cx.call(f"symgrad_{self.kind}_rbackward", f"&L{self._c_flag()}, &D, {ins[0]}, {rins[0] or '0'}, "
                       f"{self._c_r_args(out, rout, cx)}, {d}, {rd}, {dins[0] or '0'}, {work}, {fixed}, &g")
        return self._c_block(": R of the backward through time", node, ps,
                             [self._c_direction(vps), f"const symgrad_rnn_grads g = {{{grads}}};", call])


class RNN(Recurrent):
    """Elman RNN: h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), f = tanh or relu."""

    kind = "rnn"
    gates = "h"
    equations = ("a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh", "h_t = f(a_t) (f: the layer's activation), h_0 = 0")
    deltas = ("dE/dh_t = (the output's delta at step t) + W_hh^T delta_{t+1}",
              "delta_t = dE/da_t = dE/dh_t * f'(a_t)",
              "dE/dW_ih = sum_t delta_t x_t^T, dE/dW_hh = sum_t delta_t h_{t-1}^T, dE/db_ih = dE/db_hh = sum_t delta_t")
    cached = False
    keys = {**Recurrent.keys, "activation": "tanh"}

    def _flags(self):
        return f", {self.activation == 'relu'}"

    def _c_flag(self):
        return f", {int(self.activation == 'relu')}"

    def build(self, key, in_shapes, init, taken):
        if self.activation not in ("tanh", "relu"):
            raise self.error(choice_message("activation", self.activation, ("tanh", "relu")), f"{key}.activation")
        self.act = get_activation(self.activation)
        return super().build(key, in_shapes, init, taken)

    def _cell_name(self):
        return self.activation

    def cell(self, gi, gh, h, state):
        h = np.array([self.act.at(v) for v in gi + gh], dtype=object)
        return h, state

    def local_derivatives(self):
        return [(f"dh_t/da_t = {self.activation}'(a_t), in h_t", self.act.derivative_in_out().subs(OUT, sp.Symbol("h_t")))]


class LSTM(Recurrent):
    """LSTM: gates i, f, o = sigma(.), g = tanh(.); c_t = f c_{t-1} + i g; h_t = o tanh(c_t)."""

    kind = "lstm"
    gates = "ifgo"
    c_states = ("C", "TC")
    c_rstates = ("C",)
    equations = ("(a_i, a_f, a_g, a_o) = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh",
                 "i = sigma(a_i), f = sigma(a_f), g = tanh(a_g), o = sigma(a_o)",
                 "c_t = f * c_{t-1} + i * g, h_t = o * tanh(c_t), h_0 = c_0 = 0")
    deltas = ("dE/dh_t = (the output's delta at step t) + W_hh^T delta_{t+1}",
              "dE/dc_t = dE/dh_t * o * (1 - tanh(c_t)^2) + dE/dc_{t+1} * f_{t+1} (the cell-state path)",
              "delta_i = dE/dc_t * g * i(1 - i), delta_f = dE/dc_t * c_{t-1} * f(1 - f), "
              "delta_g = dE/dc_t * i * (1 - g^2), delta_o = dE/dh_t * tanh(c_t) * o(1 - o)",
              "dE/dW_ih = sum_t delta_t x_t^T, dE/dW_hh = sum_t delta_t h_{t-1}^T, dE/db_ih = dE/db_hh = sum_t delta_t")

    def cell(self, gi, gh, h, c):
        a, H = gi + gh, self.H
        i, f, o = ([SIGMOID.at(v) for v in a[j * H:(j + 1) * H]] for j in (0, 1, 3))
        g = [TANH.at(v) for v in a[2 * H:3 * H]]
        c = np.array([fj * cj + ij * gj for ij, fj, gj, cj in zip(i, f, g, c)], dtype=object)
        return np.array([oj * TANH.at(cj) for oj, cj in zip(o, c)], dtype=object), c

    def local_derivatives(self):
        i, f, g, o, cp, c = sp.symbols("i f g o c_{t-1} c_{t}", real=True)
        cell = f * cp + i * g
        h = o * sp.tanh(c)
        gate = {s: (SIGMOID if s != g else TANH).derivative_in_out().subs(OUT, s) for s in (i, f, g, o)}
        rows = [(f"dc_t/d{s} * d{s}/da_{s}", sp.diff(cell, s) * gate[s]) for s in (i, f, g)]
        rows += [("dh_t/do * do/da_o", sp.diff(h, o) * gate[o]),
                 ("dh_t/dc_t", sp.diff(h, c)),
                 ("dc_t/dc_{t-1} (the cell-state path)", sp.diff(cell, cp))]
        return rows


class GRU(Recurrent):
    """GRU: r, z = sigma(.), n = tanh(W_in x + b_in + r (W_hn h + b_hn)); h_t = (1 - z) n + z h_{t-1}."""

    kind = "gru"
    gates = "rzn"
    c_states = ("N",)
    c_rstates = ("N",)
    equations = ("(gi_r, gi_z, gi_n) = W_ih x_t + b_ih, (gh_r, gh_z, hn) = W_hh h_{t-1} + b_hh",
                 "r = sigma(gi_r + gh_r), z = sigma(gi_z + gh_z), n = tanh(gi_n + r * hn)",
                 "h_t = (1 - z) * n + z * h_{t-1}, h_0 = 0")
    deltas = ("dE/dh_t = (the output's delta at step t) + z_{t+1} * dE/dh_{t+1} + W_hh^T delta^h_{t+1}",
              "delta_n = dE/dh_t * (1 - z) * (1 - n^2), delta_z = dE/dh_t * (h_{t-1} - n) * z(1 - z), "
              "delta_r = delta_n * hn * r(1 - r), delta_hn = delta_n * r",
              "input part delta^i = (delta_r, delta_z, delta_n), recurrent part delta^h = (delta_r, delta_z, delta_hn)",
              "dE/dW_ih = sum_t delta^i_t x_t^T, dE/dW_hh = sum_t delta^h_t h_{t-1}^T, "
              "dE/db_ih = sum_t delta^i_t, dE/db_hh = sum_t delta^h_t")

    def cell(self, gi, gh, h, state):
        H = self.H
        r = [SIGMOID.at(a + b) for a, b in zip(gi[:H], gh[:H])]
        z = [SIGMOID.at(a + b) for a, b in zip(gi[H:2 * H], gh[H:2 * H])]
        n = [TANH.at(a + rj * b) for a, rj, b in zip(gi[2 * H:], r, gh[2 * H:])]
        return np.array([(1 - zj) * nj + zj * hj for zj, nj, hj in zip(z, n, h)], dtype=object), state

    def local_derivatives(self):
        r, z, n, hp, hn = sp.symbols("r z n h_{t-1} hn_t", real=True)
        h = (1 - z) * n + z * hp
        pre = sp.Symbol("gi_n", real=True) + r * hn
        sig = SIGMOID.derivative_in_out()
        return [("dh_t/dz * dz/da_z", sp.diff(h, z) * sig.subs(OUT, z)),
                ("dh_t/dn * dn/da_n", sp.diff(h, n) * TANH.derivative_in_out().subs(OUT, n)),
                ("da_n/dr * dr/da_r", sp.diff(pre, r) * sig.subs(OUT, r)),
                ("da_n/dhn (the recurrent part of n, W_hn h + b_hn)", sp.diff(pre, hn)),
                ("dh_t/dh_{t-1} (directly, besides W_hh)", sp.diff(h, hp))]
