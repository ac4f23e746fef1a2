"""The driver: load -> model -> derivation (once) -> backend.render -> write.

Every entry point (the Python API, the command line) generates code through :func:`generate`; the
same :class:`~symgrad.core.derive.Derivation` is handed to the backend, and reports and training
read the same object for the same model.
"""

from symgrad.backends.c.backend import CBackend
from symgrad.backends.numpy.backend import NumpyBackend
from symgrad.core.derive import derive
from symgrad.spec import as_model

BACKENDS = {b.name: b for b in (NumpyBackend(), CBackend())}


def backend(target):
    """The backend for a target name (numpy or c)."""
    if target not in BACKENDS:
        raise ValueError(f"unknown target {target!r} ({' or '.join(BACKENDS)})")
    return BACKENDS[target]


def generate(spec, target="numpy", out_dir="generated", dtype="float64", **options):
    """Write the generated code for ``spec`` (a path or a model) into ``out_dir``; the written paths."""
    chosen = backend(target)
    chosen.check(dtype, options)
    return chosen.write(derive(as_model(spec)), out_dir, dtype=dtype, **options)


def render(spec, target="numpy", dtype="float64", **options):
    """{file name: text} that :func:`generate` would write, without writing."""
    return backend(target).render(derive(as_model(spec)), dtype=dtype, **options)
