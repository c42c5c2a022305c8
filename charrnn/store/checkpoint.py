"""The one checkpoint format (version 1): a .safetensors file, written atomically.

tensors:  model parameters under PyTorch's names (embedding.weight, rnn.weight_ih_l0, ...);
          optimizer slots as optim.<slot>.<parameter name> (optim.exp_avg.rnn.weight_hh_l0);
          the carried hidden state of truncated BPTT as carry.<state> ([L, B, H] each, one per
          name in the cell's STATE: carry.h, and carry.c for the LSTM).
metadata: format = "charrnn/1"; charrnn = JSON {version, config, vocab, [eod,] train_state,
          created, checksums} (eod: the vocabulary's end-of-document symbol, only in documents
          mode), train_state as TrainState below describes it; checksums = JSON
          {"algorithm": "crc32", "charrnn": crc of the charrnn text, "tensors": {name: [dtype,
          shape, crc of its bytes]}} (crc: zlib.crc32 as 8 hex digits). The charrnn JSON's
          "checksums": "crc32" says the record was written, so a file that lost it is refused.

Loading parses only the safetensors header and raw arrays (never pickle, never code), checks the
format tag, then the checksums (a file written before they existed has none and loads
unverified), then every name, shape and dtype against the model the stored config describes, and
turns anything wrong into one CheckpointError sentence. Older charrnn versions read new files:
they ignore the checksums metadata key and the charrnn JSON's checksums field.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np

from charrnn import __version__
from charrnn.errors import CharrnnError
from charrnn.config import Config, ConfigError, config_from_dict, config_to_dict
from charrnn.fileio import write_atomically
from charrnn.nn import cells
from charrnn.nn.model import CharRNN, parameter_shapes
from charrnn.store.vocab import Vocab

FORMAT = "charrnn/1"
FORMAT_NAME, FORMAT_VERSION = FORMAT.split("/")
OPTIM_PREFIX = "optim."
CARRY_PREFIX = "carry."
CHECKSUMS = "checksums"          # the metadata key of the checksum record (absent in older files)
ALGORITHM = "crc32"              # catches any change within 4 consecutive bytes, at memory speed
# the checkpoints of a run folder, as charrnn train names them
RUN_CHECKPOINTS = ("last.safetensors", "best.safetensors")


class CheckpointError(CharrnnError):
    """A checkpoint that cannot be read or used; the message is one sentence for the user."""


class CorruptCheckpoint(CheckpointError):
    """A checkpoint whose bytes changed after it was written: cut short, unparseable, or not
    matching its checksums. The message names the run folder's other checkpoint, if any."""


def nonfinite_tensor(tensors) -> str | None:
    """The name of the first tensor of `tensors` (name -> array) holding NaN or inf, or None."""
    for name, value in tensors:
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            return name
    return None


@dataclass
class Progress:
    """Where training stands."""

    step: int = 0                 # updates done
    epoch: int = 0                # completed passes over the training text
    position: int = 0             # index of the next batch within the epoch
    chars: int = 0                # training characters seen
    best_val_loss: float = math.inf
    last_val_loss: float | None = None
    lr: float = 0.0               # the rate of the last update
    first_loss: float | None = None  # the run's first training loss: the divergence rule's base
    exploded_steps: int = 0       # steps in a row whose loss was over the divergence ceiling
    horizon: int | None = None    # the step where a decaying schedule ends (train/lr.py)
    evals_since_best: int = 0     # evaluations since best_val_loss last improved (patience)
    lr_scale: float = 1.0         # the plateau schedule's factor on the rate so far
    plateau_bad: int = 0          # plateau: evaluations without a new best since the last cut
    # the budget of a max_minutes run (train/budget.py; older checkpoints: these defaults)
    seconds: float = 0.0          # training time spent since the run's limits were last set
    timed_steps: int = 0          # steps timed since the horizon was last estimated
    timed_seconds: float = 0.0    # the seconds those steps took
    step_seconds: float | None = None   # seconds per step at the last estimate
    eval_seconds: float | None = None   # the last evaluation (with its best-checkpoint write)
    save_seconds: float | None = None   # the last write of last.safetensors
    horizon_checks: int = 0       # train/budget.py's CHECKS the horizon was estimated again at
    eval_timed: bool = False      # the horizon was estimated again after the first evaluation
    horizon_anchor: list | None = None  # [step, fraction of the schedule] where the horizon
                                        # last moved (None: the schedule runs from its warmup)
    horizon_fixed: bool = False   # never estimated again: a horizon saved before these figures


