"""The checkpoint format: round trip, metadata, atomic writes, and every load error."""

import json
import os
import pickle

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from charrnn import __version__
from charrnn.config import config_to_dict
from charrnn.nn import cells
from charrnn.store import checkpoint
from charrnn.store.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from tests.conftest import CELL_NAMES, FORMAT_CHECKPOINT, tiny_run
from tests.conftest import FORMAT_VOCAB as VOCAB


def make(cell="gru", dtype="float32"):
    """(model, config) of conftest's saved_checkpoint, of another cell or dtype if asked."""
    return tiny_run(VOCAB, **{**FORMAT_CHECKPOINT, "cell": cell, "dtype": dtype})


# -- round trip -------------------------------------------------------------------------------

# every registered cell, in float32 and float64 by turns (rnn, lstm: float32; gru: float64)
@pytest.mark.parametrize("cell,dtype", [(cell, ("float32", "float64")[k % 2])
                                        for k, cell in enumerate(CELL_NAMES)])
def test_round_trip_restores_parameters_config_and_vocab(tmp_path, cell, dtype):
    model, cfg = make(cell, dtype=dtype)
    path = str(tmp_path / "m.safetensors")
    optim = {"optim.exp_avg.decoder.bias": np.arange(len(VOCAB), dtype=np.float32)}
    carry = tuple(np.full((2, 3, 6), k + 1.0, np.float32)        # h = 1, c = 2, ...
                  for k, _ in enumerate(cells.get(cell).STATE))
    save_checkpoint(path, model, VOCAB, cfg, optim_tensors=optim, train_state={"step": 3},
                    carry=carry)
    ckpt = load_checkpoint(path)
    assert config_to_dict(ckpt.config) == config_to_dict(cfg)
    assert ckpt.vocab == VOCAB and ckpt.train_state == {"step": 3}
    assert set(ckpt.params) == set(model.params.names())
    for name, value in model.params.items():
        np.testing.assert_array_equal(ckpt.params[name], value)
        assert ckpt.params[name].dtype == np.dtype(dtype)
    np.testing.assert_array_equal(ckpt.optim["optim.exp_avg.decoder.bias"], optim["optim.exp_avg.decoder.bias"])
    assert len(ckpt.carry) == len(carry) and all(np.array_equal(a, b) for a, b in zip(ckpt.carry, carry))
    rebuilt, vocab, _ = load_model(path)
    assert vocab == VOCAB and rebuilt.dtype == np.dtype(dtype)
    ids = np.array([[1, 2, 3, 4]])
    np.testing.assert_array_equal(rebuilt.forward(ids)[0], model.forward(ids)[0])


def test_metadata_and_plain_safetensors_loading(saved_checkpoint):
    path, model, cfg = saved_checkpoint
    tensors = load_file(path)
    assert set(model.params.names()) <= set(tensors)
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8:8 + n])["__metadata__"]
    assert meta["format"] == "charrnn/1"
    info = json.loads(meta["charrnn"])
    assert set(info) == {"version", "config", "vocab", "train_state", "created", "checksums"}
    assert info["checksums"] == "crc32" and set(meta) == {"format", "charrnn", "checksums"}
    assert info["version"] == __version__ and info["vocab"] == VOCAB.to_list()
    assert info["config"] == config_to_dict(cfg) and info["train_state"]["step"] == 7
    assert info["created"][:4].isdigit() and "T" in info["created"]


# -- atomic writes ----------------------------------------------------------------------------

def test_save_leaves_only_the_checkpoint_with_the_usual_permissions(tmp_path):
    model, cfg = make()
    path = tmp_path / "m.safetensors"
    save_checkpoint(str(path), model, VOCAB, cfg)
    save_checkpoint(str(path), model, VOCAB, cfg)      # overwriting is fine too
    assert os.listdir(tmp_path) == ["m.safetensors"]
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_failed_save_keeps_the_old_file_and_leaves_no_temporary(monkeypatch, saved_checkpoint):
    path, model, cfg = saved_checkpoint
    before = open(path, "rb").read()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.os, "replace", broken_replace)
    model.params.flat[...] = 0
    with pytest.raises(OSError):
        save_checkpoint(path, model, VOCAB, cfg)
    assert open(path, "rb").read() == before
    assert sorted(os.listdir(os.path.dirname(path))) == ["m.safetensors"]


