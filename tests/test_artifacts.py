import json

import pytest
import torch

from mlcourse.artifacts import (
    ArtifactExistsError,
    ArtifactNotFoundError,
    ArtifactStore,
    load_checkpoint,
)
from mlcourse.integrity import ChecksumError
from mlcourse.runrecord import collect_run_record


def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))


def test_round_trip_with_metadata(tmp_path):
    store = ArtifactStore(tmp_path)
    net = model()
    saved = store.save(
        "mlp", "v1", net.state_dict(),
        config={"hidden": 3}, metrics={"accuracy": 0.9},
        dataset={"name": "digits", "version": "1.0.0"}, run_record=collect_run_record(),
    )  # fmt: skip
    assert saved.path.parent == tmp_path / "mlp" / "v1"
    assert sorted(p.name for p in saved.path.iterdir()) == [
        "SHA256SUMS",
        "metadata.json",
        "weights.pt",
    ]
    loaded = store.load("mlp", "v1")
    fresh = model()
    fresh.load_state_dict(loaded.state)
    x = torch.randn(5, 4)
    assert torch.equal(fresh(x), net(x))
    meta = loaded.metadata
    assert meta["config"] == {"hidden": 3} and meta["metrics"] == {"accuracy": 0.9}
    assert meta["dataset"]["version"] == "1.0.0" and meta["parent"] is None
    assert "environment" in meta["run_record"]


def test_existing_version_is_never_overwritten(tmp_path):
    store = ArtifactStore(tmp_path)
    first = store.save("mlp", "v1", {"w": torch.ones(2)})
    with pytest.raises(ArtifactExistsError, match="version 'v1' of 'mlp' already exists"):
        store.save("mlp", "v1", {"w": torch.zeros(2)})
    assert torch.equal(store.load("mlp", "v1").state["w"], torch.ones(2))
    second = store.save("mlp", "v1", {"w": torch.zeros(2)}, new_checkpoint_in_version=True)
    assert store.timestamps("mlp", "v1") == sorted([first.path.name, second.path.name])
    assert torch.equal(store.load("mlp", "v1").state["w"], torch.zeros(2))  # newest
    assert torch.equal(store.load("mlp", "v1", first.path.name).state["w"], torch.ones(2))


def test_parent_is_named_by_checksum(tmp_path):
    store = ArtifactStore(tmp_path)
    base = store.save("base", "v1", {"w": torch.ones(2)})
    child = store.save("adapter", "v1", {"a": torch.ones(1)}, parent=base)
    parent = store.load("adapter", "v1").metadata["parent"]
    assert parent == {
        "model_name": "base",
        "version": "v1",
        "timestamp": base.path.name,
        "weights_sha256": base.weights_sha256,
    }
    assert child.metadata["parent"]["weights_sha256"] == store.load("base", "v1").weights_sha256
    with pytest.raises(
        ValueError, match="parent must be a Checkpoint or a mapping with 'weights_sha256'"
    ):
        store.save("adapter", "v2", {}, parent={"model_name": "base"})


def test_corruption_is_detected(tmp_path):
    store = ArtifactStore(tmp_path)
    saved = store.save("mlp", "v1", model().state_dict())
    weights = saved.path / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="checksum mismatch for .*weights.pt"):
        store.load("mlp", "v1")


def test_tampered_metadata_is_detected(tmp_path):
    saved = ArtifactStore(tmp_path).save("mlp", "v1", {"w": torch.ones(1)}, metrics={"acc": 0.5})
    meta = saved.path / "metadata.json"
    meta.write_text(meta.read_text().replace("0.5", "0.99"))
    with pytest.raises(ChecksumError, match="metadata.json"):
        load_checkpoint(saved.path)


def test_loading_never_runs_pickled_code(tmp_path):
    store = ArtifactStore(tmp_path)
    saved = store.save("mlp", "v1", {"w": torch.ones(1)})

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    # Replace the weights with a pickle that runs code, and fix up both checksums.
    torch.save({"w": Evil()}, saved.path / "weights.pt")
    from mlcourse.integrity import sha256_file, write_sums

    meta = json.loads((saved.path / "metadata.json").read_text())
    meta["files"]["weights.pt"] = sha256_file(saved.path / "weights.pt")
    (saved.path / "metadata.json").write_text(json.dumps(meta))
    (saved.path / "SHA256SUMS").unlink()
    write_sums(saved.path, ["weights.pt", "metadata.json"])
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        load_checkpoint(saved.path)


def test_failed_save_leaves_no_partial_checkpoint(tmp_path):
    store = ArtifactStore(tmp_path)
    with pytest.raises(ValueError):
        store.save("mlp", "v1", {"w": torch.ones(1)}, metrics={"loss": float("nan")})
    assert store.timestamps("mlp", "v1") == []
    assert [p for p in (tmp_path / "mlp" / "v1").iterdir()] == []


def test_missing_and_bad_names(tmp_path):
    store = ArtifactStore(tmp_path)
    store.save("mlp", "v1", {"w": torch.ones(1)})
    with pytest.raises(ArtifactNotFoundError, match=r"version 'v2'.*versions present: \['v1'\]"):
        store.load("mlp", "v2")
    with pytest.raises(ArtifactNotFoundError, match="timestamp='x' not found"):
        store.load("mlp", "v1", "x")
    with pytest.raises(ValueError, match="model_name='../evil' is not a valid name"):
        store.save("../evil", "v1", {})
    with pytest.raises(TypeError, match="state must be a mapping"):
        store.save("mlp", "v3", [1, 2])
