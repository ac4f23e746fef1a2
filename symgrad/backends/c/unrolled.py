"""Straight-line C over the neuron-level program: every weight a local constant, nothing but arithmetic."""

from symgrad.backends.c.printer import CPrinter
from symgrad.core.derivation import live_assignments
from symgrad.core.derive import derive


def for_rows(body):
    """``body`` inside a loop over the batch rows ``_r``."""
    return ["for (int _r = 0; _r < batch; ++_r) {"] + ["    " + line for line in body] + ["}"]


def at(row, width, col=0):
    """The index of entry ``col`` of row ``row`` in a row-major array ``width`` wide (``row`` None: the only row)."""
    if row is None:
        return str(col)
    if width == 1:
        return row
    return f"(size_t){row} * {width}" + ("" if col == 0 else f" + {col}")


class Unrolled:
    """Function bodies of straight-line code over the neuron-level program."""

    def __init__(self, model, layout, pr):
        self.model = model
        self.sl = derive(model).straight
        self.prog = self.sl.derivation.program
        self.pr = CPrinter(pr.dtype, self.sl.namer(model.name).ids, vector_math=False)
        self.offsets = {}
        for p in layout:
            for k, s in enumerate(p["scalars"]):
                self.offsets[s] = p["offset"] + k

    def helpers(self):
        """The symgrad_* helpers the bodies call."""
        return set(self.pr.helpers)

    def _prologue(self, needed):
        """The parameters the body reads, as local constants (c_sources voids the arguments it never reads)."""
        params = [s for s in self.prog.params if s in needed]
        if not params:
            return []
        return ["/* parameters */"] + [f"const real {self.pr.doprint(s)} = params[{self.offsets[s.name]}];" for s in params]

    def _row(self, needed, row="_r"):
        """The inputs and targets of row ``row`` the body reads, as local constants."""
        n_in, n_out = self.model.n_inputs, self.model.n_outputs
        lines = []
        for k, s in enumerate(self.prog.inputs):
            if s in needed:
                lines.append(f"const real {self.pr.doprint(s)} = x[{at(row, n_in, k)}];")
        for k, s in enumerate(self.prog.targets):
            if s in needed:
                lines.append(f"const real {self.pr.doprint(s)} = t[{at(row, n_out, k)}];")
        return lines

    def _assign(self, assignments):
        return [f"const real {self.pr.doprint(a.lhs)} = {self.pr.doprint(a.rhs)};" for a in assignments]

    def forward(self):
        body, needed = live_assignments(self.sl.forward, self.prog.outputs)
        n_out = self.model.n_outputs
        loop = self._row(needed) + self._assign(body)
        loop += [f"y[{at('_r', n_out, k)}] = {self.pr.doprint(o)};" for k, o in enumerate(self.prog.outputs)]
        return self._prologue(needed) + for_rows(loop)

    def forward_one(self):
        """The forward body for batch 1 (no row loop)."""
        body, needed = live_assignments(self.sl.forward, self.prog.outputs)
        lines = self._prologue(needed) + self._row(needed, None) + self._assign(body)
        return lines + [f"y[{k}] = {self.pr.doprint(o)};" for k, o in enumerate(self.prog.outputs)] + ["return;"]

    def loss_one(self):
        """The loss body for batch 1 (the mean of one sample is the sum)."""
        body, needed = live_assignments(self.sl.loss, [self.prog.loss])
        return (self._prologue(needed) + self._row(needed, None) + self._assign(body)
                + [f"return {self.pr.doprint(self.prog.loss)};"])

    def _scaled(self, value):
        """``value`` times the loss's batch factor (1 for a sum: nothing printed)."""
        return value if self.model.loss.reduction == "sum" else f"_s * {value}"

    def _scale(self):
        """The declaration of the batch factor ``_s`` of a mean loss (none for a sum)."""
        return [] if self.model.loss.reduction == "sum" else ["const real _s = (real)1 / batch;"]

    def loss(self):
        body, needed = live_assignments(self.sl.loss, [self.prog.loss])
        loop = self._row(needed) + self._assign(body) + [f"_E += {self.pr.doprint(self.prog.loss)};"]
        return self._prologue(needed) + ["real _E = 0;"] + for_rows(loop) + self._scale() + [f"return {self._scaled('_E')};"]

    def _backward_parts(self):
        """(symbols used, the per-row lines, the printed gradients, the whole one-sample body after the prologue)."""
        body, needed = self.sl.live_body()
        row = self._row(needed) + self._assign(body)
        grads = [self.pr.doprint(g) for _, g in self.sl.grads]
        stored = {self.offsets[p.name]: g for (p, _), g in zip(self.sl.grads, grads)}
        one = (self._row(needed, None) + self._assign(body)
               + [f"grad[{i}] = {stored.get(i, '0')};" for i in range(self._total())]
               + [f"return {self.pr.doprint(self.prog.loss)};"])
        return needed, row, grads, one

    def _total(self):
        return sum(p.size for p in self.model.params)

    def backward_one(self):
        """The backward body for batch 1: each gradient stored once known, no accumulators."""
        needed, _, _, one = self._backward_parts()
        return self._prologue(needed) + one

    def backward(self):
        needed, row, grads, one = self._backward_parts()
        n = len(grads)
        loop = row + [f"_E += {self.pr.doprint(self.prog.loss)};"] + [f"_g{k} += {g};" for k, g in enumerate(grads)]
        lines = self._prologue(needed)
        lines += ["if (batch == 1) {  /* one sample: each gradient is stored once known, no accumulators */"]
        lines += ["    " + line for line in one] + ["}"]
        lines.append("real _E = 0;")
        if n:
            lines.append("real " + ", ".join(f"_g{k} = 0" for k in range(n)) + ";")
        lines += for_rows(loop) + self._scale()
        written = {self.offsets[p.name]: self._scaled(f"_g{k}") for k, (p, _) in enumerate(self.sl.grads)}
        lines += [f"grad[{i}] = {written.get(i, '0')};" for i in range(self._total())]
        lines.append(f"return {self._scaled('_E')};")
        return lines

    def workspace(self):
        return "0"

    def count(self):
        return len(self.sl.body)
