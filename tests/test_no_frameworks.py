"""charrnn is NumPy only: no module in charrnn/ or tests/ imports a deep-learning framework,
except the optional torch engine (its two modules) and its tests, which import PyTorch alone."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMEWORKS = {"torch", "torchvision", "jax", "jaxlib", "flax", "tensorflow", "keras", "tf_keras",
              "mxnet", "paddle", "theano", "chainer", "cupy", "mlx", "tinygrad", "onnxruntime"}

TORCH_ENGINE = {os.path.join("charrnn", "engines", "torch_engine.py"),
                os.path.join("charrnn", "engines", "torch_model.py"),
                os.path.join("charrnn", "engines", "torch_dist.py"),
                os.path.join("tests", "test_torch_engine.py")}


def python_files():
    for folder in ("charrnn", "tests"):
        for dirpath, _, names in os.walk(os.path.join(ROOT, folder)):
            yield from (os.path.join(dirpath, n) for n in sorted(names) if n.endswith(".py"))


def imported_modules(path):
    """Top-level names of every module an import statement in the file names."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def test_the_scan_finds_the_sources_and_their_imports():
    files = list(python_files())
    assert any(p.endswith(os.path.join("charrnn", "nn", "model.py")) for p in files)
    assert any(p.endswith(os.path.join("tests", "test_no_frameworks.py")) for p in files)
    assert "numpy" in set(imported_modules(os.path.join(ROOT, "charrnn", "nn", "model.py")))


@pytest.mark.parametrize("path", list(python_files()), ids=lambda p: os.path.relpath(p, ROOT))
def test_no_deep_learning_framework_is_imported(path):
    allowed = {"torch"} if os.path.relpath(path, ROOT) in TORCH_ENGINE else set()
    found = sorted(set(imported_modules(path)) & (FRAMEWORKS - allowed))
    assert not found, f"{os.path.relpath(path, ROOT)} imports {', '.join(found)}"
