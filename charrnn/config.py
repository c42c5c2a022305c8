"""Typed settings for data, model, training and sampling; YAML loading with strict validation.

Precedence is defaults < YAML file < overrides (`section.key=value`, the CLI's `--set`). Every
problem is a `ConfigError` whose message is one sentence naming the key and the fix, so the CLI
can print it on one line and exit with status 2.

The resolved config round-trips through `config_to_dict` / `config_from_dict` (checkpoints store it
as JSON) and through `save_config` / `load_config` (YAML).
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import difflib
import inspect
import io
import math
import re
import sys
import tokenize
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from charrnn import engines, optim
from charrnn.errors import UsageError
from charrnn.ranges import AT_LEAST_1, NON_NEGATIVE, POSITIVE, UNIT_OPEN_RIGHT, Range
from charrnn.fileio import write_atomically
from charrnn.nn.cells import CELLS, has_recurrent_weights, nonlinearities_of


class ConfigError(UsageError, ValueError):
    """A bad config file, key or value; the message is one sentence naming the key and the fix."""


@dataclass
class DataConfig:
    # a UTF-8 text file, '-' for stdin, a folder (its text files, recursively, in sorted
    # order), a glob such as lyrics/*.txt, or a list of these
    path: str | list = "data/shakespeare.txt"
    val_fraction: float = 0.1  # the last fraction is validation (as nanoGPT, so figures compare)
    batching: str = "contiguous"  # contiguous: char-rnn streams, state carried; random: windows
    # contiguous: the chance, per batch and stream, that the carried state is zeroed. Sampling
    # and evaluation start from a zero state; a model that only met one at epoch starts
    # predicts its first few characters worse than a unigram model (0 = reset at epochs only)
    reset_prob: float = 0.01
    # none: one stream of text | lines: each line is a document (names, titles) | blank:
    # documents separated by empty lines. Documents end with a reserved symbol, training starts
    # each from a zero state, samples are one document each (docs/documents.md)
    documents: str = "none"
    skip_invalid: bool = False  # skip files that are not UTF-8 (with a warning) instead of failing


@dataclass
class ModelConfig:
    # auto: layers, hidden_size and dropout chosen for the run's budget and corpus from a measured
    # table, among the sizes with those given here or by --set (docs/model-size.md); null: the
    # sizes below. A config that gives no size and a train.max_minutes run is auto by default
    size: str | None = None
    cell: str = "lstm"  # rnn | gru | lstm | mingru | minlstm (charrnn/nn/cells)
    nonlinearity: str = "tanh"  # rnn only: tanh | relu (relu + identity init = IRNN)
    layers: int = 2  # stacked recurrent layers: more depth, more time per step
    hidden_size: int = 256  # units per layer: capacity grows ~ hidden_size^2 in params and time
    embed_size: int = 64  # character embedding width fed to the first layer
    dropout: float = 0.0  # between layers and before the decoder; in [0, 1); helps small corpora
    init: str = "default"  # default (PyTorch's uniform) | orthogonal | identity (IRNN weight_hh)
    identity_scale: float = 1.0  # for init: identity, weight_hh = scale * I (< 1 is more stable)
    # added to the LSTM forget gate's bias at init: 0 is PyTorch's, and learns faster here than
    # Jozefowicz et al.'s 1 (measured: docs/defaults.md)
    forget_bias: float = 0.0
    # layers 1.. add their input to their output, x + dropout(cell(x)) (docs/min-cells.md)
    residual: bool = False
    # > 0: after each layer a block x + W2 relu(W1 x + b1) + b2, W1 [ffn_mult*H, H]; 0 = none
    ffn_mult: int = 0


@dataclass
class TrainConfig:
    batch_size: int = 32  # parallel streams: larger is faster per char, fewer updates per epoch
    seq_len: int = 64  # truncated-BPTT length: longer sees more context, costs memory and time
    optimizer: str = "adam"  # sgd | adagrad | rmsprop | adam | adamw
    lr: float = 0.004  # peak learning rate (after warmup); measured with auto: docs/defaults.md
    momentum: float = 0.0  # sgd only: heavy-ball momentum in [0, 1)
    beta1: float = 0.9  # adam/adamw: decay of the first-moment average
    beta2: float = 0.999  # adam/adamw: decay of the second-moment average
    eps: float = 1e-8  # adagrad/rmsprop/adam: added to the denominator for stability
    alpha: float = 0.99  # rmsprop: decay of the squared-gradient average
    weight_decay: float = 0.0  # L2 penalty (adamw: decoupled decay); 0 disables
    # auto (cosine when the run has a limit, else constant) | constant | step (x decay_rate every
    # decay_every epochs) | cosine | linear (both down to min_lr at the run's limit, whichever
    # of max_steps, max_epochs, max_minutes comes first) | plateau (x plateau_factor on a stall)
    lr_schedule: str = "auto"
    warmup_steps: int = 100  # linear warmup to lr, at most 1/10 of the run (docs/defaults.md)
    min_lr: float = 0.0  # cosine, linear: the floor the rate decays to
    plateau_factor: float = 0.5  # plateau: multiply the rate by this when validation stalls
    plateau_patience: int = 2  # plateau: evaluations without a new best before lowering the rate
    patience: int | None = None  # stop after this many evaluations without a new best (null: never)
    decay_rate: float = 0.97  # step: multiply the rate by this every decay_every epochs
    decay_every: int = 1  # step: epochs between decays
    clip: str = "norm"  # norm (global gradient norm) | value (element-wise) | none
    clip_value: float = 5.0  # the norm or value threshold for clip
    max_steps: int | None = None  # stop after this many updates (first of max_* wins)
    max_epochs: int | None = None  # stop after this many passes over the training text
    max_minutes: float | None = None  # training time, final evaluation included (resume: what is left)
    eval_every: int = 200  # steps between validation passes (and best-checkpoint updates)
    eval_chars: int | None = None  # cap on validation characters per evaluation (null = all)
    checkpoint_every: int = 200  # steps between latest-checkpoint writes
    sample_every: int = 0  # > 0: print a short sample at each evaluation; 0 = off
    sample_chars: int = 200  # length of that sample
    out_dir: str = "runs/shakespeare"  # where checkpoints and logs go
    seed: int = 1337  # seeds init, dropout and batching, so a run is reproducible
    # workers per training step, each taking a share of the batch's streams on its own core
    # (processes on Linux, threads elsewhere; null = one per CPU core, at most 4, at least 8
    # streams each); 1 = all in this process with a multi-threaded BLAS
    threads: int | None = None
    log_every: int = 10  # steps between log lines / progress-bar updates
    dtype: str = "float32"  # float32 (fast) | float64 (exact, for gradient checks)
    engine: str = "numpy"  # where the steps run: a name in charrnn/engines/__init__.py's ENGINES
    # train.engine torch only: auto (cuda when PyTorch sees one, else cpu) | cpu | cuda | cuda:N | mps
    device: str = "auto"


@dataclass
class SampleConfig:
    """Sampling settings: the defaults of `charrnn sample` for this run's checkpoints (its options
    override them) and of the trainer's periodic sample (whose length is train.sample_chars)."""

    length: int = 500  # characters to generate after the prime
    temperature: float = 1.0  # > 0: below 1 is safer and more repetitive, above 1 wilder
    top_k: int | None = None  # keep only the k most likely characters (null = all)
    top_p: float | None = None  # nucleus: smallest set with this much probability, in (0, 1]
    prime: str = ""  # text fed to the model before sampling
    seed: int | None = None  # null = different text each run


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    # the section.key names a config file or an override gave (model.size auto keeps those)
    given: frozenset = field(default=frozenset(), compare=False, repr=False)


