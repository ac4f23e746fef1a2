"""symgrad: exact chain-rule gradients of networks described in SymPy, explained and compiled.

The pipeline reads top-down: ``load`` a spec -> build its forward ``program`` -> ``derive`` the
backward program -> explain it (reports) or print it (NumPy / C code) -> render templates -> write.
"""

__version__ = "0.1.0"

from .activations import Activation, get_activation  # noqa: E402
from .api import derive, generate, import_generated  # noqa: E402
from .errors import SpecError  # noqa: E402
from .losses import Loss, get_loss  # noqa: E402
from .report import report  # noqa: E402
from .spec import Dense, Expect, ExpressionModel, Network, Sample, TrainConfig, load  # noqa: E402

__all__ = [
    "Activation", "Dense", "Expect", "ExpressionModel", "Loss", "Network", "Sample", "SpecError", "TrainConfig",
    "derive", "generate", "get_activation", "get_loss", "import_generated", "load", "report",
]
