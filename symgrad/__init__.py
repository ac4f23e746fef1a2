"""symgrad: exact chain-rule gradients of networks described in SymPy, explained and compiled.

The pipeline reads top-down: ``load`` a spec -> build its forward ``program`` -> ``derive`` the
backward program -> explain it (reports) or print it (NumPy / C code) -> render templates -> write.
"""

from symgrad.api import derive, generate, import_generated
from symgrad.errors import SpecError
from symgrad.ops.activations import Activation, get_activation
from symgrad.ops.losses import Loss, get_loss
from symgrad.report.layout import report
from symgrad.spec import Dense, Expect, ExpressionModel, Network, Sample, TrainConfig, load
from symgrad.version import __version__

__all__ = [
    "Activation", "Dense", "Expect", "ExpressionModel", "Loss", "Network", "Sample", "SpecError", "TrainConfig",
    "__version__", "derive", "generate", "get_activation", "get_loss", "import_generated", "load", "report",
]