SECTIONS = ("data", "model", "train", "sample")

DEVICE_TEXT = re.compile(r"auto|cpu|mps|cuda(:\d+)?")     # train.device (a torch.device name)

# Allowed values of the string fields that are choices.
CHOICES: dict[str, tuple[str, ...]] = {
    "data.batching": ("contiguous", "random"),
    "data.documents": ("none", "lines", "blank"),
    "model.size": ("auto",),
    "model.cell": tuple(CELLS),
    "model.nonlinearity": ("tanh", "relu"),
    "model.init": ("default", "orthogonal", "identity"),
    "train.optimizer": tuple(optim.OPTIMIZERS),
    "train.lr_schedule": ("auto", "constant", "step", "cosine", "linear", "plateau"),
    "train.clip": ("norm", "value", "none"),
    "train.dtype": ("float32", "float64"),
    "train.engine": engines.NAMES,
}

# Numeric ranges; a null Optional value is never range-checked.
RANGES: dict[str, Range] = {
    "data.val_fraction": Range(0, 1, lo_open=True, hi_open=True),
    "data.reset_prob": Range(0, 1),
    "model.layers": AT_LEAST_1,
    "model.hidden_size": AT_LEAST_1,
    "model.embed_size": AT_LEAST_1,
    "model.dropout": UNIT_OPEN_RIGHT,
    "model.identity_scale": POSITIVE,
    "model.ffn_mult": NON_NEGATIVE,
    "train.batch_size": AT_LEAST_1,
    "train.seq_len": AT_LEAST_1,
    **{f"train.{key}": rng for key, rng in optim.hyperparameter_ranges().items()},
    "train.warmup_steps": NON_NEGATIVE,
    "train.min_lr": NON_NEGATIVE,
    "train.plateau_factor": Range(0, 1, lo_open=True, hi_open=True),
    "train.plateau_patience": NON_NEGATIVE,
    "train.patience": AT_LEAST_1,
    "train.decay_rate": Range(0, 1, lo_open=True),
    "train.decay_every": AT_LEAST_1,
    "train.clip_value": POSITIVE,
    "train.max_steps": AT_LEAST_1,
    "train.max_epochs": AT_LEAST_1,
    "train.max_minutes": POSITIVE,
    "train.eval_every": AT_LEAST_1,
    "train.eval_chars": Range(2),  # evaluation reads one character and predicts the next
    "train.checkpoint_every": AT_LEAST_1,
    "train.sample_every": NON_NEGATIVE,
    "train.sample_chars": AT_LEAST_1,
    "train.seed": NON_NEGATIVE,
    "train.threads": AT_LEAST_1,
    "train.log_every": AT_LEAST_1,
    "sample.length": AT_LEAST_1,
    "sample.temperature": POSITIVE,
    "sample.top_k": AT_LEAST_1,
    "sample.top_p": Range(0, 1, lo_open=True),
    "sample.seed": NON_NEGATIVE,
}

