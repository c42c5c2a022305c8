"""`charrnn export`: a trained model as one self-contained web page that samples and scores
in the browser, offline (docs/export.md).

The page is export_page.html with, inline: the model card and the tensors' names, offsets and
shapes (JSON), the matrix-vector product as WebAssembly (export_wasm.py), every parameter as
base64 of one little-endian float32 or float16 array after another (4/3 of their bytes), the
step of the model's cell (charrnn/nn/cells/<cell>.js, beside its Python module), the model's
runtime and API (export_model.js) and the page around it (export_ui.js). It makes no network
request.

The checkpoint is read through charrnn.store only (its format, version and checksums are
verified there), so exporting needs nothing of the trainer.

Public API:
  page_html(ckpt, checkpoint, dtype="float32") -> str         the page of a loaded Checkpoint
  write_page(ckpt, checkpoint, out, dtype="float32") -> dict  write it atomically; its figures
  DTYPES, ExportError
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
from importlib import resources

import numpy as np

from charrnn import __version__
from charrnn.errors import CharrnnError
from charrnn.fileio import write_atomically
from charrnn.nn import cells
from charrnn.store.checkpoint import Checkpoint
from charrnn.tools.export_wasm import module_bytes
from charrnn.tools.inspect_html import SHADES, STYLE

DTYPES = ("float32", "float16")
NO_LOSS = 1e300        # a best_val_loss at or above this: no evaluation yet (JSON has no inf)


class ExportError(CharrnnError):
    """A model that cannot be exported as asked; one sentence naming the fix."""


def _asset(name: str) -> str:
    return resources.files("charrnn.tools").joinpath(name).read_text(encoding="utf-8")


def cell_script(cell: str) -> str:
    """The JavaScript step of a cell: the .js file beside its module (docs/adding-a-cell.md)."""
    path = cells.script_path(cells.get(cell))
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise ExportError(f"the cell {cell} has no JavaScript step ({path}), so it cannot be "
                          f"exported yet (docs/adding-a-cell.md)") from None


def weights_blob(params: dict[str, np.ndarray], dtype: str) -> tuple[list, bytes]:
    """([[name, offset in elements, shape], ...], the little-endian bytes of every tensor in
    `dtype`, one after another)."""
    kind = np.dtype(dtype).newbyteorder("<")
    index, chunks, offset = [], [], 0
    for name, value in params.items():
        with np.errstate(over="ignore"):
            array = np.ascontiguousarray(value, dtype=kind)
        if not np.isfinite(array).all():
            raise ExportError(f"the parameter {name} has values beyond {dtype}'s range "
                              f"(+-{float(np.finfo(kind).max):g}); export with --dtype float32.")
        index.append([name, offset, list(value.shape)])
        chunks.append(array.tobytes())
        offset += array.size
    return index, b"".join(chunks)


def model_info(ckpt: Checkpoint, checkpoint: str, dtype: str) -> dict:
    """The model card: architecture, sizes, vocabulary, training progress, sampling defaults."""
    spec, progress = ckpt.config.model, (ckpt.train_state or {}).get("progress") or {}
    best = progress.get("best_val_loss")
    best = float(best) if isinstance(best, (int, float)) and math.isfinite(best) \
        and best < NO_LOSS else None
    sample = ckpt.config.sample
    return {
        "cell": spec.cell, "nonlinearity": spec.nonlinearity, "layers": spec.layers,
        "hidden": spec.hidden_size, "embed": spec.embed_size, "residual": bool(spec.residual),
        "ffn_mult": int(spec.ffn_mult), "params": int(sum(v.size for v in ckpt.params.values())),
        "dtype": dtype, "weight_bytes": int(sum(v.size for v in ckpt.params.values()) * np.dtype(dtype).itemsize),
        "vocab": ckpt.vocab.to_list(), "eod": ckpt.vocab.eod, "best_val_loss": best,
        "step": int(progress.get("step", 0) or 0), "checkpoint": os.path.basename(checkpoint),
        "version": ckpt.version or __version__, "exported_by": __version__,
        "sample": {"prime": sample.prime, "length": sample.length,
                   "temperature": sample.temperature, "top_k": sample.top_k,
                   "top_p": sample.top_p},
    }


def _json(value) -> str:
    """JSON that cannot end the <script> element it sits in."""
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c")


def page_html(ckpt: Checkpoint, checkpoint: str, dtype: str = "float32") -> str:
    """The whole page of a loaded checkpoint (`checkpoint`: its path, for the card)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    index, blob = weights_blob(ckpt.params, dtype)
    info = model_info(ckpt, checkpoint, dtype)
    parts = {
        "TITLE": html.escape(f"charrnn: {info['checkpoint']}"), "STYLE": STYLE,
        "SHADES": _json(list(SHADES)), "CELL": cell_script(info["cell"]),
        "MODEL_JS": _asset("export_model.js"), "UI": _asset("export_ui.js"),
        "MODEL": _json({"info": info, "dtype": dtype, "tensors": index,
                        "kernel": base64.b64encode(module_bytes()).decode("ascii")}),
        "WEIGHTS": base64.b64encode(blob).decode("ascii"),
    }
    # one pass: nothing substituted is searched again for placeholders
    return re.sub(r"%([A-Z_]+)%", lambda m: parts[m.group(1)], _asset("export_page.html"))


def write_page(ckpt: Checkpoint, checkpoint: str, out: str, dtype: str = "float32") -> dict:
    """Write the page to `out` atomically -> {"path", "bytes", "weight_bytes", "params"}.
    OSError when it cannot be written."""
    page = page_html(ckpt, checkpoint, dtype).encode("utf-8")
    write_atomically(out, page)
    n = sum(v.size for v in ckpt.params.values())
    return {"path": out, "bytes": len(page), "weight_bytes": n * np.dtype(dtype).itemsize,
            "params": n}
