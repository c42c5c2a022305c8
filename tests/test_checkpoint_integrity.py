"""Checkpoint integrity: every checkpoint records crc32 checksums of its tensors and of its
charrnn metadata, every load verifies them and refuses a changed byte with one sentence (naming
the run folder's other checkpoint to fall back on), and older files without them still load."""

import json
import os
import shutil
import subprocess
import sys
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import load_file, save_file

from charrnn.cli import cli
from charrnn.nn import cells
from charrnn.store import checkpoint
from charrnn.store.checkpoint import (
    CheckpointError,
    CorruptCheckpoint,
    load_checkpoint,
    save_checkpoint,
)
from tests.conftest import FORMAT_CHECKPOINT, FORMAT_VOCAB, TINY_TEXT, tiny_run

DATA = os.path.join(os.path.dirname(__file__), "data")
OLD_CHECKPOINTS = sorted(f for f in os.listdir(DATA) if f.endswith("-v1.safetensors"))


def save_full(path, dtype="float32"):
    """Save an LSTM checkpoint with every kind of tensor (parameters, Adam's two slots, the
    carried state) at path; returns the path as a str."""
    model, cfg = tiny_run(FORMAT_VOCAB, **{**FORMAT_CHECKPOINT, "cell": "lstm", "dtype": dtype})
    rng = np.random.default_rng(0)
    optim = {f"optim.{slot}.{name}": rng.standard_normal(v.shape).astype(dtype)
             for slot in ("exp_avg", "exp_avg_sq") for name, v in model.params.items()}
    carry = tuple(rng.standard_normal((2, 3, 6)).astype(dtype) for _ in cells.get("lstm").STATE)
    save_checkpoint(str(path), model, FORMAT_VOCAB, cfg, optim_tensors=optim,
                    train_state={"step": 3}, carry=carry)
    return str(path)


def header_of(data: bytes) -> tuple[int, dict]:
    """(N, the header JSON) of safetensors bytes: 8-byte little-endian N, then N bytes of JSON."""
    n = int.from_bytes(data[:8], "little")
    return n, json.loads(data[8:8 + n])


def tensor_spans(data: bytes) -> dict[str, tuple[int, int]]:
    """{tensor name: (first byte, end) in the file}, from the header's data_offsets."""
    n, header = header_of(data)
    header.pop("__metadata__")
    return {k: (8 + n + v["data_offsets"][0], 8 + n + v["data_offsets"][1])
            for k, v in header.items()}


def flip(path, position: int, xor: int) -> None:
    """XOR the byte at `position` of the file with `xor`, in place (flip it again to undo)."""
    with open(path, "r+b") as f:
        f.seek(position)
        byte = f.read(1)[0]
        f.seek(position)
        f.write(bytes([byte ^ xor]))


def refusal(path, kind=CheckpointError) -> str:
    """The one-sentence message with which load_checkpoint(path) refuses the file."""
    with pytest.raises(kind) as e:
        load_checkpoint(str(path))
    message = str(e.value)
    assert "\n" not in message and message.startswith(str(path)), message
    return message


def assert_checksums_match(path):
    """The file's checksums, recomputed from its raw bytes with zlib, as the format describes."""
    data = open(path, "rb").read()
    meta = header_of(data)[1]["__metadata__"]
    record = json.loads(meta["checksums"])
    assert record["algorithm"] == "crc32" and json.loads(meta["charrnn"])["checksums"] == "crc32"
    assert record["charrnn"] == f"{zlib.crc32(meta['charrnn'].encode()):08x}"
    arrays = load_file(str(path))
    spans = tensor_spans(data)
    assert set(record["tensors"]) == set(spans)
    for name, (start, end) in spans.items():
        crc = f"{zlib.crc32(data[start:end]):08x}"
        assert record["tensors"][name] == [arrays[name].dtype.name, list(arrays[name].shape), crc]
    assert load_checkpoint(str(path)).verified


# -- every changed byte is refused ------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_byte_changed_in_the_tensor_data_is_refused(tmp_path, dtype):
    """The first and last data byte, the ends of every tensor and every 23rd byte between, by
    one bit (the lowest, or the highest: a float's sign) and by a whole byte."""
    path = save_full(tmp_path / "m.safetensors", dtype)
    data = open(path, "rb").read()
    assert_checksums_match(path)
    spans = tensor_spans(data)
    first = min(start for start, _ in spans.values())
    assert max(end for _, end in spans.values()) == len(data)
    positions = {first, len(data) - 1, *range(first, len(data), 23)}
    positions |= {p for start, end in spans.values() if end > start for p in (start, end - 1)}
    for k, position in enumerate(sorted(positions)):
        owner = next(name for name, (start, end) in spans.items() if start <= position < end)
        xor = (0x01, 0x80, 0xFF)[k % 3]
        flip(path, position, xor)
        message = refusal(path, CorruptCheckpoint)
        assert f"is corrupt: the tensor {owner} does not match its checksum" in message, position
        flip(path, position, xor)
    assert load_checkpoint(path).verified


