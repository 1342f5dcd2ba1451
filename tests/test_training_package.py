"""The shape of mlcourse.training: small modules and functions, its own layers (the whole
library's layers and cycles: tests/test_architecture.py), a command that loads no
numerical library before it pins the numerics, and the old names."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from import_graph import import_graph, module_name

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mlcourse"
TRAINING = PACKAGE / "training"
# The layers of mlcourse.training, lowest first: a module may import only from layers below
# its own (see mlcourse/training/__init__.py).
LAYERS = [
    ["overrides", "distributed", "shards"],
    ["config"],
    ["data", "model"],
    ["runs"],
    ["checkpoints", "tracking", "report"],
    ["resume", "state"],
    ["session"],
    ["loop", "planning"],
    ["cli"],
]


def test_training_modules_import_only_lower_layers():
    level = {f"mlcourse.training.{m}": i for i, layer in enumerate(LAYERS) for m in layer}
    assert set(level) == {module_name(p) for p in TRAINING.glob("*.py")} - {"mlcourse.training"}
    graph = import_graph()
    for name, rank in level.items():
        for imported in graph[name]:
            if imported.startswith("mlcourse.training."):
                assert level[imported] < rank, f"{name} imports {imported} (same or higher layer)"
    # the library below never reaches up into the training command
    for name, imports in graph.items():
        if not name.startswith(("mlcourse.training", "mlcourse.train")):
            assert not any(i.startswith("mlcourse.train") for i in imports), name


def test_modules_and_functions_stay_small():
    for path in sorted(TRAINING.glob("*.py")):
        source = path.read_text(encoding="utf-8")
        assert len(source.splitlines()) <= 300, f"{path.name} has more than 300 lines"
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= 60, f"{path.name}: {node.name} has {length} lines"


def test_the_loop_has_no_closures_and_reads_no_test_hooks():
    source = (TRAINING / "loop.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    for function in [n for n in tree.body if isinstance(n, ast.FunctionDef)]:
        nested = [
            n for n in ast.walk(function) if isinstance(n, ast.FunctionDef) and n is not function
        ]
        assert not nested, f"{function.name} defines {[n.name for n in nested]} inside it"
    assert "environ" not in source and "HANG" not in source


def test_the_command_loads_no_numerical_library_before_pinning():
    script = (
        "import sys; import mlcourse.train, mlcourse.training.cli; "
        "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_older_imports_still_resolve():
    import mlcourse.train as train
    from mlcourse.training import checkpoints, cli, data, model, tracking

    # what lesson 06 imports from mlcourse.train
    assert train.load_data is data.load_data and train.evaluate is model.evaluate
    assert train.load_trained_model is checkpoints.load_trained_model
    assert train.quiet_mlflow is tracking.quiet_mlflow
    assert train.tracking_uri is tracking.tracking_uri and train.main is cli.main
    with pytest.raises(AttributeError, match="has no attribute 'HANG_ENV'"):
        train.HANG_ENV  # noqa: B018
    from mlcourse.train_config import TrainConfig
    from mlcourse.training.config import TrainConfig as Moved

    assert TrainConfig is Moved