# PyYAML follows YAML 1.1, which reads `1e-3` (no dot) as a string; accept it for float fields.
_FLOAT_TEXT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _show(value: Any) -> str:
    """Show a value as a user wrote it in YAML, with its kind when the kind is the problem."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (int, float)):
        return f"{value} ({'an integer' if isinstance(value, int) else 'a float'})"
    return "a mapping" if isinstance(value, dict) else f"a {type(value).__name__}"


def _section_fields(section: str) -> dict[str, dataclasses.Field]:
    cls = typing.get_type_hints(Config)[section]
    return {f.name: f for f in dataclasses.fields(cls)}


def _field_type(section: str, key: str) -> tuple[type, bool]:
    """The base type (int, float or str) of a field and whether it accepts null."""
    cls = typing.get_type_hints(Config)[section]
    hint = typing.get_type_hints(cls)[key]
    args = typing.get_args(hint)
    if type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return hint, False


def _suggest(word: str, options: Iterable[str]) -> str | None:
    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return match[0] if match else None


def _unknown_section(section: str) -> ConfigError:
    close = _suggest(section, SECTIONS)
    hint = f"did you mean '{close}'?" if close else f"valid sections are {', '.join(SECTIONS)}"
    return ConfigError(f"unknown section '{section}'; {hint}")


# Names other trainers use (nanoGPT, char-rnn, PyTorch examples) for our keys: a typo check by
# spelling alone cannot map learning_rate to lr.
ALIASES = {
    "learning_rate": "train.lr", "lr_decay": "train.decay_rate", "grad_clip": "train.clip_value",
    "max_iters": "train.max_steps", "block_size": "train.seq_len", "seq_length": "train.seq_len",
    "bptt": "train.seq_len", "batch": "train.batch_size", "num_layers": "model.layers",
    "n_layer": "model.layers", "rnn_size": "model.hidden_size", "hidden": "model.hidden_size",
    "nhid": "model.hidden_size", "emsize": "model.embed_size", "rnn_type": "model.cell",
    "model": "model.cell", "data_dir": "data.path", "input": "data.path",
}


def _unknown_key(section: str, key: str) -> ConfigError:
    """Suggest a known alias, the closest key in the section, else the key in another section."""
    if key in ALIASES:
        return ConfigError(f"unknown key '{section}.{key}'; did you mean '{ALIASES[key]}'?")
    close = _suggest(key, _section_fields(section))
    if close:
        return ConfigError(f"unknown key '{section}.{key}'; did you mean '{section}.{close}'?")
    alias = _suggest(key, ALIASES)
    if alias:
        return ConfigError(f"unknown key '{section}.{key}'; did you mean '{ALIASES[alias]}'?")
    for other in SECTIONS:
        if key in _section_fields(other):
            return ConfigError(f"unknown key '{section}.{key}'; did you mean '{other}.{key}'?")
    valid = ", ".join(_section_fields(section))
    return ConfigError(f"unknown key '{section}.{key}'; valid keys in {section} are {valid}")


def _coerce(name: str, value: Any, base: type, nullable: bool) -> Any:
    """Type-check one value against its field's type; returns the value converted (int -> float)."""
    if value is None:
        if nullable:
            return None
        raise ConfigError(f"{name} must not be null; set a value or remove the key")
    if isinstance(base, types.UnionType):          # data.path: a string or a list of them
        return _coerce_paths(name, value)
    if base is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name} must be true or false; got {_show(value)}")
    if base is int:
        # bool is a subclass of int in Python; `layers: true` is a mistake, not 1.
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{name} must be an integer; got {_show(value)}")
    if base is float:
        if isinstance(value, str) and _FLOAT_TEXT.match(value.strip()):
            value = float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number; got {value}")
            return float(value)
        raise ConfigError(f"{name} must be a number; got {_show(value)}")
    if name in CHOICES and value not in CHOICES[name]:
        options = [*CHOICES[name], *(["null"] if nullable else [])]
        listed = (f"one of {', '.join(options)}" if len(options) > 2 else " or ".join(options))
        raise ConfigError(f"{name} must be {listed}; got {_show(value)}")
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string; got {_show(value)} (quote it in YAML)")
    return value


