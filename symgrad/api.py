"""The Python entry points: derive a model, generate code for it, import what was generated."""

import importlib.util
import sys
from pathlib import Path

from symgrad.core import derive as _derive
from symgrad.pipeline import generate
from symgrad.report.layout import latex_summary, report
from symgrad.spec import as_model

__all__ = ["Derivation", "derive", "generate", "import_generated"]


class Derivation(_derive.Derivation):
    """A model's derivation that Jupyter displays as its step-by-step report."""

    def _repr_markdown_(self):
        """Jupyter: the step-by-step report as Markdown."""
        return report(self.model, "md")

    def _repr_html_(self):
        """Jupyter: the step-by-step report as one HTML document (MathML)."""
        return report(self.model, "html")

    def _repr_latex_(self):
        """Jupyter (LaTeX front ends): every gradient with its value and finite-difference check."""
        return latex_summary(self.model)


def derive(spec):
    """Derive the backward programs of a spec (path or model object), once per model object."""
    return _derive.derive(as_model(spec), Derivation)


def import_generated(name, out_dir="generated"):
    """Import a generated module by name from ``out_dir`` (a fresh import each call)."""
    path = Path(out_dir) / f"{name}.py"
    if not path.exists():
        path = Path(out_dir) / name / "__init__.py"
    if not path.exists():
        raise FileNotFoundError(f"no generated module {name!r} in {out_dir}")
    mod_name = f"_symgrad_generated_{name}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    spec.loader.exec_module(module)
    return module
