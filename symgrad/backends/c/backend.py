"""The C backend as an object: a package folder ``<name>_c/`` with header, source and ctypes runtime."""

from symgrad.backends.base import Backend
from symgrad.backends.c.codegen import SHAPES as CODE_SHAPES
from symgrad.backends.c.codegen import generate_c, package_files
from symgrad.backends.c.printer import CPrinter
from symgrad.errors import SpecError

SHAPES = ("auto", *CODE_SHAPES)
BLAS = ("no", "auto", "yes")


class CBackend(Backend):
    """Writes ``<out_dir>/<name>_c/``; ``build`` compiles it now, ``with_main`` adds a main.c."""

    name = "c"
    printer = CPrinter
    templates = ("c/header.h.j2", "c/source.c.j2", "c/package.py.j2", "c/main.c.j2")
    options = {"shape": "auto", "with_main": False, "build": False, "blas": "no", "second_order": False}

    def check(self, dtype, options):
        super().check(dtype, options)
        if options.get("shape", "auto") not in SHAPES:
            raise SpecError(f"shape must be one of {', '.join(SHAPES)}", "shape")
        if options.get("blas", "no") not in BLAS:
            raise SpecError(f"blas must be one of {', '.join(BLAS)}", "blas")

    def render(self, derivation, dtype="float64", **options):
        self.check(dtype, options)
        o = self.settings(options)
        files = package_files(derivation, dtype, o["shape"], o["with_main"], o["blas"], o["second_order"])[2]
        return {f"{derivation.model.name}_c/{name}": text for name, text in files.items()}

    def write(self, derivation, out_dir, dtype="float64", **options):
        self.check(dtype, options)
        o = self.settings(options)
        return generate_c(derivation, out_dir, dtype=dtype, **o)