def test_a_byte_changed_in_the_header_is_refused(tmp_path):
    """Every 3rd byte of the length and the header, and the bytes of the checksum record's key,
    the charrnn metadata's flag that it was written, and the algorithm's name."""
    path = save_full(tmp_path / "m.safetensors")
    data = open(path, "rb").read()
    n = header_of(data)[0]
    positions = set(range(0, 8 + n, 3))
    needles = b'"checksums":"', b'\\"checksums\\": \\"crc32\\"', b'\\"algorithm\\": \\"crc32\\"'
    for needle in needles:
        start = data.index(needle)
        assert start < 8 + n, needle
        positions |= set(range(start, start + len(needle)))
    for position in sorted(positions):
        flip(path, position, 0x01)
        refusal(path)
        flip(path, position, 0x01)
    assert load_checkpoint(path).verified


def test_a_change_to_the_charrnn_metadata_alone_is_refused(saved_checkpoint):
    """A vocabulary symbol changed in place: still valid JSON and a valid model, so only the
    checksum tells."""
    path = saved_checkpoint[0]
    data = open(path, "rb").read()
    changed = data.replace(b'\\\\u00e9', b'\\\\u00e8', 1)      # the vocabulary's é becomes è
    assert changed != data and len(changed) == len(data)
    open(path, "wb").write(changed)
    assert "its charrnn metadata (config, vocabulary, training state) does not match its " \
           "checksum" in refusal(path, CorruptCheckpoint)


def test_a_file_that_lost_its_checksums_is_refused(saved_checkpoint):
    path = saved_checkpoint[0]
    meta = header_of(open(path, "rb").read())[1]["__metadata__"]
    save_file(load_file(path), path,
              metadata={"format": meta["format"], "charrnn": meta["charrnn"]})
    assert "was written with crc32 checksums but they are gone" in refusal(path, CorruptCheckpoint)


def resave(path, record=None, charrnn=None):
    """Rewrite path with the same tensors, its charrnn metadata edited by charrnn(dict), and
    checksums that match them edited by record(dict) (record None: no checksums at all)."""
    tensors = load_file(path)
    meta = header_of(open(path, "rb").read())[1]["__metadata__"]
    info = json.loads(meta["charrnn"])
    text = json.dumps(charrnn(info) if charrnn else info)
    metadata = {k: v for k, v in meta.items() if k != "checksums"} | {"charrnn": text}
    if record is not None:
        metadata["checksums"] = json.dumps(record(json.loads(
            checkpoint.checksum_metadata(tensors, text))))
    save_file(tensors, path, metadata=metadata)


def test_a_missing_or_unchecked_tensor_is_refused(saved_checkpoint):
    path = saved_checkpoint[0]
    extra = ["float32", [1], "00000000"]
    resave(path, lambda r: {**r, "tensors": {**r["tensors"], "decoder.extra": extra}})
    assert "the tensor decoder.extra is gone" in refusal(path, CorruptCheckpoint)
    resave(path, lambda r: {**r, "tensors": {k: v for k, v in r["tensors"].items()
                                             if k != "decoder.bias"}})
    assert "holds a tensor decoder.bias that has no checksum" in refusal(path, CorruptCheckpoint)
    resave(path, lambda r: {**r, "tensors": None})
    assert "its checksum record is unreadable" in refusal(path, CorruptCheckpoint)


def test_checksums_of_another_algorithm_are_refused(saved_checkpoint):
    path = saved_checkpoint[0]
    resave(path, lambda r: {**r, "algorithm": "sha256"})
    message = refusal(path)
    assert "has sha256 checksums, which this charrnn" in message and "checks crc32" in message


# -- older and newer files ----------------------------------------------------------------------

@pytest.mark.parametrize("name", OLD_CHECKPOINTS)
def test_an_older_checkpoint_without_checksums_loads_unverified(name):
    path = os.path.join(DATA, name)
    assert "checksums" not in header_of(open(path, "rb").read())[1]["__metadata__"]
    ckpt = load_checkpoint(path)
    assert not ckpt.verified
    tensors = load_file(path)
    assert all(np.array_equal(tensors[k], v) for k, v in ckpt.params.items())


def test_a_checkpoint_stripped_of_its_checksums_loads_unverified(saved_checkpoint):
    """As an older charrnn wrote it: no record, and no flag in the charrnn metadata."""
    path, model, _ = saved_checkpoint
    resave(path, None, lambda info: {k: v for k, v in info.items() if k != "checksums"})
    ckpt = load_checkpoint(path)
    assert not ckpt.verified
    assert all(np.array_equal(ckpt.params[k], v) for k, v in model.params.items())


def test_unknown_metadata_keys_and_fields_are_ignored(saved_checkpoint):
    """What lets a later charrnn add to format charrnn/1, as the checksums did."""
    path = saved_checkpoint[0]
    resave(path, lambda r: {**r, "later": 1}, lambda info: {**info, "later": {"x": 1}})
    tensors = load_file(path)
    meta = dict(header_of(open(path, "rb").read())[1]["__metadata__"], later="yes")
    save_file(tensors, path, metadata=meta)
    assert load_checkpoint(path).verified


