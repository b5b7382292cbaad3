"""Run configuration: frozen, validated dataclasses, TOML files, overrides, presets.

A configuration has three sections, ``model``, ``data`` and ``train``; the
defaults are the seed notebook's experiment (``../shared/seed/README.md``)::

    [model]
    widths = [1, 8, 8, 8, 1]
    activation = "relu"          # relu | tanh | identity | leaky_relu
    init = "kaiming_normal"      # see mlpsim.init.INIT_SCHEMES
    bias_init = "zeros"          # zeros | normal | uniform | fan_in_uniform
    [data]
    target = "piecewise"         # see mlpsim.data.TARGETS, or "file"
    n = 5000
    x_range = [-3.0, 3.0]        # default: the target's own range
    seed = 23049829048
    n_test = 0                   # held-out points (loss recorded at checkpoints)
    [train]
    optimizer = "adam"           # gd | momentum | adam
    adam_variant = "wolfram"     # wolfram (the seed's) | kingma (textbook / PyTorch)
    lr = 0.001
    steps = 15000
    checkpoint_every = 10
    instances = 5
    seed = 123456
    dtype = "float64"            # float64 | float32 (see below)

``train.dtype = "float32"`` is pure float32, as the notebook's framework
trained: parameters, data, activations, products, every sum (the gradient's
sums over samples included) and the optimizer state are float32. Only the
reported loss adds its per-chunk float32 sums in float64. (Engine version 1 had
a mixed mode with float64 sums; it was dropped with version 2, whose float32
runs at 1.6-1.7x the float64 throughput.)

Checkpoint schedule: the initial parameters (step 0), then every
``checkpoint_every`` steps, and always the last step; when ``checkpoint_every``
does not divide ``steps`` the last interval is shorter. ``checkpoint_steps``, a
list of step numbers, replaces that schedule (0 and ``steps`` are added).
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field

import numpy as np

from . import kernels
from .data import TARGETS
from .init import BIAS_INITS, INIT_SCHEMES
from .errors import is_int as _is_int
from .errors import is_number as _is_number
from .errors import unknown_name_message
from .model import ACTIVATIONS, validate_widths

OPTIMIZERS = ("gd", "momentum", "adam")
ADAM_VARIANTS = ("wolfram", "kingma")
DTYPES = ("float64", "float32")
ON_DIVERGENCE = ("stop", "continue")


class ConfigError(ValueError):
    """A configuration value or file is invalid; the message names the key."""


def read_toml_file(path, what: str) -> dict:
    """The tables of a TOML file; every way it can be unreadable is a ConfigError naming ``what``
    (e.g. "config file") and the path."""
    where = f"{what} {str(path)!r}"
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{where} is a directory") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where} is not text (TOML files are UTF-8)") from None
    except RecursionError:
        raise ConfigError(f"{where} nests too deeply to be a configuration") from None
    except PermissionError:
        raise ConfigError(f"{where} cannot be read (permission denied)") from None


def _require(cond: bool, key: str, message: str):
    if not cond:
        raise ConfigError(f"{key}: {message}")


def _choice(key: str, value, allowed):
    if value not in allowed:
        raise ConfigError(f"{key}: " + unknown_name_message("value", value, allowed))


@dataclass(frozen=True)
class ModelConfig:
    widths: tuple = (1, 8, 8, 8, 1)
    activation: str = "relu"
    init: str = "kaiming_normal"
    bias_init: str = "zeros"
    bias_scale: float = 0.0
    leaky_slope: float = 0.01
    #: path of an ``.npz`` with arrays ``mask_1 ... mask_L`` (absent = dense), or ""
    masks: str = ""
    #: path of a ``.npy`` with explicit initial parameters, (P,) or (instances, P), or ""
    init_params: str = ""
    #: 0 for dense layers, or 1-3: hidden layers wired as a mesh (see mlpsim.mesh)
    mesh_k: int = 0
    mesh_wrap: bool = False

    def __post_init__(self):
        try:
            object.__setattr__(self, "widths", validate_widths(self.widths))
        except ValueError as exc:
            raise ConfigError(f"model.widths: {exc}") from None
        _choice("model.activation", self.activation, ACTIVATIONS)
        _choice("model.init", self.init, INIT_SCHEMES)
        _choice("model.bias_init", self.bias_init, BIAS_INITS)
        for key in ("bias_scale", "leaky_slope"):
            v = getattr(self, key)
            _require(_is_number(v) and math.isfinite(v) and v >= 0, f"model.{key}",
                     f"must be a finite number >= 0, got {v!r}")
        for key in ("masks", "init_params"):
            _require(isinstance(getattr(self, key), str), f"model.{key}", "must be a path string")
        _require(_is_int(self.mesh_k) and 0 <= self.mesh_k <= 3, "model.mesh_k",
                 f"must be 0 (dense) or 1, 2, 3 (inputs per neuron), got {self.mesh_k!r}")
        _require(isinstance(self.mesh_wrap, bool), "model.mesh_wrap", f"must be true or false, got {self.mesh_wrap!r}")
        _require(not (self.mesh_k and self.masks), "model.mesh_k", "and model.masks exclude each other")
        if self.mesh_k:
            hidden = self.widths[1:-1]
            _require(len(hidden) >= 2 and len(set(hidden)) == 1 and hidden[0] >= self.mesh_k, "model.mesh_k",
                     f"a mesh needs at least two hidden layers of equal width >= k, got widths {list(self.widths)}")


@dataclass(frozen=True)
class DataConfig:
    """Training data: a named target (see :mod:`mlpsim.data`) on uniform inputs, or a file.

    ``x_range`` defaults to the target's own range. ``target = "file"`` reads
    ``path`` (.npz with x and y, or .npy / .csv columns: inputs then outputs);
    ``n`` and ``x_range`` are then not used. ``n_test`` > 0 draws a held-out set
    from the same distribution (an independent stream of ``seed``), or reads
    ``test_path`` for file data; its loss is recorded at every checkpoint.
    """

    target: str = "piecewise"
    n: int = 5000
    x_range: tuple = None
    seed: int = 23049829048
    n_test: int = 0
    path: str = ""
    test_path: str = ""
    teacher_widths: tuple = (1, 16, 16, 1)
    teacher_seed: int = 0

    def __post_init__(self):
        _choice("data.target", self.target, tuple(TARGETS) + ("file", "callable"))
        _require(_is_int(self.n) and self.n >= 1, "data.n", f"must be an integer >= 1, got {self.n!r}")
        _require(_is_int(self.n_test) and self.n_test >= 0, "data.n_test",
                 f"must be an integer >= 0, got {self.n_test!r}")
        xr = self.x_range
        if xr is None:
            xr = TARGETS[self.target].x_range if self.target in TARGETS else (-3.0, 3.0)
        _require(isinstance(xr, (list, tuple)) and len(xr) == 2 and all(_is_number(v) for v in xr)
                 and all(math.isfinite(v) for v in xr) and xr[0] < xr[1] and math.isfinite(xr[1] - xr[0]),
                 "data.x_range", f"must be two finite numbers [low, high] with low < high and a finite "
                                 f"width, got {xr!r}")
        object.__setattr__(self, "x_range", (float(xr[0]), float(xr[1])))
        _require(_is_int(self.seed) and self.seed >= 0, "data.seed",
                 f"must be an integer >= 0, got {self.seed!r}")
        _require(isinstance(self.path, str) and isinstance(self.test_path, str), "data.path",
                 "data.path and data.test_path must be path strings")
        _require(self.target != "file" or self.path, "data.path", 'is required when data.target = "file"')
        _require(self.target == "file" or not (self.path or self.test_path), "data.path",
                 f'is used only with data.target = "file" (the target is {self.target!r}); remove it')
        try:
            object.__setattr__(self, "teacher_widths", validate_widths(self.teacher_widths))
        except ValueError as exc:
            raise ConfigError(f"data.teacher_widths: {exc}") from None
        _require(_is_int(self.teacher_seed) and self.teacher_seed >= 0, "data.teacher_seed",
                 f"must be an integer >= 0, got {self.teacher_seed!r}")
        _require(self.target == "teacher" or (self.teacher_widths == DataConfig.teacher_widths
                                              and self.teacher_seed == DataConfig.teacher_seed),
                 "data.teacher_widths", f'and data.teacher_seed are used only with data.target = "teacher" '
                                        f'(the target is {self.target!r}); remove them')


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "adam"
    adam_variant: str = "wolfram"
    lr: float = 0.001
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-5
    momentum: float = 0.9
    weight_decay: float = 0.0
    steps: int = 15000
    checkpoint_every: int = 10
    checkpoint_steps: tuple = ()
    instances: int = 5
    seed: int = 123456
    dtype: str = "float64"
    on_divergence: str = "stop"

    def __post_init__(self):
        _choice("train.optimizer", self.optimizer, OPTIMIZERS)
        _choice("train.adam_variant", self.adam_variant, ADAM_VARIANTS)
        _choice("train.dtype", self.dtype, DTYPES)
        _choice("train.on_divergence", self.on_divergence, ON_DIVERGENCE)
        _require(_is_number(self.lr) and math.isfinite(self.lr) and self.lr > 0, "train.lr",
                 f"must be a finite number > 0, got {self.lr!r}")
        for key in ("beta1", "beta2", "momentum"):
            v = getattr(self, key)
            _require(_is_number(v) and 0 <= v < 1, f"train.{key}", f"must be in [0, 1), got {v!r}")
        _require(_is_number(self.eps) and math.isfinite(self.eps) and self.eps > 0, "train.eps",
                 f"must be a finite number > 0, got {self.eps!r}")
        _require(_is_number(self.weight_decay) and math.isfinite(self.weight_decay)
                 and self.weight_decay >= 0, "train.weight_decay",
                 f"must be a finite number >= 0, got {self.weight_decay!r}")
        for key in ("steps", "checkpoint_every", "instances"):
            v = getattr(self, key)
            _require(_is_int(v) and v >= 1, f"train.{key}", f"must be an integer >= 1, got {v!r}")
        _require(_is_int(self.seed) and self.seed >= 0, "train.seed",
                 f"must be an integer >= 0, got {self.seed!r}")
        cs = self.checkpoint_steps
        _require(isinstance(cs, (list, tuple)) and all(_is_int(s) for s in cs), "train.checkpoint_steps",
                 f"must be a list of integer step numbers, got {cs!r}")
        _require(all(0 <= s <= self.steps for s in cs), "train.checkpoint_steps",
                 f"every step must lie in [0, steps={self.steps}], got {list(cs)!r}")
        object.__setattr__(self, "checkpoint_steps", tuple(int(s) for s in cs))

    @property
    def optimizer_code(self) -> int:
        if self.optimizer == "gd":
            return kernels.GD
        if self.optimizer == "momentum":
            return kernels.MOMENTUM
        return kernels.ADAM_WOLFRAM if self.adam_variant == "wolfram" else kernels.ADAM_KINGMA

    def hyper(self) -> np.ndarray:
        """Hyperparameters in the order the optimizer kernel reads them."""
        h = np.zeros(6)
        h[kernels.H_LR] = self.lr
        h[kernels.H_BETA1] = self.beta1
        h[kernels.H_BETA2] = self.beta2
        h[kernels.H_EPS] = self.eps
        h[kernels.H_MOMENTUM] = self.momentum
        h[kernels.H_WEIGHT_DECAY] = self.weight_decay
        return h

    def schedule(self) -> np.ndarray:
        """The checkpoint steps, int64, strictly increasing from 0 to ``steps``."""
        if self.checkpoint_steps:
            steps = set(self.checkpoint_steps) | {0, self.steps}
        else:
            steps = set(range(0, self.steps + 1, self.checkpoint_every)) | {self.steps}
        return np.array(sorted(steps), dtype=np.int64)


SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


@dataclass(frozen=True)
class Config:
    """A complete, validated run configuration (see the module docstring)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        """Plain JSON/TOML-compatible dict with every value filled in."""
        def plain(v):
            return [plain(x) for x in v] if isinstance(v, (list, tuple)) else v
        return {name: {k: plain(v) for k, v in dataclasses.asdict(getattr(self, name)).items()}
                for name in SECTIONS}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def to_toml(self) -> str:
        """The configuration as a TOML file that :meth:`from_toml` reads back to an equal Config."""
        lines = []
        for section, table in self.to_dict().items():
            lines.append(f"[{section}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None]
            lines.append("")
        return "\n".join(lines)

    def sha256(self) -> str:
        """Hash of the canonical JSON form; two configs with equal hashes are equal."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        """Build from a nested dict; unknown sections or keys raise a ConfigError."""
        if not isinstance(d, dict):
            raise ConfigError(f"a configuration must be a table/dict, got {type(d).__name__}")
        sections = {}
        for name, value in d.items():
            if name not in SECTIONS:
                raise ConfigError(_unknown_key_message(name, SECTIONS))
            if not isinstance(value, dict):
                raise ConfigError(f"{name}: must be a table of keys, got {value!r}")
            allowed = [f.name for f in dataclasses.fields(SECTIONS[name])]
            for key in value:
                if key not in allowed:
                    raise ConfigError(_unknown_key_message(f"{name}.{key}",
                                                           [f"{name}.{a}" for a in allowed]))
            sections[name] = SECTIONS[name](**{k: _from_plain(v) for k, v in value.items()})
        return cls(**sections)

    @classmethod
    def from_toml(cls, path) -> "Config":
        """Read a TOML file; parse errors and unknown keys name the file and key."""
        d = read_toml_file(path, "config file")
        return cls.from_dict(d)

    def with_values(self, values=None, **kwargs) -> "Config":
        """A copy with keys set from Python values: ``{"train.steps": 1000}``.

        Keyword form: ``cfg.with_values(train__steps=1000, model__widths=[1, 4, 1])``.
        Changing ``data.target`` without ``data.x_range`` takes the new
        target's default range. Every key is checked; unknown ones are refused
        with the closest known key named.
        """
        if isinstance(values, str):
            raise ConfigError(f"with_values takes a dict such as {{'train.steps': 1000}}; for a "
                              f"'section.key=value' string ({values!r}) use with_overrides")
        values = dict(values or {})
        values.update({k.replace("__", "."): v for k, v in kwargs.items()})
        d = self.to_dict()
        if "data.target" in values and "data.x_range" not in values:
            d["data"]["x_range"] = None  # a new target brings its own default range
        for key, value in values.items():
            parts = str(key).split(".")
            if len(parts) != 2 or not all(parts):
                raise ConfigError(f"key {key!r} must be section.key, e.g. train.lr")
            section, name = parts
            if section not in SECTIONS:
                raise ConfigError(_unknown_key_message(section, SECTIONS))
            d[section][name] = value
        return Config.from_dict(d)

    def with_overrides(self, assignments) -> "Config":
        """Apply ``"section.key=value"`` strings (the CLI's ``--set``); values are TOML.

        A bare word that is not TOML is taken as a string, so
        ``train.optimizer=gd`` works as well as ``train.optimizer="gd"``; any
        other text that is not valid TOML (``[1, 32, 1``) is an error.
        """
        if assignments is None:
            assignments = []
        elif isinstance(assignments, str):  # one assignment, not its characters
            assignments = [assignments]
        elif isinstance(assignments, dict):
            raise ConfigError("overrides are 'section.key=value' strings; for a dict of values use "
                              "Config.with_values(...)")
        values = {}
        for text in assignments:
            if not isinstance(text, str) or "=" not in text:
                raise ConfigError(f"override {text!r} must look like section.key=value")
            key, raw = text.split("=", 1)
            key = key.strip()
            values[key] = parse_value(raw, key, text_field=_is_text_field(key))
        return self.with_values(values)

    def replace(self, **sections) -> "Config":
        """A copy with whole sections or ``section={key: value}`` updates."""
        d = self.to_dict()
        for name, update in sections.items():
            if name not in SECTIONS:
                raise ConfigError(_unknown_key_message(name, SECTIONS))
            update = dataclasses.asdict(update) if dataclasses.is_dataclass(update) else dict(update)
            if name == "data" and "target" in update and "x_range" not in update:
                update["x_range"] = None  # a new target brings its own default range
            d[name].update(update)
        return Config.from_dict(d)


def _is_text_field(key: str) -> bool:
    """Is ``section.key`` a text setting (a name or a path)?"""
    section, _, name = key.partition(".")
    cls = SECTIONS.get(section)
    fields = {f.name: f for f in dataclasses.fields(cls)} if cls else {}
    return name in fields and isinstance(fields[name].default, str)


def parse_value(raw: str, key: str = "value", text_field: bool = False):
    """Parse one override value as TOML. Text that is not TOML is taken as a string for a text
    setting (``data.path=/data/x.npz``) or when it is a bare word (``train.optimizer=gd``);
    anything else that is not TOML (``[1, 32, 1``) is an error naming the key."""
    import re
    raw = raw.strip()
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except RecursionError:
        raise ConfigError(f"{key}: the value nests too deeply") from None
    except tomllib.TOMLDecodeError as exc:
        if text_field or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", raw):
            return raw
        detail = str(exc).replace("(at line 1, column", "(at column")
        raise ConfigError(f"{key}: {raw!r} is not a valid TOML value ({detail}); write strings in quotes, "
                          "lists as [1, 2, 3]") from None


def _toml_value(v) -> str:
    """One value as TOML text (the scalars, strings and lists that configs hold)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def _from_plain(v):
    """A configuration value as plain Python: lists (and numpy arrays) as tuples, numpy scalars
    as int/float/bool/str (np.int64(20) passes every check, then breaks the JSON and the hash)."""
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, (list, tuple)):
        return tuple(_from_plain(x) for x in v)
    return v.item() if isinstance(v, np.generic) else v


def _unknown_key_message(key: str, allowed) -> str:
    allowed = list(allowed)
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(allowed)}"
    return f"unknown key {key!r}{hint}"


#: Named configurations. ``seed`` is the notebook's experiment; ``tiny`` is a
#: seconds-long version for smoke tests and demos; ``wide`` a 1-64-64-64-1
#: network (about a minute) where rank and spectral measures have room to move;
#: ``mesh`` six hidden layers of 8 wired as a mesh with k = 3 (see mlpsim.mesh).
PRESETS = {
    "seed": Config(),
    "tiny": Config(data=DataConfig(n=512),
                   train=TrainConfig(steps=200, checkpoint_every=20, instances=3)),
    "wide": Config(model=ModelConfig(widths=(1, 64, 64, 64, 1)), data=DataConfig(n=1000),
                   train=TrainConfig(steps=5000, checkpoint_every=50, instances=5)),
    "mesh": Config(model=ModelConfig(widths=(1, 8, 8, 8, 8, 8, 8, 1), mesh_k=3), data=DataConfig(n=2000),
                   train=TrainConfig(steps=5000, checkpoint_every=50, instances=3)),
}


def preset(name: str) -> Config:
    """The preset configuration ``name`` (see :data:`PRESETS`)."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ConfigError(unknown_name_message("preset", name, PRESETS))
    return PRESETS[name]