@dataclass
class TrainState:
    """Everything a resumed run needs beyond the weights, optimizer slots and carried state:
    the checkpoint's `train_state`, written by to_dict and read by from_dict only."""

    progress: Progress
    optim: dict                   # the optimizer's scalars: {"step": updates applied}
    rng: dict                     # bit-generator states: {"dropout": ..., "batch": ...}
    workers: int | None = None    # worker processes of the step (None: an older checkpoint)
    corpus: dict | None = None    # {"chars", "crc32"} of the training ids (None: older)
    batch_order: int | None = None  # version of the batchers' order (None: before version 2)

    def to_dict(self) -> dict:
        progress = asdict(self.progress)
        if not math.isfinite(progress["best_val_loss"]):
            progress["best_val_loss"] = 1e308          # JSON has no infinity
        return {"progress": progress, "optim": self.optim, "rng": self.rng,
                "workers": self.workers, "corpus": self.corpus, "batch_order": self.batch_order}

    @classmethod
    def from_dict(cls, d: dict) -> TrainState:
        """ValueError (naming what is missing or wrong) for an incomplete train_state."""
        try:
            progress = Progress(**d["progress"])
            # a horizon from before the budget's figures were saved stays where it was: the
            # time its run spent is unknown
            progress.horizon_fixed = progress.horizon_fixed or (
                "seconds" not in d["progress"] and progress.horizon is not None)
            optim, rng = d["optim"], d["rng"]
            rng["dropout"], rng["batch"]
        except (KeyError, TypeError) as e:
            raise ValueError(str(e)) from None
        workers = d.get("workers")
        corpus, order = d.get("corpus"), d.get("batch_order")
        return cls(progress, optim, rng,
                   workers if isinstance(workers, int) and workers >= 1 else None,
                   corpus if isinstance(corpus, dict) else None,
                   order if isinstance(order, int) else None)


@dataclass
class Checkpoint:
    config: Config
    vocab: Vocab
    params: dict[str, np.ndarray]
    optim: dict[str, np.ndarray] = field(default_factory=dict)   # optim.<slot>.<name> tensors
    carry: tuple = ()                                            # carried TBPTT state, or ()
    train_state: dict = field(default_factory=dict)
    version: str = __version__
    created: str = ""
    verified: bool = False        # its checksums were checked (False: an older file without them)

    def build_model(self) -> CharRNN:
        """A CharRNN with the stored architecture and weights."""
        dtype = np.dtype(self.config.train.dtype)
        model = CharRNN(len(self.vocab), self.config.model, dtype=dtype, seed=0)
        model.params.copy_from(self.params)
        return model


def save_checkpoint(path: str, model: CharRNN, vocab: Vocab, config: Config,
                    optim_tensors: dict[str, np.ndarray] | None = None,
                    train_state: dict | None = None, carry: tuple = ()) -> None:
    """Write a checkpoint to `path` atomically: temp file in the same folder, fsync, rename."""
    write_checkpoint(path, dict(model.params.items()), vocab, config, optim_tensors, train_state,
                     carry)


def write_checkpoint(path: str, params: dict[str, np.ndarray], vocab: Vocab, config: Config,
                     optim_tensors: dict[str, np.ndarray] | None = None,
                     train_state: dict | None = None, carry: tuple = ()) -> None:
    """save_checkpoint from arrays: params {name: array}, optim_tensors
    {"optim.<slot>.<name>": array}, carry one array per name in the cell's STATE (as an
    engine hands them out: charrnn/engines/base.py)."""
    from safetensors.numpy import save

    tensors = {name: np.ascontiguousarray(v) for name, v in params.items()}
    for name, value in (optim_tensors or {}).items():
        tensors[name] = np.ascontiguousarray(value)
    for label, value in zip(cells.get(config.model.cell).STATE, carry):
        tensors[CARRY_PREFIX + label] = np.ascontiguousarray(value)
    meta = {
        "version": __version__,
        "config": config_to_dict(config),
        "vocab": vocab.to_list(),
        **({"eod": vocab.eod} if vocab.eod is not None else {}),    # documents mode only
        "train_state": train_state or {},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        CHECKSUMS: ALGORITHM,
    }
    text = json.dumps(meta)
    blob = save(tensors, metadata={"format": FORMAT, "charrnn": text,
                                   CHECKSUMS: checksum_metadata(tensors, text)})
    write_atomically(path, blob)


def checksum_metadata(tensors: dict[str, np.ndarray], charrnn_text: str) -> str:
    """The `checksums` metadata value for these tensors and `charrnn` metadata text (JSON)."""
    return json.dumps({"algorithm": ALGORITHM, "charrnn": _crc(charrnn_text.encode()),
                       "tensors": {name: _tensor_record(v) for name, v in tensors.items()}})