def _coerce_paths(name: str, value: Any) -> str | list:
    """A path string, or a non-empty list of path strings (data.path)."""
    if isinstance(value, str):
        return value
    if (isinstance(value, list) and value
            and all(isinstance(v, str) and v.strip() for v in value)):
        return list(value)
    raise ConfigError(f"{name} must be a string; got {_show(value)} (quote it in YAML), or a "
                      f"non-empty list of path strings")


def _set(cfg: Config, section: str, key: str, value: Any) -> None:
    """Validate the type of one value and store it."""
    if section not in SECTIONS:
        raise _unknown_section(section)
    if key not in _section_fields(section):
        raise _unknown_key(section, key)
    base, nullable = _field_type(section, key)
    setattr(getattr(cfg, section), key, _coerce(f"{section}.{key}", value, base, nullable))
    cfg.given = cfg.given | {f"{section}.{key}"}


def _apply_mapping(cfg: Config, data: Any, source: str) -> None:
    """Apply a {section: {key: value}} mapping (from a YAML file or a dict) onto cfg."""
    if data is None:
        return
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source} must be a mapping of sections ({', '.join(SECTIONS)}); got {_show(data)}"
        )
    for section, values in data.items():
        if section not in SECTIONS:
            raise _unknown_section(str(section))
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"section '{section}' must be a mapping of key: value; got {_show(values)}")
        for key, value in values.items():
            _set(cfg, section, str(key), value)


