"""The helper functions a generated NumPy module may define, and the printer that records which it calls."""

from symgrad.backends.numpy.printer import NumPyPrinter, math_code, numpy_code

HELPERS = {
    "_sigmoid1": '''def _sigmoid1(z):
    """sigma(z) for one float, without overflow."""
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)''',
    "_softplus1": '''def _softplus1(z):
    """log(1 + exp(z)) for one float, without overflow."""
    return max(z, 0.0) + math.log1p(math.exp(-abs(z)))''',
    "_sigmoid": '''def _sigmoid(z):
    """sigma(z) = 1 / (1 + exp(-z)) elementwise, without overflow (see _sigmoid_)."""
    return _sigmoid_(np.array(z, dtype=DTYPE, ndmin=1)).reshape(np.shape(z))''',
    "_sigmoid_": '''def _sigmoid_(z):
    """z <- sigma(z) = 1 / (1 + exp(-z)) in place, with no overflow warning at any z."""
    np.negative(z, out=z)
    if z.size <= 128:  # small arrays: sigma = exp(-log(1 + exp(-z))), the fewest calls
        np.logaddexp(0.0, z, out=z)
        np.negative(z, out=z)
        np.exp(z, out=z)
    else:  # logaddexp is ~20x slower than exp per element: exp(-z) is inf only where sigma(z) < 1e-308
        with np.errstate(over="ignore"):
            np.exp(z, out=z)
        z += 1.0
        np.reciprocal(z, out=z)  # 1 / (1 + inf) = 0
    return z''',
    "_ones": '''_ONES = {}


def _ones(n):
    """A read-only vector of n ones (cached): column sums of d as one product, ones.dot(d)."""
    v = _ONES.get(n)
    if v is None:
        v = np.ones(n, dtype=DTYPE)
        v.flags.writeable = False
        if len(_ONES) < 16:
            _ONES[n] = v
    return v''',
    "_erf": '''_erf_ufunc = np.frompyfunc(math.erf, 1, 1)


def _erf(z):
    """erf(z) elementwise (libm's erf; NumPy has none), for arrays and plain numbers alike."""
    return np.asarray(_erf_ufunc(z), dtype=DTYPE)''',
    "_max1": '''def _max1(a, b):
    """max(a, b) of two floats, NaN if either is NaN (as np.maximum)."""
    return a if a >= b or a != a else b''',
    "_min1": '''def _min1(a, b):
    """min(a, b) of two floats, NaN if either is NaN (as np.minimum)."""
    return a if a <= b or a != a else b''',
}

HELPER_NEEDS = {"_sigmoid": ("_sigmoid_",)}


class ModulePrinter:
    """Prints the expressions of one module and collects the helpers they call (recorded while printing)."""

    def __init__(self):
        self.helpers = set()

    def __call__(self, expr, names=None):
        """NumPy code for expr."""
        return numpy_code(expr, names, self.helpers)

    def scalar(self, expr, names=None):
        """Plain-Python float code for expr (per-sample paths)."""
        return math_code(expr, names, self.helpers)

    def probe(self, expr, names=None):
        """NumPy code for expr without recording its helpers (for code that may not be emitted)."""
        return numpy_code(expr, names, set())

    def in_place(self, expr, target):
        """Code overwriting array ``target`` with the one-argument function ``expr`` of it, or None."""
        return NumPyPrinter({"fully_qualified_modules": True}, None, self.helpers).in_place(expr, target)

    def need(self, *helpers):
        """Record helpers that hand-written lines call."""
        self.helpers.update(helpers)

    def sources(self):
        """The source of every recorded helper and what it needs, in a stable order."""
        needed = set(self.helpers)
        for h in list(needed):
            needed.update(HELPER_NEEDS.get(h, ()))
        return [HELPERS[h] for h in sorted(needed) if h in HELPERS]