# -- load errors ------------------------------------------------------------------------------

def error_of(path) -> str:
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(str(path))
    message = str(e.value)
    assert "\n" not in message and str(path) in message or path == "-"
    return message


def test_missing_folder_and_stdin(tmp_path):
    assert "no checkpoint at" in error_of(tmp_path / "nope.safetensors")
    assert "is a folder" in error_of(tmp_path)
    assert "not '-'" in error_of("-")


@pytest.mark.parametrize("keep", [0, 5, 100, -10])
def test_truncated(saved_checkpoint, keep):
    path = saved_checkpoint[0]
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:keep] if keep >= 0 else data[:len(data) + keep])
    assert "not a readable checkpoint" in error_of(path)


def test_not_a_charrnn_checkpoint(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"weight": np.zeros((2, 2), np.float32)}, str(path))
    assert "not a charrnn checkpoint" in error_of(path)
    save_file({"weight": np.zeros(2, np.float32)}, str(path), metadata={"format": "pt"})
    assert "not a charrnn checkpoint" in error_of(path)


def test_a_pickle_is_never_unpickled(tmp_path):
    path = tmp_path / "evil.safetensors"
    with open(path, "wb") as f:
        pickle.dump({"embedding.weight": np.zeros(3)}, f)
    assert "not a readable checkpoint" in error_of(path)


def rewrite(path, tensors=None, meta=None, fmt="charrnn/1"):
    """Rewrite a saved checkpoint with changed tensors / metadata, and checksums that match
    them (so the load goes on to the checks after the checksums)."""
    old_tensors = load_file(path)
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    if isinstance(meta, str):
        text = meta
    else:
        old_meta = json.loads(json.loads(data[8:8 + n])["__metadata__"]["charrnn"])
        text = json.dumps({**old_meta, **(meta or {})})
    tensors = tensors if tensors is not None else old_tensors
    save_file(tensors, path, metadata={"format": fmt, "charrnn": text,
                                       "checksums": checkpoint.checksum_metadata(tensors, text)})
    return old_tensors


def test_future_format_version(saved_checkpoint):
    path = saved_checkpoint[0]
    rewrite(path, fmt="charrnn/2")
    message = error_of(path)
    assert "charrnn/2" in message and "upgrade charrnn" in message


def test_wrong_shape_missing_dtype_and_extra_tensors(saved_checkpoint):
    path = saved_checkpoint[0]
    tensors = load_file(path)
    bad = dict(tensors, **{"rnn.weight_hh_l0": np.zeros((3, 6), np.float32)})
    rewrite(path, bad)
    assert "rnn.weight_hh_l0 has shape [3, 6]" in error_of(path)
    rewrite(path, {k: v for k, v in tensors.items() if k != "decoder.bias"})
    assert "lacks the parameter decoder.bias" in error_of(path)
    rewrite(path, dict(tensors, **{"decoder.bias": tensors["decoder.bias"].astype(np.float64)}))
    assert "decoder.bias is float64, expected float32" in error_of(path)
    rewrite(path, dict(tensors, surprise=np.zeros(1, np.float32)))
    assert "unexpected tensors (surprise)" in error_of(path)


def test_unreadable_metadata(saved_checkpoint):
    path = saved_checkpoint[0]
    rewrite(path, meta="{not json")
    assert "unreadable charrnn metadata" in error_of(path)
    rewrite(path, meta=json.dumps({"config": {"model": {"cell": "transformer"}}, "vocab": ["a"]}))
    assert "unreadable charrnn metadata" in error_of(path)
