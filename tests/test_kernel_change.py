"""A changed BLAS kernel changes no result beyond rounding: the same short run trained under this
CPU's OpenBLAS kernel set and under the other one `make test-kernels` forces (tests/blas_kernel.py)
ends with weights and a validation loss equal to the precision of their dtype."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from charrnn.fast import blas
from charrnn.store.checkpoint import load_checkpoint
from tests.blas_kernel import other_kernel

STEPS = 20


def trained(tmp_path, corpus, dtype, kernel):
    out = tmp_path / f"{dtype}-{kernel or 'native'}"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    if kernel:
        env["OPENBLAS_CORETYPE"] = kernel
    sets = {"model.hidden_size": 24, "model.embed_size": 8, "train.batch_size": 8,
            "train.seq_len": 16, "train.max_steps": STEPS, "train.eval_every": STEPS,
            "train.dtype": dtype, "train.threads": 1, "train.out_dir": out}
    cmd = [sys.executable, "-m", "charrnn", "train", "--data", str(corpus), "-q"]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=120)
    val = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
           if "val_loss" in line][-1]["val_loss"]
    return load_checkpoint(str(out / "last.safetensors")).params, val


# dtype: (tolerance of the weights after STEPS Adam updates, relative to each tensor's largest
# entry; of the validation loss, relative). The kernels' products differ by a few units in the
# dtype's last place (FMA or not, another summation order); float32 allows more for the weights
# because Adam divides by sqrt(v): a near-zero gradient's rounding can move its weight by up to lr
TOLERANCE = {"float64": (1e-9, 1e-11), "float32": (1e-3, 1e-5)}


@pytest.mark.skipif(blas.corename() is None, reason="NumPy's BLAS here is not OpenBLAS")
@pytest.mark.parametrize("dtype", list(TOLERANCE))
def test_the_other_kernel_trains_the_same_run_to_rounding(tmp_path, corpus, dtype):
    native, native_loss = trained(tmp_path, corpus, dtype, None)
    other, other_loss = trained(tmp_path, corpus, dtype, other_kernel(blas.corename()))
    weights_tol, loss_tol = TOLERANCE[dtype]
    for name, value in native.items():
        scale = np.abs(value).max()
        assert np.abs(other[name] - value).max() <= weights_tol * scale, name
    assert abs(other_loss - native_loss) <= loss_tol * native_loss
