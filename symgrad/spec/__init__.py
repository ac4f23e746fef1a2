"""What a model is (model classes, settings) and how one is read from TOML (loader)."""

from symgrad.ops.dense import Dense, Param
from symgrad.spec.config import Expect, Sample, TrainConfig
from symgrad.spec.graph import GraphNetwork
from symgrad.spec.loader import as_model, from_dict, load
from symgrad.spec.model import ExpressionModel, Network

__all__ = [
    "Dense", "Expect", "ExpressionModel", "GraphNetwork", "Network", "Param", "Sample", "TrainConfig", "as_model", "from_dict",
    "load",
]
