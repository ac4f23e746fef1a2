"""What a model is (model classes, settings) and how one is read from TOML (loader)."""

from symgrad.spec.config import Expect, Sample, TrainConfig
from symgrad.spec.loader import as_model, from_dict, load
from symgrad.spec.model import Dense, ExpressionModel, Network, Param

__all__ = ["Dense", "Expect", "ExpressionModel", "Network", "Param", "Sample", "TrainConfig", "as_model", "from_dict", "load"]
