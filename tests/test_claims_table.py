"""The table of every claim on seeds 0-4 and both kernel sets (``benchmarks/claims.py``) is
complete, current and all green: a claim that holds only on seed 0 or on one CPU cannot land.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import claims as claims_table  # noqa: E402

from lesson_runs import KERNEL_SETS  # noqa: E402
from mlcourse.notebooks import lesson_paths  # noqa: E402

STEMS = [p.stem for p in lesson_paths()]
REGENERATE = "re-run `python benchmarks/claims.py --lessons {number}`"


@pytest.fixture(scope="module")
def table():
    assert claims_table.TABLE_JSON.exists(), "no benchmarks/claims.json: run benchmarks/claims.py"
    return json.loads(claims_table.TABLE_JSON.read_text())


@pytest.mark.parametrize("stem", STEMS)
def test_table_is_current_complete_and_green(stem, table):
    entry = table["lessons"].get(stem)
    regenerate = REGENERATE.format(number=stem[:2])
    assert entry, f"{stem} is not in the claims table: {regenerate}"
    assert entry["hash"] == claims_table.source_hash(stem), (
        f"{stem}'s code or claims changed since the table was made: {regenerate}"
    )
    assert set(claims_table.SEEDS) <= set(entry["seeds"])
    claims = set(claims_table.claims_of(stem))
    for seed in entry["seeds"]:
        for kernels in KERNEL_SETS:
            run = entry["runs"][f"seed{seed}-{kernels}"]
            assert "error" not in run, f"{stem} failed to run with seed {seed}, {kernels} kernels"
            assert set(run["claims"]) == claims, f"{stem}: the table's claims differ: {regenerate}"
            failed = {n: c["error"] for n, c in run["claims"].items() if not c["passed"]}
            assert not failed, f"{stem}, seed {seed}, {kernels} kernels: {failed}"


def test_rendered_page_matches_the_data(table):
    assert claims_table.TABLE_MD.read_text() == claims_table.render(table)


def test_recorder_sees_what_a_claim_reads():
    recorder = claims_table.ReadRecorder({"a": 1, "b": 2})
    assert recorder["b"] == 2 and recorder["a"] == 1
    assert recorder.read == ["b", "a"]
    failing = claims_table._check(lambda r: (_ for _ in ()).throw(AssertionError(r["a"])), {"a": 3})
    assert failing == {"passed": False, "error": "AssertionError: 3", "values": {"a": 3}}
