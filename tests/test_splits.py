import json
import subprocess
import sys

import numpy as np
import pytest

from mlcourse.integrity import ChecksumError
from mlcourse.splits import hash_split, load_split, save_split, stable_unit_interval

IDS = [f"item-{i}" for i in range(2000)]


def test_fractions_are_respected_approximately_and_splits_partition():
    split = hash_split(IDS, {"train": 0.7, "val": 0.1, "test": 0.2})
    all_idx = np.concatenate(list(split.values()))
    assert sorted(all_idx.tolist()) == list(range(len(IDS)))
    assert abs(len(split["train"]) / len(IDS) - 0.7) < 0.03
    assert abs(len(split["test"]) / len(IDS) - 0.2) < 0.03


def test_identical_across_processes_despite_hash_randomisation():
    code = (
        "from mlcourse.splits import hash_split;"
        "ids=[f'item-{i}' for i in range(2000)];"
        "print(hash_split(ids, {'train': 0.8, 'test': 0.2})['test'].tolist())"
    )
    outputs = set()
    for hash_seed in ("1", "2"):
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": hash_seed},
        )  # fmt: skip
        outputs.add(result.stdout)
    local = hash_split(IDS, {"train": 0.8, "test": 0.2})["test"].tolist()
    assert outputs == {f"{local}\n"}


def test_known_values_never_change():
    assert round(stable_unit_interval("digits-0042"), 6) == 0.927914
    assert stable_unit_interval(42) == stable_unit_interval("42")
    assert stable_unit_interval(np.int64(42)) == stable_unit_interval(42)


def test_adding_examples_does_not_move_old_ones():
    before = hash_split(IDS, {"train": 0.8, "test": 0.2})
    after = hash_split(IDS + [f"new-{i}" for i in range(500)], {"train": 0.8, "test": 0.2})
    assert set(before["test"]) <= set(after["test"])


def test_salt_changes_the_split():
    a = hash_split(IDS, {"train": 0.8, "test": 0.2})
    b = hash_split(IDS, {"train": 0.8, "test": 0.2}, salt="other")
    assert a["test"].tolist() != b["test"].tolist()


@pytest.mark.parametrize(
    ("ids", "fractions", "message"),
    [
        (["a", "b", "a"], {"train": 1.0}, "'a' appears more than once"),
        (["a"], {"train": 0.5, "test": 0.2}, "must sum to 1"),
        (["a"], {}, "must name at least one split"),
        (["a"], {"train": 1.5, "test": -0.5}, r"fractions\['train'\]=1.5 is out of range"),
        ([1.5], {"train": 1.0}, "split ids must be str, int or bytes"),
    ],
)
def test_bad_input(ids, fractions, message):
    with pytest.raises((ValueError, TypeError), match=message):
        hash_split(ids, fractions)


def test_save_load_round_trip_never_overwrites_and_detects_tampering(tmp_path):
    split = hash_split(IDS, {"train": 0.8, "test": 0.2})
    path = save_split(split, tmp_path / "split.json")
    loaded = load_split(path)
    assert all(np.array_equal(split[k], loaded[k]) for k in split)
    with pytest.raises(FileExistsError):
        save_split(split, path)
    document = json.loads(path.read_text())
    document["splits"]["test"][0] += 1
    path.write_text(json.dumps(document))
    with pytest.raises(ChecksumError, match="does not match its recorded checksum"):
        load_split(path)
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match="is not a split file"):
        load_split(tmp_path / "other.json")
