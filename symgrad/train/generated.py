"""A model's generated NumPy module, rendered in memory and run as a module (no file written).

The trainer steps it and the layer-level report reads its loss and gradients, so both use the very
code ``symgrad generate`` writes.
"""

import linecache
import types

from symgrad.backends.numpy.codegen import numpy_module


def numpy_module_object(model, dtype="float64"):
    """The generated NumPy module of model, executed from its source text."""
    text = numpy_module(model, dtype=dtype)
    filename = f"<symgrad generated {model.name}>"
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)  # tracebacks show the lines
    module = types.ModuleType(f"_symgrad_generated_{model.name}")
    module.__file__ = filename
    exec(compile(text, filename, "exec"), module.__dict__)
    return module
