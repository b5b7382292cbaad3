"""mlpsim: exact, reproducible experiments on small neural networks, on CPUs.

>>> import mlpsim
>>> net = mlpsim.MLP([1, 8, 8, 8, 1], activation="relu")
>>> theta = net.init(seed=7)                 # (169,) Kaiming-normal weights, zero biases
>>> run = mlpsim.train("tiny", out=None)     # doctest: +SKIP
"""
__version__ = "0.1.0"

from .config import Config, ConfigError, DataConfig, ModelConfig, TrainConfig, PRESETS, preset
from .init import INIT_SCHEMES, init_params
from .model import ACTIVATIONS, MLP
from .store import Run, RunError, load_run
from .train import Ensemble, TrainingDiverged, train

__all__ = ["MLP", "ACTIVATIONS", "INIT_SCHEMES", "init_params", "Config", "ConfigError",
           "ModelConfig", "DataConfig", "TrainConfig", "PRESETS", "preset", "train",
           "TrainingDiverged", "Ensemble", "Run", "RunError", "load_run", "__version__"]
