"""mlpsim: exact, reproducible experiments on small neural networks, on CPUs.

>>> import mlpsim
>>> net = mlpsim.MLP([1, 8, 8, 8, 1], activation="relu")
>>> theta = net.init(seed=7)                 # (169,) Kaiming-normal weights, zero biases
>>> run = mlpsim.train("tiny", out=None)     # doctest: +SKIP

The names below are imported on first use (PEP 562), so that ``import
mlpsim`` and the command line start quickly and a Ctrl-C during start-up is
handled like any other.
"""
import importlib

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS = {
    "MLP": "model", "ACTIVATIONS": "model", "INIT_SCHEMES": "init", "init_params": "init",
    "Config": "config", "ConfigError": "config", "ModelConfig": "config", "DataConfig": "config",
    "TrainConfig": "config", "PRESETS": "config", "preset": "config",
    "train": "training", "TrainingDiverged": "training", "Ensemble": "training",
    "Run": "store", "RunError": "store", "load_run": "store",
}

__all__ = list(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mlpsim' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