def parse_override(text: str) -> tuple[str, str, Any]:
    """Split 'section.key=value' into (section, key, value).

    The value is parsed with yaml.safe_load (so null, 1e-3, true work), except for string fields,
    whose value is taken literally: a prime such as `ROMEO:` or `123` must stay that text
    (a nullable one, model.size, reads null, ~ or nothing as null).
    """
    name, sep, raw = text.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot or not section or not key:
        raise ConfigError(f"override {text!r} must look like section.key=value, for example train.lr=0.001")
    if section not in SECTIONS:
        raise _unknown_section(section)
    if key not in _section_fields(section):
        raise _unknown_key(section, key)
    base, nullable = _field_type(section, key)
    if base is str and nullable and raw.strip().lower() in ("", "null", "~"):    # model.size=null
        return section, key, None
    if base is str or isinstance(base, types.UnionType):   # data.path too: one path, literally
        return section, key, raw
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"override {text!r} has a value that is not valid YAML") from None
    return section, key, value


def validate_config(cfg: Config) -> Config:
    """Check ranges and cross-field rules of an already type-checked config; returns it."""
    for name, rng in RANGES.items():
        section, key = name.split(".")
        value = getattr(getattr(cfg, section), key)
        if value is not None and not rng.contains(value):
            raise ConfigError(f"{name} must be {rng.describe()}; got {value}")
    if cfg.train.min_lr > cfg.train.lr:
        raise ConfigError(
            f"train.min_lr ({cfg.train.min_lr}) must not exceed train.lr ({cfg.train.lr})"
        )
    t = cfg.train
    if (t.lr_schedule in ("cosine", "linear")
            and t.max_steps is None and t.max_epochs is None and t.max_minutes is None):
        raise ConfigError(f"train.lr_schedule {t.lr_schedule} decays to train.min_lr at the run's "
                          f"limit; set train.max_steps, max_epochs or max_minutes (or use auto)")
    _check_cell_options(cfg.model)
    if not DEVICE_TEXT.fullmatch(cfg.train.device):
        raise ConfigError(f"train.device must be auto, cpu, cuda, cuda:N or mps; got "
                          f"{cfg.train.device!r}")
    if not cfg.train.out_dir.strip():
        raise ConfigError("train.out_dir must not be empty; set it to the folder for the run's "
                          "checkpoints and logs, for example runs/mytext")
    return cfg


def _check_cell_options(model) -> None:
    """Refuse a model option that the chosen cell would silently ignore."""
    cell = CELLS[model.cell]
    if model.nonlinearity not in nonlinearities_of(cell):
        raise ConfigError(f"model.nonlinearity {model.nonlinearity} is for the rnn cell only; "
                          f"{model.cell} has its own fixed activations (remove the setting)")
    if model.init != "default" and not has_recurrent_weights(cell):
        raise ConfigError(f"model.init {model.init} sets weight_hh, which {model.cell} does not "
                          f"have; use model.init default")


def _ignored_cell_options(d: dict) -> dict:
    """A stored config with the options older versions accepted but ignored reset (so their
    checkpoints still load): nonlinearity and init of a cell they do not apply to."""
    model = dict(d.get("model") or {})
    cell = CELLS.get(model.get("cell", ModelConfig.cell))
    if cell is None:
        return d
    if model.get("nonlinearity") not in nonlinearities_of(cell):
        model["nonlinearity"] = "tanh"
    if not has_recurrent_weights(cell):
        model["init"] = "default"
    return {**d, "model": model}


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""


def _mapping_without_duplicates(loader, node, deep=False):
    first_line = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            continue                     # not a setting name: the mapping check reports it
        if key in first_line:
            raise ConfigError(f"'{key}' is given twice (lines {first_line[key]} and {line}); "
                              f"keep one")
        first_line[key] = line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                              _mapping_without_duplicates)