def _crc(data) -> str:
    """CRC-32 of a bytes-like object (a C-contiguous array: its raw bytes) as 8 hex digits."""
    return f"{zlib.crc32(data):08x}"


def _tensor_record(value: np.ndarray) -> list:
    """[dtype, shape, crc]: the dtype and shape too, so a same-size dtype change is caught."""
    return [value.dtype.name, list(value.shape), _crc(np.ascontiguousarray(value))]


def _read(path: str):
    """(tensors, metadata) of a safetensors file; CheckpointError for a path that is no file,
    CorruptCheckpoint for bytes safetensors cannot parse (cut short, a damaged header)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    if path == "-":
        raise CheckpointError("a checkpoint must be a file path, not '-'.")
    if not os.path.exists(path):
        raise CheckpointError(f"no checkpoint at {path}.")
    if os.path.isdir(path):
        raise CheckpointError(f"{path} is a folder; give a .safetensors file such as "
                              f"{os.path.join(path, 'best.safetensors')}.")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror}.") from None
    try:
        tensors = load(data)
        metadata = _header_metadata(data)
    except (SafetensorError, ValueError, OverflowError) as e:
        raise CorruptCheckpoint(f"{path} is not a readable checkpoint (truncated or "
                                f"corrupt: {e}).") from None
    return tensors, metadata


def _header_metadata(data: bytes) -> dict:
    """The __metadata__ of a safetensors header: 8-byte little-endian length, then JSON."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    return header.get("__metadata__") or {}


