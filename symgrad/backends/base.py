"""A backend: a name, its printer and templates, the options it takes; it renders a derivation into files."""

from symgrad.errors import SpecError
from symgrad.spec.config import SECOND_ORDER

DTYPES = ("float64", "float32")


class Backend:
    """Renders a Derivation into {relative path: text} and writes the files; subclasses give the rest."""

    name = ""
    printer = None  # the SymPy printer subclass its code is printed with
    templates = ()
    options = {}  # option name -> default

    def check(self, dtype, options):
        """Refuse a dtype or an option this backend does not know (a silently ignored option hides a typo)."""
        if dtype not in DTYPES:
            raise SpecError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}", "--dtype")
        for key in options:
            if key not in self.options:
                known = ", ".join(self.options) or "none"
                raise SpecError(f"the {self.name} backend has no option {key!r} (its options: {known})", key)

    def render(self, derivation, dtype="float64", **options):
        """{path relative to the output folder: file text}."""
        raise NotImplementedError

    def write(self, derivation, out_dir, dtype="float64", **options):
        """Render and write the files atomically; the written paths."""
        raise NotImplementedError

    def settings(self, options):
        """The options with this backend's defaults filled in."""
        return {**self.options, **options}


def needs_second_order(model, second_order):
    """Whether the code gets second-order functions (asked for, or a newton/gauss_newton train_step solving with them)."""
    return bool(second_order) or model.train.kind in SECOND_ORDER
