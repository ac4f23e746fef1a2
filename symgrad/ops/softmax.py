"""Softmax, a parameter-free layer: out_j = exp(x_j) / sum_k exp(x_k), everything about it in one place.

Computed as exp(x_j - m) / S with m = max_k x_k (no overflow; m cancels, so no derivative flows
through it) and log out_j = x_j - m - log S (no log 0). At the output, the delta of a loss l(y, t)
is h - y sum_k h_k with h = y dl/dy (simplified by SymPy: y - t sum(t)... for cross-entropy).
"""

import sympy as sp

from symgrad.ops.base import Layer, Step
from symgrad.symbols import derived

LOGY = derived("logy", "generic", "logy")  # log softmax(net), computed as net - logsumexp(net)


class Softmax(Layer):
    """out_j = exp(x_j) / sum_k exp(x_k)."""

    kind = "softmax"
    latex = r"\frac{e^{x_j}}{\sum_k e^{x_k}}"
    rule = "quotient rule and the derivative of the exponential"
    meaning = "output of a neuron (after the activation)"

    def formula(self):
        return "softmax(z) = exp(z_j) / sum_k exp(z_k)"

    def forward(self, xs):
        """exp(x_j) / sum_k exp(x_k)."""
        s = sp.Add(*[sp.exp(v) for v in xs])
        return [sp.exp(v) / s for v in xs]

    def steps(self, xs, outs, layer, tag):
        """max_L = max_k x_k (no gradient), S_L = sum_k exp(x_k - max_L), out_j = exp(x_j - max_L) / S_L."""
        m = derived(f"max_{tag}", "max", tag)
        s = derived(f"S_{tag}", "S", tag)
        steps = [Step(m, sp.Max(*xs), "max", layer, no_grad=True, meaning="largest net input (shift for a stable softmax)"),
                 Step(s, sp.Add(*[sp.exp(v - m) for v in xs]), "sum", layer, meaning="softmax denominator",
                      rule="sum rule and the derivative of the exponential")]
        logs = {}
        for j, (o, v) in enumerate(zip(outs, xs)):
            steps.append(Step(o, sp.exp(v - m) / s, "out", layer, j, meaning=self.meaning, rule=self.rule))
            logs[sp.log(o)] = v - m - sp.log(s)  # log softmax without log(0)
        return steps, logs

    def vjp(self, xs, outs, ds):
        """u_i (g_i - sum_j g_j u_j): the Jacobian diag(u) - u u^T applied to g, in the outputs only."""
        dot = sp.Add(*[g * u for g, u in zip(ds, outs)])
        return [u * (g - dot) for g, u in zip(ds, outs)]

    def jvp(self, xs, outs, rs):
        """u_j (r_j - sum_k u_k r_k): diag(u) - u u^T applied to a direction r."""
        dot = sp.Add(*[u * r for u, r in zip(outs, rs)])
        return [u * (r - dot) for u, r in zip(outs, rs)]

    def rvjp(self, xs, outs, ds, rs, rds):
        """R{u_i (g_i - g.u)} = R{u_i} (g_i - g.u) + u_i (R{g_i} - R{g}.u - g.R{u}), R{u} from ``jvp``."""
        ru = self.jvp(xs, outs, rs)
        dot = sp.Add(*[g * u for g, u in zip(ds, outs)])
        rdot = sp.Add(*[rg * u + g * r for rg, u, g, r in zip(rds, outs, ds, ru)])
        return [r * (g - dot) + u * (rg - rdot) for r, g, u, rg in zip(ru, ds, outs, rds)]

    def output_delta(self, g, y, n):
        """h = y dl/dy, simplified unless that adds a case split; the delta is h - y sum_k h_k.

        (SymPy writes y sign(y) as a Piecewise at y = 0; softmax outputs are never 0, and gcc 12 at -O3
        -march=native -fno-trapping-math miscompiled the ternary it prints inside the row-sum loop.)
        """
        h = y * g
        simple = sp.simplify(h)
        return h if simple.has(sp.Piecewise) and not h.has(sp.Piecewise) else simple

    def loss_logs(self):
        return {"log": LOGY, "note": "log(softmax(net)) is computed as net - logsumexp(net)"}

    # -- NumPy: z (batch, n) holds the net input and becomes x - max; a the outputs

    def numpy_forward(self, z, a, k):
        """Lines computing a = softmax(z) row by row, shifted by the row maximum; sum{k} kept for the log."""
        return [f"{z} -= {z}.max(axis=1, keepdims=True)",
                f"{a} = np.exp({z})",
                f"sum{k} = {a}.sum(axis=1, keepdims=True)",
                f"{a} /= sum{k}  # softmax"]

    def numpy_log(self, z, k):
        return f"logy = {z} - np.log(sum{k})  # log softmax, stable"

    def numpy_delta(self, h, y, d):
        """Lines for the output delta from h = y dl/dy (printed)."""
        return [f"h = {h}", f"{d} = h - {y} * h.sum(axis=1, keepdims=True)"]

    def numpy_jvp(self, u, r, target):
        """Lines: target = u (r - sum_k u_k r_k), r may carry leading axes (several directions)."""
        return [f"{target} = {r} - ({u} * {r}).sum(axis=-1, keepdims=True)", f"{target} *= {u}  # softmax Jacobian times r"]

    def numpy_vjp(self, u, g, target):
        return [f"{target} = {g} - ({g} * {u}).sum(axis=1, keepdims=True)", f"{target} *= {u}  # softmax vjp"]

    def numpy_rvjp(self, u, g, r, rg, target):
        """Lines: target = R{u (g - g.u)} with R{u} = u (r - u.r) (``rvjp`` on arrays); r None when the input is fixed."""
        lines = [] if r is None else [f"ru = {u} * ({r} - ({u} * {r}).sum(axis=1, keepdims=True))"]
        rdot = f"({rg} * {u}).sum(axis=1, keepdims=True)" if r is None else f"({rg} * {u} + {g} * ru).sum(axis=1, keepdims=True)"
        first = "" if r is None else f"ru * ({g} - ({g} * {u}).sum(axis=1, keepdims=True)) + "
        return lines + [f"{target} = {first}{u} * ({rg} - {rdot})  # R of the softmax vjp"]

    # -- C: loops over the rows of the batch, zr/ar the row's net input (kept as log softmax) and outputs

    def c_forward_row(self, n, first, exp, log):
        """C lines for one row: zr = the net input (``first``, in _j), ar = softmax, then zr = log softmax (stable)."""
        return [f"for (int _j = 0; _j < {n}; ++_j) {{", f"    zr[_j] = {first};", "}",
                "real m = zr[0];",
                f"for (int _j = 1; _j < {n}; ++_j) {{", "    m = zr[_j] > m ? zr[_j] : m;", "}",
                "real s = 0;",
                f"for (int _j = 0; _j < {n}; ++_j) {{", f"    ar[_j] = {exp('zr[_j] - m')};", "    s += ar[_j];", "}",
                f"const real logs = {log}(s);",
                f"for (int _j = 0; _j < {n}; ++_j) {{", "    ar[_j] /= s;",
                "    zr[_j] = zr[_j] - m - logs;  /* log softmax, stable */", "}"]

    def c_delta_row(self, n, h, y_row):
        """C lines for one row: dr = h, then dr = _s (h - y sum h)."""
        return ["real hs = 0;",
                f"for (int _j = 0; _j < {n}; ++_j) {{", f"    const size_t _q = (size_t)_r * {n} + _j;",
                f"    dr[_j] = {h};", "    hs += dr[_j];", "}",
                f"for (int _j = 0; _j < {n}; ++_j) {{",
                f"    dr[_j] = _s * (dr[_j] - {y_row}[(size_t)_r * {n} + _j] * hs);", "}"]
