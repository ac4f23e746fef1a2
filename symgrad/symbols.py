"""Two namespaces no user name can reach into: the derivation's own symbols, and generated identifiers.

* :class:`Derived` — a symbol the derivation makes (``net_h1``, ``E_total``, ``delta_h1``, the
  generic ``y``/``t``/``x`` of losses and activations). Its identity is a structural key, not its
  name: a user's weight called ``net_h1`` or ``E_total`` is a plain :class:`sympy.Symbol` and never
  equals it, so names cannot change the numbers.
* :class:`Namer` — identifiers for generated code, injective over symbols: a user name is kept as it
  is unless the target languages reserve it (then ``_`` is appended; names that already end in
  ``_`` get one too, so the map stays injective); a derived symbol gets its display name if that is
  free, else a ``_``-prefixed or numbered variant. Reports keep the names as the user wrote them.
"""

import builtins
import keyword
import re

import sympy as sp


class Derived(sp.Symbol):
    """A real symbol made by the derivation; equal only to a Derived with the same structural key."""

    def __new__(cls, name, key):
        obj = sp.Symbol.__xnew__(cls, name, real=True)
        obj.key = tuple(key)
        return obj

    def __getnewargs_ex__(self):
        return (self.name, self.key), {}

    def _hashable_content(self):
        return super()._hashable_content() + (self.key,)

    @classmethod
    def class_key(cls):
        return sp.Symbol.class_key()  # sorted among symbols by name, as a plain Symbol would be


def derived(name, *key):
    """The derivation's symbol ``name`` with identity ``key`` (default: the name itself)."""
    return Derived(name, key or (name,))


def leaf_key(sym):
    """A structural key for any symbol: derived symbols carry theirs, user symbols are ('user', name)."""
    return sym.key if isinstance(sym, Derived) else ("user", sym.name)


PYTHON_RESERVED = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(dir(builtins))
C_RESERVED = frozenset(
    # C99..C23 keywords and the standard headers' names generated code can meet (<math.h>, <stddef.h>, <stdint.h>)
    "auto break case char const continue default do double else enum extern float for goto if inline int long "
    "register restrict return short signed sizeof static struct switch typedef union unsigned void volatile while "
    "bool true false alignas alignof static_assert thread_local nullptr constexpr typeof typeof_unqual "
    "complex imaginary noreturn offsetof errno assert "
    "acos asin atan atan2 cos sin tan acosh asinh atanh cosh sinh tanh exp exp2 expm1 frexp ldexp log log10 log1p "
    "log2 logb ilogb modf scalbn scalbln cbrt fabs hypot pow sqrt erf erfc lgamma tgamma ceil floor nearbyint rint "
    "lrint llrint round lround llround trunc fmod remainder remquo copysign nan nextafter nexttoward fdim fmax fmin "
    "fma isfinite isinf isnan isnormal signbit fpclassify isgreater isgreaterequal isless islessequal islessgreater "
    "isunordered gamma j0 j1 jn y0 y1 yn drem significand exp10 pow10 sincos "
    "memcpy memset memmove malloc calloc realloc free abort exit abs labs div".split()
)
# identifiers of generated code that live beside user names in one scope (Python and C function bodies)
INTERNAL = frozenset(
    "np math ctypes functools params x y t s E a0 single result out batch grad work real call theta "
    "net m logs hs v gx J H".split()  # v, gx, J, H: the second-order functions' arguments
)
RESERVED = PYTHON_RESERVED | C_RESERVED | INTERNAL


def user_identifier(name, prefix=""):
    """A user's name as an identifier of generated code; injective (see the module docstring).

    Appended ``_`` where Python or C reserve the name, where it looks like a macro (no lower-case
    letter: NAN, EOF, M_PI, DTYPE), a C typedef (``*_t``), one of symgrad's helpers (``symgrad*``) or
    the model's own C API (``<model>_*``), and where it already ends in ``_``.
    """
    clash = (name in RESERVED or name.endswith("_") or not re.search(r"[a-z]", name) or name.endswith("_t")
             or name.lower().startswith("symgrad") or (prefix and name.startswith(prefix + "_")))
    return name + "_" if clash else name


class Namer:
    """Injective map from symbols to identifiers of one generated module: user names first, then derived ones."""

    def __init__(self, model_name=""):
        self.model_name = model_name
        self.ids = {}  # symbol -> identifier
        self.taken = set()

    def __getitem__(self, sym):
        ident = self.ids.get(sym)
        if ident is None:
            ident = self.ids[sym] = self._fresh(sym)
            self.taken.add(ident)
        return ident

    def add(self, symbols):
        """Name these symbols now (in order), so the names they get do not depend on later use."""
        for s in symbols:
            self[s]
        return self

    def _fresh(self, sym):
        base = user_identifier(sym.name, self.model_name)
        if not isinstance(sym, Derived):
            if base in self.taken:
                raise ValueError(f"two different symbols named {sym.name!r}")
            return base
        for cand in (base, "_" + base):
            if cand not in self.taken and not re.fullmatch(r"_[A-Za-z]\d*", cand):
                return cand
        k = 2
        while f"_{base}_{k}" in self.taken:
            k += 1
        return f"_{base}_{k}"

    def mapping(self):
        """{symbol: identifier} for the printers."""
        return dict(self.ids)
