"""symgrad: exact chain-rule gradients of networks described in SymPy, explained and compiled.

The pipeline reads top-down (symgrad.pipeline): ``load`` a spec -> the model -> ``derive`` it once ->
a backend renders the derivation (NumPy / C code) or a report explains it -> write.
"""

from symgrad.api import derive, generate, import_generated
from symgrad.errors import SpecError
from symgrad.interop import from_torch, load_state_dict, to_state_dict
from symgrad.onnx_import import from_onnx
from symgrad.ops.activations import Activation, get_activation, register_activation
from symgrad.ops.base import Layer
from symgrad.ops.conv import Conv1d, Conv2d
from symgrad.ops.layers import register_layer
from symgrad.ops.losses import Loss, get_loss
from symgrad.ops.pool import AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d
from symgrad.ops.shape import Add, Concat, Flatten
from symgrad.ops.softmax import Softmax
from symgrad.report.layout import report
from symgrad.spec import Dense, Expect, ExpressionModel, GraphNetwork, Network, Sample, TrainConfig, load
from symgrad.version import __version__

__all__ = [
    "Activation", "Add", "AvgPool1d", "AvgPool2d", "Concat", "Conv1d", "Conv2d", "Dense", "Expect", "ExpressionModel",
    "Flatten", "GraphNetwork", "Layer", "Loss", "MaxPool1d", "MaxPool2d", "Network", "Sample", "Softmax", "SpecError",
    "TrainConfig", "__version__", "derive", "from_onnx", "from_torch", "generate", "get_activation", "get_loss", "import_generated",
    "load", "load_state_dict", "register_activation", "register_layer", "report", "to_state_dict",
]