def saved_steps(folder: str) -> dict[str, int]:
    """{checkpoint name: its step} for the run folder's checkpoints, from their headers alone
    (a file that cannot be read is left out)."""
    steps = {}
    for name in RUN_CHECKPOINTS:
        try:
            with open(os.path.join(folder, name), "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                meta = json.loads(json.loads(f.read(n)).get("__metadata__", {})["charrnn"])
            steps[name] = int(meta["train_state"]["progress"]["step"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return steps


def resolve_checkpoint(path: str, say=None) -> str:
    """The checkpoint file that `path` names: `path` itself, or for a run folder its
    best.safetensors if there, else its last.safetensors (say(line) tells which).

    CheckpointError for a folder that holds neither.
    """
    if not os.path.isdir(path):
        return path
    last, best = RUN_CHECKPOINTS
    for name, why in ((best, "lowest validation loss"), (last, "latest; no best.safetensors yet")):
        found = os.path.join(path, name)
        if os.path.isfile(found):
            if say is not None:
                say(f"using {found} ({why})")
            return found
    raise CheckpointError(f"the folder {path} holds no checkpoint ({best} or {last}); give a "
                          f"run folder of `charrnn train` or a .safetensors file.")


def load_checkpoint(path: str) -> Checkpoint:
    """Read, verify and validate a checkpoint (NaN or inf in any tensor is refused: charrnn
    never saves one; another tool may have).

    Raises CorruptCheckpoint (a checksum mismatch, or a file cut short; the message names the
    run folder's other checkpoint to fall back on) or CheckpointError, each with one sentence.
    """
    try:
        tensors, metadata, meta = _verified(path)
    except CorruptCheckpoint as e:
        raise CorruptCheckpoint(str(e).removesuffix(".") + _fallback(path) + ".") from None
    try:
        config = config_from_dict(meta["config"])
        vocab = Vocab.from_list(meta["vocab"], eod=meta.get("eod"))
    except (KeyError, TypeError, ValueError, ConfigError) as e:
        raise CheckpointError(f"{path} has unreadable charrnn metadata ({e}).") from None
    params = _checked_params(path, tensors, config, vocab)
    bad = nonfinite_tensor(tensors.items())
    if bad is not None:
        raise CheckpointError(f"{path} holds NaN or infinite values (in {bad}): it was saved from "
                              f"a run that diverged; use an earlier checkpoint.")
    optim = {k: v for k, v in tensors.items() if k.startswith(OPTIM_PREFIX)}
    names = cells.get(config.model.cell).STATE
    carry = tuple(tensors[CARRY_PREFIX + s] for s in names if CARRY_PREFIX + s in tensors)
    return Checkpoint(config=config, vocab=vocab, params=params, optim=optim, carry=carry,
                      train_state=meta.get("train_state") or {},
                      version=str(meta.get("version", "")), created=str(meta.get("created", "")),
                      verified=CHECKSUMS in metadata)


def _verified(path: str) -> tuple[dict, dict, dict]:
    """(tensors, safetensors metadata, charrnn metadata) of a charrnn/1 file whose checksums
    match (or that has none: an older file). CorruptCheckpoint or CheckpointError otherwise."""
    tensors, metadata = _read(path)
    fmt = metadata.get("format", "")
    name, _, version = fmt.partition("/")
    if name != FORMAT_NAME or "charrnn" not in metadata:
        raise CheckpointError(f"{path} is a safetensors file but not a charrnn checkpoint.")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path} has format {fmt}, which this charrnn {__version__} cannot "
                              f"read (it reads {FORMAT}); upgrade charrnn.")
    if CHECKSUMS in metadata:
        _verify(path, tensors, metadata)
    try:
        meta = json.loads(metadata["charrnn"])
        declared = meta.get(CHECKSUMS)
    except (json.JSONDecodeError, AttributeError) as e:
        raise CheckpointError(f"{path} has unreadable charrnn metadata ({e}).") from None
    if declared is not None and CHECKSUMS not in metadata:
        raise CorruptCheckpoint(f"{path} is corrupt: it was written with {declared} checksums "
                                f"but they are gone from its header.")
    return tensors, metadata, meta


def _verify(path: str, tensors: dict, metadata: dict) -> None:
    """CorruptCheckpoint naming the first part (the charrnn metadata, or a tensor) that does not
    match its checksum; CheckpointError for checksums of an algorithm this charrnn lacks."""
    try:
        record = json.loads(metadata[CHECKSUMS])
        algorithm, text_crc, expected = record["algorithm"], record["charrnn"], record["tensors"]
        expected.items()
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise CorruptCheckpoint(f"{path} is corrupt: its checksum record is unreadable.") from None
    if algorithm != ALGORITHM:
        raise CheckpointError(f"{path} has {algorithm} checksums, which this charrnn {__version__} "
                              f"cannot check (it checks {ALGORITHM}): the file is corrupt or "
                              f"from a newer charrnn.")
    if _crc(metadata["charrnn"].encode()) != text_crc:
        _corrupt(path, "its charrnn metadata (config, vocabulary, training state) does not "
                       "match its checksum")
    for name, value in tensors.items():
        if name not in expected:
            _corrupt(path, f"it holds a tensor {name} that has no checksum")
        if _tensor_record(value) != expected[name]:
            _corrupt(path, f"the tensor {name} does not match its checksum")
    missing = sorted(set(expected) - set(tensors))
    if missing:
        _corrupt(path, f"the tensor {missing[0]} is gone")


def _corrupt(path: str, what: str):
    """Raise the CorruptCheckpoint of a checksum mismatch: `what` says which part."""
    raise CorruptCheckpoint(f"{path} is corrupt: {what} (the file changed after charrnn wrote it).")


def _fallback(path: str) -> str:
    """'; <other checkpoint of the run folder> ...' to add to a corrupt file's message, or ''."""
    others = [os.path.join(os.path.dirname(path), name) for name in RUN_CHECKPOINTS]
    others = [p for p in others if os.path.isfile(p) and not _same_file(p, path)]
    for other in others:
        try:
            ckpt_meta = _verified(other)[1]
        except CheckpointError:
            continue
        checked = "its checksums match" if CHECKSUMS in ckpt_meta else "an older file, unchecked"
        return f"; fall back on {other} ({checked})"
    return "; ".join([""] + [f"{p} is unusable too" for p in others])


def _same_file(a: str, b: str) -> bool:
    """Whether paths a and b name one file (False if either is gone)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _checked_params(path, tensors, config, vocab) -> dict[str, np.ndarray]:
    """The model tensors, after checking names, shapes and dtype against the stored config."""
    expected = parameter_shapes(len(vocab), config.model)
    dtype = np.dtype(config.train.dtype)
    params = {}
    for name, shape in expected.items():
        if name not in tensors:
            raise CheckpointError(f"{path} lacks the parameter {name}; the file is incomplete.")
        value = tensors[name]
        if value.shape != shape:
            raise CheckpointError(f"{path}: {name} has shape {list(value.shape)} but its config "
                                  f"needs {list(shape)}.")
        if value.dtype != dtype:
            raise CheckpointError(f"{path}: {name} is {value.dtype}, expected {dtype}.")
        params[name] = value
    extra = [k for k in tensors if k not in expected
             and not k.startswith((OPTIM_PREFIX, CARRY_PREFIX))]
    if extra:
        raise CheckpointError(f"{path} holds unexpected tensors ({', '.join(sorted(extra)[:3])}).")
    return params


def load_model(path: str) -> tuple[CharRNN, Vocab, Checkpoint]:
    """The model, the vocabulary and the checkpoint record of `path`."""
    ckpt = load_checkpoint(path)
    return ckpt.build_model(), ckpt.vocab, ckpt
