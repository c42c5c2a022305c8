"""The package's layers import one way: fast, nn, optim <- engines <- config <- store <- infer
<- train <- tools <- cli.

Each module may import only from its own layer or a lower one; this reads every import
statement (module level and inside functions) of every source file.
"""

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "charrnn")

# lower number = lower layer; a module may import from layers with a number <= its own
RANKS = {"fileio": 0, "errors": 0, "ranges": 0, "fast": 0, "nn": 1, "optim": 1, "engines": 2,
         "config": 3, "store": 4, "infer": 5, "train": 6, "tools": 7, "cli": 8, "__main__": 9,
         "__init__": 0}


def layer_of(module: str) -> str:
    """'charrnn.nn.cells.lstm' -> 'nn'; 'charrnn' and its own names ('charrnn.__version__')
    -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANKS else "__init__"


def sources():
    for dirpath, _, names in os.walk(ROOT):
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                yield rel.removesuffix(".__init__"), path


def charrnn_imports(path):
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("charrnn"):
            yield from ([f"{node.module}.{a.name}" for a in node.names]
                        if node.module == "charrnn" else [node.module])
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("charrnn"))


def test_every_layer_has_a_rank():
    assert {m.split(".")[1] for m, _ in sources() if "." in m} <= set(RANKS)


@pytest.mark.parametrize("module,path", list(sources()), ids=lambda v: v if "." in v else None)
def test_imports_flow_one_way(module, path):
    mine = RANKS[layer_of(module)]
    upward = [m for m in charrnn_imports(path) if RANKS[layer_of(m)] > mine]
    assert not upward, f"{module} (layer {layer_of(module)}) imports {upward} from above it"


def test_the_checker_sees_an_upward_import():
    """nn/model.py importing the trainer would be caught."""
    assert RANKS[layer_of("charrnn.train.loop")] > RANKS[layer_of("charrnn.nn.model")]
    assert "charrnn.nn.params" in set(charrnn_imports(os.path.join(ROOT, "nn", "model.py")))
