"""The layers of mlcourse/ as docs/architecture.md's table states them: every module in one
layer, no import the table does not allow, no import cycle."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from import_graph import find_cycle, import_graph

DOC = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"
ROW = re.compile(
    r"^\| (?P<number>\d+)\. (?P<name>[^|]+?) \| (?P<modules>[^|]+) \| (?P<allowed>[^|]+) \|$"
)


@dataclass(frozen=True)
class Layer:
    number: int
    name: str
    modules: tuple[str, ...]  # full names: a package stands for all its modules
    allowed: frozenset[int]  # the lower layers it may import


def read_layers(text: str) -> list[Layer]:
    """The table's rows, in order."""
    layers = []
    for line in text.splitlines():
        if match := ROW.match(line):
            names = re.findall(r"`([a-z_]+)`", match["modules"])
            layers.append(
                Layer(
                    number=int(match["number"]),
                    name=match["name"],
                    modules=tuple(
                        "mlcourse" if n == "mlcourse" else f"mlcourse.{n}" for n in names
                    ),
                    allowed=frozenset(int(n) for n in re.findall(r"\d+", match["allowed"])),
                )
            )
    return layers


def layer_of(module: str, layers: list[Layer]) -> Layer:
    """The layer whose most specific entry covers ``module``."""
    covering = [
        (len(entry), layer)
        for layer in layers
        for entry in layer.modules
        if module == entry or (entry != "mlcourse" and module.startswith(entry + "."))
    ]
    if not covering:
        raise LookupError(f"{module} is in no layer of {DOC.name}")
    return max(covering, key=lambda pair: pair[0])[1]


LAYERS = read_layers(DOC.read_text(encoding="utf-8"))
GRAPH = import_graph()


def test_the_table_is_read_and_numbers_its_layers_in_order():
    assert [layer.number for layer in LAYERS] == list(range(1, len(LAYERS) + 1))
    assert len(LAYERS) >= 5 and all(layer.modules for layer in LAYERS)


def test_a_layer_may_import_only_layers_below_it():
    for layer in LAYERS:
        assert all(0 < n < layer.number for n in layer.allowed), layer


def test_every_module_is_in_exactly_one_layer_and_every_name_exists():
    for module in GRAPH:
        layer_of(module, LAYERS)
    entries = [entry for layer in LAYERS for entry in layer.modules]
    assert len(entries) == len(set(entries)), "a name in two rows"
    for entry in entries:
        assert any(m == entry or m.startswith(entry + ".") for m in GRAPH), (
            f"{entry} does not exist"
        )


def test_no_import_cycles_in_mlcourse():
    assert find_cycle(GRAPH) is None, f"import cycle: {' -> '.join(find_cycle(GRAPH))}"


def test_every_import_is_one_the_table_allows():
    wrong = []
    for module, imports in sorted(GRAPH.items()):
        own = layer_of(module, LAYERS)
        for imported in sorted(imports):
            target = layer_of(imported, LAYERS)
            if target.number != own.number and target.number not in own.allowed:
                wrong.append(f"{module} ({own.name}) imports {imported} ({target.name})")
    assert wrong == []


@pytest.mark.parametrize(
    ("module", "imported"),
    [
        ("mlcourse.arguments", "mlcourse.datasets"),
        ("mlcourse.training.cli", "mlcourse.grading.cli"),
    ],
)
def test_an_upward_or_sideways_import_would_be_caught(module, imported):
    own, target = layer_of(module, LAYERS), layer_of(imported, LAYERS)
    assert target.number != own.number and target.number not in own.allowed


def test_a_cycle_would_be_caught():
    graph = {name: set(imports) for name, imports in GRAPH.items()}
    graph["mlcourse.arguments"].add("mlcourse.datasets")  # datasets imports arguments
    assert find_cycle(graph) is not None
