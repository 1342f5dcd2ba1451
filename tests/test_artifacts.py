import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

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
    assert list((tmp_path / "mlp").rglob("*")) == [], "no staging folder, no claimed version"
    store.save("mlp", "v1", {"w": torch.ones(1)})  # the version is still free
    store.save("mlp", "v1", {"w": torch.ones(1)}, new_checkpoint_in_version=True)
    with pytest.raises(ValueError):
        store.save("mlp", "v1", {"w": torch.ones(1)}, metrics={"loss": float("inf")},
                   new_checkpoint_in_version=True)  # fmt: skip
    assert len(store.timestamps("mlp", "v1")) == 2
    assert not [p for p in (tmp_path / "mlp").rglob("*.partial")]


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


# --- a version is claimed atomically (issue 11) -----------------------------------------------


def _save_when_all_are_ready(root, barrier, outcomes, state) -> None:
    store = ArtifactStore(root)
    barrier.wait()
    try:
        store.save("mlp", "v1", state)
        outcomes.put("saved")
    except ArtifactExistsError:
        outcomes.put("exists")
    except BaseException as error:  # anything else is a bug the test must show
        outcomes.put(f"{type(error).__name__}: {error}")


def test_simultaneous_writers_of_a_new_version_get_exactly_one_winner(tmp_path):
    """Real processes released together by a barrier: exactly one creates the version,
    every other one gets ArtifactExistsError, and the version holds one checkpoint."""
    context = multiprocessing.get_context("fork")
    state = {"w": torch.zeros(256, 1024)}  # 1 MiB: writers overlap while serialising it
    writers = 3
    for trial in range(12):
        root = tmp_path / f"trial{trial}"
        barrier, outcomes = context.Barrier(writers), context.Queue()
        processes = [
            context.Process(target=_save_when_all_are_ready, args=(root, barrier, outcomes, state))
            for _ in range(writers)
        ]
        for process in processes:
            process.start()
        results = sorted(outcomes.get(timeout=60) for _ in processes)
        for process in processes:
            process.join(timeout=60)
        assert results == ["exists"] * (writers - 1) + ["saved"], f"trial {trial}: {results}"
        store = ArtifactStore(root)
        assert len(store.timestamps("mlp", "v1")) == 1, f"trial {trial}"
        assert not list(root.rglob("*.partial")), "losers leave no staging folder"
        assert torch.equal(store.load("mlp", "v1").state["w"], state["w"])


# --- a save killed part-way leaves a staging folder the store finds (issue 11) -----------------


def _save_forever(root, version, state) -> None:
    ArtifactStore(root).save("mlp", version, state, new_checkpoint_in_version=True)


def kill_mid_save(root, version: str = "v1", model: str = "mlp"):
    """SIGKILL a real process while it saves a large checkpoint into ``root``; return the
    staging folder it leaves behind."""
    state = {"w": torch.zeros(48 * 2**20 // 4)}  # 48 MiB: a save long enough to catch
    writer = multiprocessing.get_context("fork").Process(
        target=ArtifactStore(root).save,
        args=(model, version, state),
        kwargs={"new_checkpoint_in_version": True},
    )
    writer.start()
    deadline = time.monotonic() + 60
    while not list(root.rglob("*.partial")):
        assert writer.is_alive(), "the writer finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.0005)
    os.kill(writer.pid, signal.SIGKILL)
    writer.join(timeout=30)
    assert writer.exitcode == -signal.SIGKILL
    (staging,) = root.rglob("*.partial")
    return staging


def test_staging_left_by_a_killed_save_is_found_and_removed(tmp_path):
    store = ArtifactStore(tmp_path)
    kept = store.save("mlp", "v1", {"w": torch.ones(1)})
    staging = kill_mid_save(tmp_path)
    assert store.timestamps("mlp", "v1") == [kept.path.name], "no half checkpoint is visible"
    # A folder made after this process started may belong to a save still under way
    # (in this process or another): it is not stale for this process...
    assert store.stale_staging() == []
    # ...but it is for one started later, since its writer is dead.
    assert store.stale_staging(older_than=time.time() + 1) == [staging]
    script = (
        "import sys; from mlcourse.artifacts import ArtifactStore; "
        "print([p.name for p in ArtifactStore(sys.argv[1]).remove_stale_staging()])"
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    assert out.strip() == repr([staging.name])
    assert not staging.exists()
    assert store.load("mlp", "v1").path == kept.path


def test_staging_of_a_live_writer_is_never_stale(tmp_path):
    store = ArtifactStore(tmp_path)
    store.save("mlp", "v1", {"w": torch.ones(1)})
    alive = tmp_path / "mlp" / "v1" / f".20990101T000000.000000Z.{os.getpid()}.abcdefgh.partial"
    alive.mkdir()
    os.utime(alive, (0, 0))
    assert store.stale_staging(older_than=time.time() + 1) == []
    dead = tmp_path / "mlp" / ".v2.20990101T000000.000000Z.abcdefgh.partial"  # no pid: unknown
    dead.mkdir()
    os.utime(dead, (0, 0))
    assert store.remove_stale_staging() == [dead]
    assert alive.exists() and not dead.exists()