def _read_yaml(path: str) -> Any:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ConfigError(f"config file '{path}' does not exist; check the path") from None
    except IsADirectoryError:
        raise ConfigError(f"config file '{path}' is a directory, not a YAML file") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file '{path}': {e.strerror or e}") from None
    try:
        return yaml.load(raw.decode("utf-8"), Loader=_StrictLoader)
    except ConfigError as e:
        raise ConfigError(f"config file '{path}': {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file '{path}' is not valid UTF-8 (byte offset {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "syntax error"
        raise ConfigError(f"config file '{path}' is not valid YAML: {problem}{where}") from None


def load_config(path: str | None, overrides: Iterable[str] = ()) -> Config:
    """Defaults < the YAML file at `path` (None = no file) < `section.key=value` overrides."""
    cfg = Config()
    if path is not None:
        _apply_mapping(cfg, _read_yaml(path), f"config file '{path}'")
    return apply_overrides(cfg, overrides)


def apply_overrides(cfg: Config, overrides: Iterable[str]) -> Config:
    """A validated copy of cfg with `section.key=value` overrides (the CLI's --set) on top."""
    cfg = copy.deepcopy(cfg)
    for text in overrides:
        section, key, value = parse_override(text)
        _set(cfg, section, key, value)
    return validate_config(cfg)


def config_to_dict(cfg: Config) -> dict[str, dict[str, Any]]:
    """A plain nested dict (JSON/YAML-safe: str, int, float, None) of the sections."""
    return {section: dataclasses.asdict(getattr(cfg, section)) for section in SECTIONS}


def config_from_dict(d: dict[str, Any]) -> Config:
    """Rebuild and validate a config from `config_to_dict` output; missing keys take defaults."""
    cfg = Config()
    _apply_mapping(cfg, _ignored_cell_options(d), "the stored config")
    return validate_config(cfg)


def config_yaml(cfg: Config) -> str:
    """The resolved config as YAML text (what save_config writes)."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True)


def save_config(cfg: Config, path: str) -> None:
    """Write the resolved config as YAML, atomically (temp file in the same folder, then rename)."""
    write_atomically(path, config_yaml(cfg).encode("utf-8"))


# -- the starter config of `charrnn init`: every field with its comment from this file --------

STARTER_HEADER = """\
# A charrnn config: every setting with its default and what it does. Keep the lines you
# change and delete the rest (a missing key takes its default). Train with:
#   charrnn train CONFIG.yaml                  (or, on another text: --data my.txt)
"""


def field_comments() -> dict[str, tuple[list[str], list[str]]]:
    """{'section.key': (comment lines above the field, its trailing comment)} and
    {'section': (the section class's docstring lines, [])}, read from this module's source
    with ast and tokenize, so the starter config says what the source says. {} without source."""
    try:
        source = inspect.getsource(sys.modules[__name__])
    except (OSError, TypeError):        # installed without its .py files: no comments
        return {}
    comments = {tok.start[0]: (tok.string[1:].strip(), tok.line.strip().startswith("#"))
                for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT}
    classes = {node.name: node for node in ast.parse(source).body if isinstance(node, ast.ClassDef)}
    found = {}
    for section in SECTIONS:
        node = classes[typing.get_type_hints(Config)[section].__name__]
        doc = ast.get_docstring(node)
        found[section] = (doc.splitlines() if doc else [], [])
        for item in node.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                found[f"{section}.{item.target.id}"] = _comments_of(item, comments)
    return found


def _comments_of(node: ast.AST, comments: dict) -> tuple[list[str], list[str]]:
    """The whole-line comments right above `node` and the comment at the end of its line."""
    above, line = [], node.lineno - 1
    while line in comments and comments[line][1]:
        above.insert(0, comments[line][0])
        line -= 1
    end = comments.get(node.end_lineno)
    return above, [end[0]] if end and not end[1] else []


def _yaml_value(value: Any) -> str:
    """One value as YAML writes it inline (null, 0.1, 1.0e-08, '', text)."""
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True,
                          width=1000).removesuffix("\n...\n").strip()


def starter_config(cfg: Config | None = None) -> str:
    """The YAML of `charrnn init`: every field of cfg (default: the defaults), each with its
    comment from this file; load_config reads it back as the same config."""
    cfg = cfg or Config()
    notes = field_comments()
    lines = [STARTER_HEADER.rstrip("\n")]
    for section in SECTIONS:
        doc = notes.get(section, ([], []))[0]
        lines += ["", *(f"# {d}" for d in doc), f"{section}:"]
        for key, value in config_to_dict(cfg)[section].items():
            above, end = notes.get(f"{section}.{key}", ([], []))
            lines += [f"  # {c}" for c in above]
            entry = f"  {key}: {_yaml_value(value)}"
            lines.append(f"{entry:<34} # {end[0]}" if end else entry)
    return "\n".join(lines) + "\n"
