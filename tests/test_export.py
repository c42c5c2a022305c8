"""`charrnn export` without a browser: the page it writes (self-contained, its weights 4/3 of
their bytes), its refusals (not a checkpoint, an unknown format version, a corrupt file: one
line, exit status 1, no page), and the exporter's independence from the trainer. The page in
a browser: tests/test_export_browser.py."""

import base64
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import save_file

from charrnn.store.checkpoint import load_checkpoint, save_checkpoint
from charrnn.tools.export import ExportError, page_html
from charrnn.tools.export_wasm import module_bytes
from tests.conftest import TINY_VOCAB, run_cli, save_tiny_checkpoint, tiny_run
from tests.test_checkpoint_integrity import flip, tensor_spans


def page_parts(page: str) -> tuple[dict, bytes]:
    """(the page's model JSON, its weight bytes)."""
    model = re.search(r'<script type="application/json" id="model">(.*?)</script>', page, re.S)
    weights = re.search(r'<script type="text/plain" id="weights">(.*?)</script>', page, re.S)
    return json.loads(model.group(1)), base64.b64decode(weights.group(1))


@pytest.fixture(scope="module")
def gru_checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("export") / "gru.safetensors",
                                cell="gru", layers=2, hidden=8, embed=4, seed=2)[0]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_the_page_holds_every_weight_little_endian_and_nothing_from_the_network(
        gru_checkpoint, tmp_path, dtype):
    out = tmp_path / "model.html"
    r = run_cli("export", gru_checkpoint, "-o", out, "--dtype", dtype)
    assert r.exit_code == 0, r.output
    assert f"wrote {out}" in r.output and "parameters" in r.output
    page = out.read_text(encoding="utf-8")
    model, blob = page_parts(page)
    ckpt = load_checkpoint(gru_checkpoint)
    assert model["dtype"] == dtype and model["info"]["vocab"] == TINY_VOCAB.to_list()
    assert model["info"]["params"] == sum(v.size for v in ckpt.params.values())
    for name, offset, shape in model["tensors"]:
        want = ckpt.params[name].astype(np.dtype(dtype).newbyteorder("<"))
        size = want.dtype.itemsize
        got = np.frombuffer(blob, want.dtype, count=want.size, offset=offset * size)
        np.testing.assert_array_equal(got.reshape(shape), want)
    # the weights are base64 (4/3 of their bytes), the rest is a few tens of kB of page
    weight_bytes = sum(v.size for v in ckpt.params.values()) * np.dtype(dtype).itemsize
    assert len(blob) == weight_bytes
    assert base64.b64decode(model["kernel"]) == module_bytes()
    # self-contained: no external script, style, image, font or fetch
    assert not re.search(r"""(src|href)\s*=|https?://|fetch\(|XMLHttpRequest|import\(""", page)


def test_float16_refuses_weights_beyond_its_range(tmp_path):
    path, model, cfg = save_tiny_checkpoint(tmp_path / "big.safetensors", hidden=4, embed=3)
    ckpt = load_checkpoint(path)
    ckpt.params["decoder.bias"] = ckpt.params["decoder.bias"] + 1e5
    with pytest.raises(ExportError, match=r"decoder.bias has values beyond float16's range"):
        page_html(ckpt, path, "float16")
    assert page_html(ckpt, path, "float32")                 # float32 holds them


def corrupt(path):
    """Flip a byte inside the tensor decoder.bias of the checkpoint at path."""
    start, _ = tensor_spans(open(path, "rb").read())["decoder.bias"]
    flip(path, start + 1, 0x10)


def other_version(path):
    """Rewrite the checkpoint at path with the format tag charrnn/2."""
    from safetensors.numpy import load_file
    from safetensors import safe_open

    with safe_open(path, "np") as f:
        meta = dict(f.metadata())
    meta["format"] = "charrnn/2"
    save_file(load_file(path), path, metadata=meta)


def not_charrnn(path):
    save_file({"w": np.zeros(3, np.float32)}, path)


def not_safetensors(path):
    with open(path, "w") as f:
        f.write("hello, not a checkpoint\n")


@pytest.mark.parametrize("spoil,says", [
    (not_safetensors, "is not a readable checkpoint"),
    (not_charrnn, "is a safetensors file but not a charrnn checkpoint"),
    (other_version, "has format charrnn/2, which this charrnn"),
    (corrupt, "is corrupt: the tensor decoder.bias does not match its checksum"),
])
def test_a_bad_checkpoint_is_one_line_exit_1_and_no_page(tmp_path, spoil, says):
    path = str(tmp_path / "model.safetensors")
    save_tiny_checkpoint(path)
    spoil(path)
    out = tmp_path / "page.html"
    r = run_cli("export", path, "-o", out)
    assert r.exit_code == 1, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("charrnn: error: ") and says in lines[0], r.output
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]       # no page, no temporary


def test_a_missing_output_folder_is_refused_before_reading(tmp_path, gru_checkpoint):
    r = run_cli("export", gru_checkpoint, "-o", tmp_path / "nowhere" / "m.html")
    assert r.exit_code == 1 and "the folder" in r.output and "does not exist" in r.output


def test_the_exporter_needs_nothing_of_the_trainer(gru_checkpoint, tmp_path):
    code = ("import sys; from charrnn.store.checkpoint import load_checkpoint; "
            "from charrnn.tools.export import write_page; "
            f"write_page(load_checkpoint({gru_checkpoint!r}), 'x', {str(tmp_path / 'p.html')!r}); "
            "print(sorted(m for m in sys.modules if m.startswith(('charrnn.train', 'torch'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_model_card_has_the_runs_best_loss_and_step(tmp_path):
    model, cfg = tiny_run(TINY_VOCAB, cell="minlstm", layers=1, hidden=4, embed=3)
    path = str(tmp_path / "m.safetensors")
    save_checkpoint(path, model, TINY_VOCAB, cfg,
                    train_state={"progress": {"step": 1234, "best_val_loss": 1.5}})
    info = page_parts(page_html(load_checkpoint(path), path))[0]["info"]
    assert (info["cell"], info["layers"], info["hidden"], info["embed"]) == ("minlstm", 1, 4, 3)
    assert info["step"] == 1234 and info["best_val_loss"] == 1.5
    assert info["checkpoint"] == "m.safetensors" and info["eod"] is None


def test_a_cell_without_its_javascript_step_is_one_clear_error(gru_checkpoint, monkeypatch,
                                                              tmp_path):
    from charrnn.nn import cells

    monkeypatch.setattr(cells, "script_path", lambda module: str(tmp_path / "nowhere.js"))
    r = run_cli("export", gru_checkpoint, "-o", tmp_path / "m.html")
    assert r.exit_code == 1 and "the cell gru has no JavaScript step" in r.output
    assert not (tmp_path / "m.html").exists()


def test_a_run_folder_exports_its_best_checkpoint(tmp_path):
    save_tiny_checkpoint(tmp_path / "best.safetensors", cell="rnn", layers=1)
    r = run_cli("export", tmp_path, "-o", tmp_path / "m.html")
    assert r.exit_code == 0 and "best.safetensors (lowest validation loss)" in r.output
    info = page_parts((tmp_path / "m.html").read_text(encoding="utf-8"))[0]["info"]
    assert info["checkpoint"] == "best.safetensors" and info["cell"] == "rnn"