# -- a run folder: the other checkpoint to fall back on ---------------------------------------

def test_a_corrupt_checkpoint_names_the_run_folders_other_one(tmp_path):
    last, best = (save_full(tmp_path / name) for name in ("last.safetensors", "best.safetensors"))
    flip(last, os.path.getsize(last) - 1, 0x01)
    assert refusal(last).endswith(f"; fall back on {best} (its checksums match).")
    shutil.copy(os.path.join(DATA, OLD_CHECKPOINTS[0]), best)
    assert refusal(last).endswith(f"; fall back on {best} (an older file, unchecked).")
    os.truncate(best, 100)
    assert refusal(last).endswith(f"; {best} is unusable too.")
    assert refusal(best).endswith(f"; {last} is unusable too.")    # cut short: corrupt too
    os.remove(best)
    assert refusal(last).endswith("(the file changed after charrnn wrote it).")


def test_a_corrupt_checkpoint_outside_a_run_folder_names_nothing_else(tmp_path):
    path = save_full(tmp_path / "model.safetensors")
    flip(path, os.path.getsize(path) - 1, 0x01)
    assert refusal(path).endswith("(the file changed after charrnn wrote it).")


# -- the commands -------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["sample", "-n", "5"], ["eval", "-"]])
def test_sample_and_eval_refuse_a_corrupt_checkpoint_in_one_line(tmp_path, command):
    last, best = (save_full(tmp_path / name) for name in ("last.safetensors", "best.safetensors"))
    data = open(last, "rb").read()
    flip(last, tensor_spans(data)["rnn.weight_hh_l1"][0] + 5, 0x01)
    r = CliRunner().invoke(cli, [command[0], last, *command[1:]], input=TINY_TEXT)
    assert r.exit_code == 1 and r.stdout == "", r.output
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr == (f"charrnn: error: {last} is corrupt: the tensor rnn.weight_hh_l1 does not "
                        f"match its checksum (the file changed after charrnn wrote it); fall back "
                        f"on {best} (its checksums match).\n")


def test_eval_of_a_corrupt_checkpoint_in_a_real_process(tmp_path):
    path = save_full(tmp_path / "m.safetensors")
    data = open(path, "rb").read()
    flip(path, tensor_spans(data)["decoder.bias"][0], 0x80)
    p = subprocess.run([sys.executable, "-m", "charrnn", "eval", path, "-"], input=TINY_TEXT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.startswith(f"charrnn: error: {path} is corrupt: the tensor decoder.bias")
    assert p.stderr.count("\n") == 1, p.stderr


# -- training writes verified checkpoints -------------------------------------------------------

SMALL = ["--set", "model.hidden_size=16", "--set", "model.embed_size=8",
         "--set", "train.batch_size=4", "--set", "train.seq_len=8",
         "--set", "train.eval_every=2", "--set", "train.checkpoint_every=2"]


def train(*args):
    r = CliRunner().invoke(cli, ["train", *map(str, args), "-q"])
    assert r.exit_code == 0, r.output


def test_a_resumed_run_writes_verified_checkpoints(tmp_path, corpus):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"data:\n  path: {corpus}\ntrain:\n  out_dir: {tmp_path / 'run'}\n  seed: 7\n")
    train(cfg, *SMALL, "--set", "train.max_steps=2")
    train("--resume", tmp_path / "run", "--set", "train.max_steps=4")
    for name in ("last.safetensors", "best.safetensors"):
        assert_checksums_match(tmp_path / "run" / name)
    last = load_checkpoint(str(tmp_path / "run" / "last.safetensors"))
    assert last.verified and last.train_state["progress"]["step"] == 4


def test_a_run_resumed_from_an_older_checkpoint_writes_verified_ones(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(os.path.join(DATA, "lstm-v1.safetensors"), run / "last.safetensors")
    text = tmp_path / "corpus.txt"
    text.write_text(open(os.path.join(DATA, "golden-text.txt"), encoding="utf-8").read() * 6,
                    encoding="utf-8")
    train("--resume", run, "--set", f"data.path={text}", "--set", "train.max_steps=14")
    assert_checksums_match(run / "last.safetensors")


def test_resuming_from_a_corrupt_last_checkpoint_names_best(tmp_path, corpus):
    """One line naming best.safetensors, and resuming from that file works."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"data:\n  path: {corpus}\ntrain:\n  out_dir: {tmp_path / 'run'}\n  seed: 7\n")
    train(cfg, *SMALL, "--set", "train.max_steps=2")
    last, best = tmp_path / "run" / "last.safetensors", tmp_path / "run" / "best.safetensors"
    flip(last, os.path.getsize(last) - 1, 0x01)
    r = CliRunner().invoke(cli, ["train", "--resume", str(tmp_path / "run"), "-q"])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1, r.output
    assert r.stderr.startswith(f"charrnn: error: {last} is corrupt: the tensor ")
    assert r.stderr.endswith(f"; fall back on {best} (its checksums match).\n")
    train("--resume", best, "--set", "train.max_steps=4")
    assert_checksums_match(last)
