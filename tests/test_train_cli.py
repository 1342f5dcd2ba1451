"""The training command: configs, overrides, sweeps, run folders, MLflow and resume."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from test_artifacts import kill_mid_save

from mlcourse.config_fields import ConfigError
from mlcourse.integrity import ChecksumError
from mlcourse.numerics import PIN_VARIABLES, numerics_pins
from mlcourse.training.checkpoints import latest_checkpoint, load_trained_model
from mlcourse.training.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from mlcourse.training.config import TrainConfig
from mlcourse.training.data import load_data
from mlcourse.training.model import evaluate
from mlcourse.training.overrides import apply_overrides, expand_sweep
from mlcourse.training.runs import read_metrics
from mlcourse.training.tracking import tracking_uri

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
# A short, complete config: 1107 training digits / 32 = 35 steps per epoch.
SMALL = {
    "name": "small",
    "seed": 3,
    "epochs": 2,
    "batch_size": 32,
    "threads": 1,
    "data": {"dataset": "digits"},
    "model": {"hidden": [32], "dropout": 0.1},
    "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
    "scheduler": {"name": "cosine"},
}


def write_config(folder: Path, values: dict, name: str = "config.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its SHA-256: to prove nothing changed."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(autouse=True)
def no_tracking_server(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


# --- resume after a real kill -----------------------------------------------------------------


# The training command with a step hook that stops making progress after step N, so that
# the test can kill the process at a known point. The hook is this test's, passed to main().
HANGING_COMMAND = """
import sys, time
from mlcourse.training.cli import main

def hang_after(step):
    if step == int(sys.argv[1]):
        print(f"test hook: hanging after step {step}", flush=True)
        while True:
            time.sleep(1)

sys.exit(main(sys.argv[2:], on_step=hang_after))
"""


def test_resume_after_sigkill_is_bitwise_identical(tmp_path):
    """A run killed (SIGKILL) part-way and resumed ends with exactly the weights of a run
    that was never interrupted."""
    config = write_config(tmp_path, {**SMALL, "epochs": 3, "checkpoint_every": 20})
    runs = tmp_path / "runs"
    arguments = ["--config", str(config), "--runs-dir", str(runs), "--no-progress"]
    # Fresh commands without pins in their environment: the command pins the numerics itself.
    env = {k: v for k, v in os.environ.items() if k not in PIN_VARIABLES}
    whole = subprocess.Popen(
        [sys.executable, "-m", "mlcourse.train", *arguments, "--run-name", "whole"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    # Step 47 lies mid-epoch, 7 steps after the checkpoint at step 40: those steps, and the
    # metrics of epoch 1, must be redone or kept exactly right.
    victim = subprocess.Popen(
        [sys.executable, "-c", HANGING_COMMAND, "47", *arguments, "--run-name", "victim"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    seen = []
    for line in victim.stdout:  # blocks until the hook reports, or the process ends
        seen.append(line)
        if "hanging after step 47" in line or time.monotonic() > deadline:
            break
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL, "".join(seen) + victim.stderr.read()
    assert any("hanging after step 47" in line for line in seen), "".join(seen)

    victim_dir = runs / "victim"
    assert not (victim_dir / "summary.json").exists(), "the killed run must not have finished"
    assert latest_checkpoint(victim_dir, load=False).metadata["metrics"]["step"] == 40

    # resumed in a fresh command too, so that all three runs compute with the same pins
    # (this test process may run other kernels: ATEN_CPU_CAPABILITY=default, say)
    resume = subprocess.run(
        [sys.executable, "-m", "mlcourse.train", *arguments, "--run-name", "victim", "--resume",
         "--quiet"], capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert resume.returncode == EXIT_OK, resume.stdout + resume.stderr
    out, err = whole.communicate(timeout=300)
    assert whole.returncode == 0, err

    resumed = latest_checkpoint(victim_dir).state
    uninterrupted = latest_checkpoint(runs / "whole").state
    assert resumed["progress"]["step"] == uninterrupted["progress"]["step"] == 105
    for key, tensor in uninterrupted["model"].items():
        assert torch.equal(resumed["model"][key], tensor), key
    for key, value in uninterrupted["optimizer"]["state"].items():
        assert torch.equal(resumed["optimizer"]["state"][key]["momentum_buffer"],
                           value["momentum_buffer"])  # fmt: skip
    # the resumed run's per-epoch metrics are exactly those of the uninterrupted run
    assert read_metrics(victim_dir) == read_metrics(runs / "whole")
    summary = json.loads((victim_dir / "summary.json").read_text())
    assert summary["sessions"] == 2
    # the whole saved training state (RNG states and data position included) is the same
    # file, byte for byte
    assert summary["weights_sha256"] == json.loads(
        (runs / "whole" / "summary.json").read_text())["weights_sha256"]  # fmt: skip
    assert (victim_dir / "run_record.resume-1.json").exists()
    # every session records the numerics it ran under; the fresh commands pinned them
    record = json.loads((runs / "whole" / "run_record.json").read_text())
    pins = {k: v for k, v in record["environment"]["numerics"]["pins"].items() if v is not None}
    assert pins == numerics_pins()


def test_resume_before_the_first_checkpoint_starts_over(tmp_path, capsys):
    config = write_config(tmp_path, {**SMALL, "epochs": 1, "checkpoint_every": 0})
    runs = tmp_path / "runs"
    args = ["--config", str(config), "--runs-dir", str(runs), "--quiet"]
    assert main([*args, "--run-name", "ref"]) == EXIT_OK
    # a run folder whose process died before its first checkpoint
    (runs / "early").mkdir()
    for name in ("config.yaml", "run_record.json"):
        (runs / "early" / name).write_bytes((runs / "ref" / name).read_bytes())
    (runs / "early" / "metrics.jsonl").write_text('{"step": 35, "epoch": 1, "val_accu')
    assert main([*args, "--run-name", "early", "--resume"]) == EXIT_OK
    a = latest_checkpoint(runs / "early").state["model"]
    b = latest_checkpoint(runs / "ref").state["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_metrics(runs / "early") == read_metrics(runs / "ref")


# --- run folders are never overwritten --------------------------------------------------------


def test_existing_run_directory_is_never_overwritten(tmp_path, capsys):
    config = write_config(tmp_path, {**SMALL, "epochs": 1})
    runs = tmp_path / "runs"
    args = ["--config", str(config), "--runs-dir", str(runs)]
    assert main([*args, "--quiet"]) == EXIT_OK
    before = snapshot(runs)
    capsys.readouterr()

    assert main(args) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "already exists" in err and "--resume" in err and "--run-name" in err
    assert snapshot(runs) == before

    # resuming a finished run does nothing
    assert main([*args, "--resume"]) == EXIT_OK
    assert "already finished" in capsys.readouterr().out
    assert snapshot(runs) == before

    # resuming with other settings is refused: it could not reproduce the run
    assert main([*args, "--resume", "--set", "optimizer.lr=0.2"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "optimizer.lr: 0.1 -> 0.2" in err
    assert snapshot(runs) == before


# --- damaged runs: resume says what it found and what it did (issue 11) ------------------------


def checkpoint_folders(run: Path) -> list[Path]:
    """The run's checkpoint folders, oldest first (timestamps sort by time)."""
    return sorted((run / "checkpoints").glob("*/*/[0-9]*"), key=lambda p: p.name)


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def suggested_command(err: str) -> list[str]:
    """The ``mlcourse-train ...`` line a refusal prints, as argv for main()."""
    found = re.search(r"^\s*(mlcourse-train .*--resume-from .*)$", err, flags=re.MULTILINE)
    assert found, err
    return shlex.split(found.group(1))[1:]


def step_of(folder: Path) -> int:
    return json.loads((folder / "metadata.json").read_text())["metrics"]["step"]


@pytest.fixture
def two_runs(tmp_path, monkeypatch):
    """Two identical finished runs, 'whole' and 'broken', checkpointed every 10 steps."""
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path, {**SMALL, "epochs": 2, "checkpoint_every": 10})
    args = ["--config", "config.yaml", "--quiet"]
    assert main([*args, "--run-name", "whole"]) == EXIT_OK
    assert main([*args, "--run-name", "broken"]) == EXIT_OK
    return args, Path("runs/broken")


def test_corrupted_checkpoint_is_refused_naming_the_newest_verified_one(two_runs, capsys):
    args, run = two_runs
    (run / "summary.json").unlink()  # as if the process died just after its last save
    *_, previous, newest = checkpoint_folders(run)
    flip_a_byte(newest / "weights.pt")
    capsys.readouterr()
    assert main([*args, "--run-name", "broken", "--resume"]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and newest.as_posix() in err
    assert f"newest verified checkpoint is {previous.as_posix()} (step 60)" in err
    with pytest.raises(ChecksumError):
        load_trained_model(newest)

    # the printed command resumes from the verified checkpoint; the fallback is said and recorded
    assert main(suggested_command(err)) == EXIT_OK
    out = capsys.readouterr().out
    assert f"falling back to {previous.as_posix()} (step 60)" in out
    assert newest.name in out and "checksum mismatch" in out
    record = json.loads((run / "run_record.resume-1.json").read_text())
    resumed = record["run"]["resumed_from"]
    assert resumed["step"] == 60 and resumed["checkpoint"].endswith(previous.name)
    assert [s["checkpoint"].rsplit("/", 1)[-1] for s in resumed["skipped"]] == [newest.name]
    assert "checksum mismatch" in resumed["skipped"][0]["problem"]
    assert_same_final_weights(run, Path("runs/whole"))


def assert_same_final_weights(run: Path, reference: Path) -> None:
    final = json.loads((run / "summary.json").read_text())
    expected = json.loads((reference / "summary.json").read_text())
    assert final["weights_sha256"] == expected["weights_sha256"]
    assert read_metrics(run) == read_metrics(reference)


def test_unreadable_newest_metadata_is_refused_not_silently_skipped(two_runs, capsys):
    args, run = two_runs
    (run / "summary.json").unlink()
    *_, previous, newest = checkpoint_folders(run)
    (newest / "metadata.json").write_text("{ this is no longer JSON")
    capsys.readouterr()
    assert main([*args, "--run-name", "broken", "--resume"]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert newest.as_posix() in err and "metadata.json" in err
    assert f"newest verified checkpoint is {previous.as_posix()} (step 60)" in err
    assert not (run / "run_record.resume-1.json").exists(), "a refusal writes nothing"
    assert main(suggested_command(err)) == EXIT_OK
    assert "falling back" in capsys.readouterr().out
    assert_same_final_weights(run, Path("runs/whole"))


def test_finished_run_is_reverified_on_resume(two_runs, capsys):
    args, run = two_runs
    capsys.readouterr()
    assert main([*args, "--run-name", "broken", "--resume"]) == EXIT_OK
    assert "already finished and verified" in capsys.readouterr().out
    *_, previous, final = checkpoint_folders(run)
    flip_a_byte(final / "weights.pt")
    assert main([*args, "--run-name", "broken", "--resume"]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "finished, but its final checkpoint" in err and "checksum mismatch" in err
    assert f"newest verified checkpoint is {previous.as_posix()} (step 60)" in err
    # redoing the last steps from the verified checkpoint rebuilds the same final weights
    assert main(suggested_command(err)) == EXIT_OK
    assert_same_final_weights(run, Path("runs/whole"))
    capsys.readouterr()
    assert main([*args, "--run-name", "broken", "--resume"]) == EXIT_OK


def test_damaged_summary_of_a_finished_run_is_reported(two_runs, capsys):
    args, run = two_runs
    (run / "summary.json").write_text('{"checkpoint": ')
    capsys.readouterr()
    assert main([*args, "--run-name", "broken", "--resume"]) == EXIT_FAILED
    assert "summary.json" in capsys.readouterr().err


def test_run_without_any_verified_checkpoint_is_refused(two_runs, capsys):
    args, run = two_runs
    (run / "summary.json").unlink()
    for folder in checkpoint_folders(run):
        (folder / "SHA256SUMS").unlink()
    capsys.readouterr()
    assert main([*args, "--run-name", "broken", "--resume"]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "no verified checkpoint" in err and "--run-name" in err


def test_resume_from_must_name_a_checkpoint_of_that_run(two_runs, capsys):
    args, run = two_runs
    other = checkpoint_folders(Path("runs/whole"))[0]
    for extra, expected in (
        (["--resume-from", str(other)], "is not a checkpoint of run 'broken'"),
        (["--resume-from", "nowhere"], "is not a checkpoint of run 'broken'"),
        (["--resume-from", str(checkpoint_folders(run)[0]), "--sweep", "seed=1,2"],
         "--resume-from resumes one run"),
    ):  # fmt: skip
        assert main([*args, "--run-name", "broken", *extra]) == EXIT_USAGE
        assert expected in capsys.readouterr().err


def test_resume_removes_and_reports_staging_left_by_a_killed_save(two_runs, capsys):
    """A process SIGKILLed while saving a checkpoint leaves a hidden staging folder; the
    next session (a new process) removes it, says so, and records it."""
    args, run = two_runs
    (run / "summary.json").unlink()
    staging = kill_mid_save(run / "checkpoints", version="broken", model="small")
    resume = subprocess.run(
        [sys.executable, "-m", "mlcourse.train", *args, "--run-name", "broken", "--resume",
         "--no-progress"], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert resume.returncode == 0, resume.stderr
    assert f"removed stale staging folder {staging.as_posix()}" in resume.stdout
    assert not staging.exists()
    record = json.loads((run / "run_record.resume-1.json").read_text())
    assert record["run"]["removed_staging"] == [staging.relative_to(run).as_posix()]
    assert_same_final_weights(run, Path("runs/whole"))


# --- bad configs fail before training, with a clear message, writing nothing -----------------

BAD_CONFIGS = [
    ({"epoch": 3}, ["unknown key 'epoch'", "did you mean 'epochs'", "'batch_size'"]),
    ({"optimizer": {"lrr": 0.1}}, ["unknown key 'optimizer.lrr'", "did you mean 'optimizer.lr'"]),
    ({"batch_size": "32"}, ["batch_size must be an integer, got '32' (str)"]),
    ({"epochs": 2.5}, ["epochs must be an integer, got 2.5"]),
    ({"optimizer": {"lr": "1e-3"}}, ["optimizer.lr must be a real number", "1.0e-3"]),
    ({"optimizer": {"lr": 0}}, ["optimizer.lr=0.0 is out of range", "(0.0, inf"]),
    ({"optimizer": {"lr": -0.1}}, ["optimizer.lr=-0.1 is out of range"]),
    ({"batch_size": 0}, ["batch_size=0 is out of range", "[1, inf)"]),
    ({"epochs": -1}, ["epochs=-1 is out of range"]),
    ({"batch_size": 5000}, ["batch_size=5000 is larger than the 1107 training examples"]),
    ({"model": {"dropout": 1.0}}, ["model.dropout=1.0 is out of range", "[0.0, 1.0)"]),
    ({"model": {"hidden": [64, 0]}}, ["model.hidden[1]=0 is out of range"]),
    ({"model": {"hidden": 64}}, ["model.hidden must be a list of layer widths"]),
    ({"model": {"activation": "sigmoid"}}, ["model.activation='sigmoid' is not supported",
                                            "'relu', 'tanh', 'gelu'"]),
    ({"optimizer": {"name": "adam", "momentum": 0.9}},
     ["optimizer.momentum is used only when optimizer.name is one of 'sgd'"]),
    ({"scheduler": {"name": "cosine", "gamma": 0.3}}, ["scheduler.gamma is used only"]),
    ({"data": {"dataset": "moons", "n_classes": 3}},
     ["data.n_classes is used only when data.dataset is one of 'blobs', 'spirals'"]),
    ({"data": {"dataset": "digits", "noise": 0.5}}, ["data.noise is used only"]),
    ({"optimizer": "sgd"}, ["section 'optimizer' must be a mapping"]),
    ({"resources": {"device": "tpu"}}, ["resources.device='tpu' is not supported"]),
    ({"resources": {"precision": "int8"}},
     ["resources.precision='int8' stores frozen weights in int8",
      "mlcourse-train trains every weight, which int8 cannot"]),
    ({"resources": {"model_size": "large"}}, ["model.hidden=[32] and resources.model_size='large' both set"]),
    ({"resources": {"model_size": "huge"}}, ["resources.model_size='huge' is not supported"]),
    ({"resources": {"gpu": True}}, ["unknown key 'resources.gpu'"]),
    ({"name": "my model"}, ["name='my model' is not a valid name"]),
    ({"seed": -1}, ["seed=-1 is out of range"]),
    ({"deterministic": "yes"}, ["deterministic must be True or False"]),
    ({"tracking": {"mlflow": 1}}, ["tracking.mlflow must be True or False"]),
]  # fmt: skip


@pytest.mark.parametrize(("change", "expected"), BAD_CONFIGS)
def test_bad_config_fails_before_training(tmp_path, capsys, change, expected):
    values = {**SMALL}
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    config = write_config(tmp_path, values)
    runs = tmp_path / "runs"
    assert main(["--config", str(config), "--runs-dir", str(runs)]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    for text in expected:
        assert text in captured.err, captured.err
    assert "Nothing was written." in captured.err
    assert not runs.exists()


DUPLICATE_KEYS = [
    ("epochs.yaml", "name: dup\nepochs: 2\nbatch_size: 32\nepochs: 3\n",
     "key 'epochs' appears twice (lines 2 and 4)"),
    # the case: a second section would drop lr 0.1 -> 0.05 and momentum 0.9 -> 0.0
    ("section.yaml",
     "optimizer:\n  name: sgd\n  lr: 0.1\n  momentum: 0.9\nepochs: 1\noptimizer: {name: adam}\n",
     "key 'optimizer' appears twice (lines 1 and 6)"),
    ("deep.yaml", "model:\n  hidden: [8]\n  activation: relu\n  activation: tanh\n",
     "key 'model.activation' appears twice (lines 3 and 4)"),
    ("section.json", '{"optimizer": {"name": "sgd", "lr": 0.1},\n "optimizer": {"name": "adam"}}',
     "key 'optimizer' appears twice (lines 1 and 2)"),
    ("deep.json", '{"epochs": 1,\n "optimizer": {"lr": 0.1,\n               "lr": 0.05}}',
     "key 'optimizer.lr' appears twice (lines 2 and 3)"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "text", "expected"), DUPLICATE_KEYS)
def test_duplicate_keys_are_refused_with_file_path_and_lines(
    tmp_path, capsys, name, text, expected
):
    path = tmp_path / name
    path.write_text(text)
    runs = tmp_path / "runs"
    assert main(["--config", str(path), "--runs-dir", str(runs), "--dry-run"]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert str(path) in captured.err and expected in captured.err, captured.err
    assert "Nothing was written." in captured.err
    assert not runs.exists()


def test_duplicate_keys_in_an_override_value_are_refused(tmp_path, capsys):
    config = write_config(tmp_path, SMALL)
    code = main(["--config", str(config), "--runs-dir", str(tmp_path / "runs"), "--dry-run",
                 "--set", "optimizer={name: sgd, lr: 0.1, lr: 0.2}"])  # fmt: skip
    assert code == EXIT_USAGE
    assert "key 'lr' appears twice" in capsys.readouterr().err


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({"epochs": 0, "batch_size": -1, "optimizer": {"lr": 0, "x": 1}})
    assert len(info.value.problems) == 4
    message = str(info.value)
    for text in ("epochs=0", "batch_size=-1", "optimizer.lr=0", "unknown key 'optimizer.x'"):
        assert text in message


BAD_COMMAND_LINES = [
    (["--set", "optimizer.lr"], "override 'optimizer.lr' must look like key=value"),
    (["--set", "epochs.x=1"], "'epochs' is a value (2), not a section"),
    (["--set", "optimizer.lr=-1"], "optimizer.lr=-1.0 is out of range"),
    (["--sweep", "seed"], "sweep 'seed' must look like key=v1,v2"),
    (["--sweep", "optimizer.lr=0.1,-1"], "optimizer.lr=-1.0 is out of range"),
    (["--sweep", "seed=1,1"], "several runs would be named"),
    (["--run-name", "a b"], "run name 'a b' is not valid"),
]


@pytest.mark.parametrize(("extra", "expected"), BAD_COMMAND_LINES)
def test_bad_overrides_fail_before_training(tmp_path, capsys, extra, expected):
    config = write_config(tmp_path, SMALL)
    runs = tmp_path / "runs"
    assert main(["--config", str(config), "--runs-dir", str(runs), *extra]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert expected in err
    assert not runs.exists()


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("missing.yaml", None, "does not exist"),
        ("config.toml", "epochs = 3", "has suffix '.toml'"),
        ("broken.yaml", "epochs: [3\n", "cannot parse the file"),
        ("list.yaml", "- epochs\n", "must hold a mapping"),
        ("broken.json", '{"epochs": }', "Expecting value"),
    ],
)
def test_unreadable_config_files(tmp_path, capsys, name, text, expected):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    assert main(["--config", str(path), "--runs-dir", str(tmp_path / "runs")]) == EXIT_USAGE
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_usage_errors_and_help(capsys):
    assert main([]) == EXIT_USAGE  # --config is required
    assert "--config" in capsys.readouterr().err
    assert main(["--help"]) == EXIT_OK
    out = capsys.readouterr().out
    for flag in ("--set", "--sweep", "--resume", "--run-name", "--runs-dir", "--mlflow"):
        assert flag in out


# --- what a run writes ------------------------------------------------------------------------


def test_run_folder_contents_and_report(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path, {**SMALL, "checkpoint_every": 25})
    assert main(["--config", "config.yaml", "--progress"]) == EXIT_OK
    captured = capsys.readouterr()
    run = Path("runs/small")
    for line in ("run directory  runs/small/", "config         runs/small/config.yaml",
                 "run record     runs/small/run_record.json", "metrics        runs/small/metrics.jsonl",
                 "checkpoints    runs/small/checkpoints/small/small/ (3 kept; final at step 70)"):  # fmt: skip
        assert line in captured.out
    assert re.search(r"70/70", captured.err), "the progress bar goes to stderr"

    assert TrainConfig.from_dict(yaml.safe_load((run / "config.yaml").read_text())) == (
        TrainConfig.from_file(config)
    )
    record = json.loads((run / "run_record.json").read_text())
    assert record["seeds"]["seed"] == 3
    assert record["datasets"][0]["name"] == "digits"
    assert record["hyperparameters"]["optimizer"]["lr"] == 0.1
    assert record["run"]["command"][:2] == ["--config", "config.yaml"]
    metrics = read_metrics(run)
    assert [m["epoch"] for m in metrics] == [1, 2] and [m["step"] for m in metrics] == [35, 70]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 70 and summary["sessions"] == 1
    # the checkpoint rebuilds a model that scores exactly what the summary says
    model, checkpoint = load_trained_model(run / summary["checkpoint"])
    assert checkpoint.weights_sha256 == summary["weights_sha256"]
    assert checkpoint.metadata["dataset"]["sizes"] == summary["sizes"]
    data = load_data(TrainConfig.from_file(config).data)
    assert evaluate(model, *data.test)["accuracy"] == summary["test_accuracy"]
    assert load_trained_model(run)[1].path == checkpoint.path  # a run folder: newest checkpoint
    # checkpoints load with weights_only=True: tensors, numbers and strings only
    state = checkpoint.state
    assert state["rng"]["torch"].dtype == torch.uint8 and state["progress"]["finished"] is True


def test_dry_run_writes_nothing(tmp_path, capsys):
    config = write_config(tmp_path, SMALL)
    runs = tmp_path / "runs"
    code = main(["--config", str(config), "--runs-dir", str(runs), "--dry-run",
                 "--sweep", "optimizer.lr=0.05,0.1", "--set", "epochs=4"])  # fmt: skip
    assert code == EXIT_OK
    out = capsys.readouterr().out
    assert "# run 'small-lr0.05' (start)" in out and "# run 'small-lr0.1' (start)" in out
    assert "epochs: 4" in out
    assert not runs.exists()


def test_model_size_sets_the_widths_and_resume_keeps_them(tmp_path, capsys):
    values = {**SMALL, "epochs": 1, "model": {}, "resources": {"model_size": "medium"}}
    config = write_config(tmp_path, values)
    runs = tmp_path / "runs"
    args = ["--config", str(config), "--runs-dir", str(runs)]
    assert main([*args, "--dry-run", "--sweep", "resources.model_size=small,large"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "# hidden widths [64] (from resources.model_size='small')" in out
    assert "# hidden widths [1024, 512, 256] (from resources.model_size='large')" in out
    assert main([*args, "--quiet"]) == EXIT_OK
    run = runs / "small"
    model, checkpoint = load_trained_model(run)
    assert [m.out_features for m in model if isinstance(m, torch.nn.Linear)] == [256, 128, 10]
    record = json.loads((run / "run_record.json").read_text())
    assert record["run"]["model"] == {"hidden": [256, 128], "from": "resources.model_size"}
    assert record["resources"]["model_size"] == "medium"
    # A run whose record says it was built with other widths (say, model_size 'auto' on a
    # GPU) is not resumed where the same config picks another size.
    (run / "summary.json").unlink()
    record["run"]["model"]["hidden"] = [512]
    (run / "run_record.json").write_text(json.dumps(record))
    capsys.readouterr()
    assert main([*args, "--resume"]) == EXIT_USAGE
    assert (
        "started with hidden widths [512], but resources.model_size='medium' picks [256, 128]"
        in (capsys.readouterr().err)
    )


def test_sweep_runs_every_combination(tmp_path, capsys):
    config = write_config(tmp_path, {**SMALL, "epochs": 1})
    runs = tmp_path / "runs"
    code = main(["--config", str(config), "--runs-dir", str(runs), "--quiet",
                 "--sweep", "model.hidden=[[16], [32, 16]]", "--sweep", "seed=0,1"])  # fmt: skip
    assert code == EXIT_OK
    names = sorted(p.name for p in runs.iterdir())
    assert names == ["small-hidden16-seed0", "small-hidden16-seed1",
                     "small-hidden32x16-seed0", "small-hidden32x16-seed1"]  # fmt: skip
    saved = yaml.safe_load((runs / "small-hidden32x16-seed1" / "config.yaml").read_text())
    assert saved["model"]["hidden"] == [32, 16] and saved["seed"] == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all("test_accuracy=" in line for line in lines)
    # a second sweep with --resume finds every run finished and changes nothing
    before = snapshot(runs)
    assert main(["--config", str(config), "--runs-dir", str(runs), "--quiet", "--resume",
                 "--sweep", "model.hidden=[[16], [32, 16]]", "--sweep", "seed=0,1"]) == EXIT_OK  # fmt: skip
    assert snapshot(runs) == before


def test_in_process_runs_leave_the_callers_state_alone(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    config = write_config(tmp_path, {**SMALL, "epochs": 1, "threads": 1})
    assert main(["--config", str(config), "--runs-dir", str(tmp_path / "runs"), "--quiet"]) == 0
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


# --- MLflow ------------------------------------------------------------------------------------


def test_mlflow_tracking_in_the_local_store_and_via_environment(tmp_path, capsys, monkeypatch):
    from mlflow.tracking import MlflowClient

    config = write_config(tmp_path, {**SMALL, "epochs": 2, "tracking": {"experiment": "cli-test"}})
    runs = tmp_path / "runs"
    code = main(["--config", str(config), "--runs-dir", str(runs), "--mlflow",
                 "--sweep", "seed=0,1"])  # fmt: skip
    assert code == EXIT_OK
    captured = capsys.readouterr()
    assert captured.err == "", "MLflow must not write to stderr"
    assert "mlflow         experiment 'cli-test', run 'small-seed1' at sqlite:///" in captured.out
    assert tracking_uri(runs) == f"sqlite:///{runs.as_posix()}/mlflow.db"
    client = MlflowClient(tracking_uri=tracking_uri(runs))
    experiment = client.get_experiment_by_name("cli-test")
    found = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in found) == ["small-seed0", "small-seed1"]
    run = next(r for r in found if r.info.run_name == "small-seed1")
    assert run.info.status == "FINISHED"
    assert run.data.params["optimizer.lr"] == "0.1" and run.data.params["seed"] == "1"
    summary = json.loads((runs / "small-seed1" / "summary.json").read_text())
    assert run.data.metrics["test_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert run.data.tags["mlcourse.weights_sha256"] == summary["weights_sha256"]
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in history] == [35, 70]

    # the same code logs elsewhere when MLFLOW_TRACKING_URI says so (e.g. a server)
    elsewhere = f"sqlite:///{(tmp_path / 'other.db').as_posix()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", elsewhere)
    assert main(["--config", str(config), "--runs-dir", str(runs), "--mlflow", "--quiet",
                 "--run-name", "elsewhere"]) == EXIT_OK  # fmt: skip
    other = MlflowClient(tracking_uri=elsewhere)
    names = [r.info.run_name for r in other.search_runs(
        [other.get_experiment_by_name("cli-test").experiment_id])]  # fmt: skip
    assert names == ["elsewhere"]


# --- the shipped example configs ----------------------------------------------------------------


def documented_metrics() -> dict[str, tuple[float, float]]:
    """``configs/<file>`` -> (val, test accuracy) from the table in docs/training_cli.md."""
    text = (ROOT / "docs" / "training_cli.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\|\s*`configs/([\w.]+)`\s*\|.*?\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*$",
                      text, flags=re.MULTILINE)  # fmt: skip
    return {name: (float(val), float(test)) for name, val, test in rows}


def test_every_example_config_is_valid_and_documented():
    examples = sorted(p.name for p in CONFIGS.glob("*.yaml"))
    assert examples, "configs/ ships example configs"
    documented = documented_metrics()
    assert sorted(documented) == examples
    for name in examples:
        TrainConfig.from_file(CONFIGS / name)


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_example_config_reaches_its_documented_metrics(tmp_path, capsys, name):
    """Each example trains (a couple of seconds) to the accuracy docs/training_cli.md states.
    CPU results are bit-identical run to run on one machine; other CPUs may differ in the
    last bits, so allow one or two examples' worth."""
    assert main(["--config", str(CONFIGS / name), "--runs-dir", str(tmp_path), "--quiet"]) == 0
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    summary = json.loads((run / "summary.json").read_text())
    val, test = documented_metrics()[name]
    assert summary["val_accuracy"] == pytest.approx(val, abs=0.01)
    assert summary["test_accuracy"] == pytest.approx(test, abs=0.01)


# --- the config helpers -------------------------------------------------------------------------


def test_overrides_and_sweeps():
    raw = {"optimizer": {"lr": 0.1}}
    assert apply_overrides(raw, ["optimizer.lr=0.05", "model.hidden=[8, 4]", "epochs=3"]) == {
        "optimizer": {"lr": 0.05}, "model": {"hidden": [8, 4]}, "epochs": 3,
    }  # fmt: skip
    assert raw == {"optimizer": {"lr": 0.1}}, "overrides never modify their input"
    runs = expand_sweep(raw, ["optimizer.name=sgd,adam", "seed=0,1,2"])
    assert len(runs) == 6
    assert runs[4] == ("-nameadam-seed1", {"optimizer": {"lr": 0.1, "name": "adam"}, "seed": 1})
    with pytest.raises(ConfigError, match="given twice"):
        expand_sweep(raw, ["seed=0", "seed=1"])


def test_config_round_trip():
    config = TrainConfig.from_file(CONFIGS / "spirals_mlp.yaml")
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    flat = config.flat()
    assert flat["model.hidden"] == [64, 64] and flat["resources.device"] == "auto"


def test_divergence_stops_the_run_with_a_clear_message(tmp_path, capsys):
    config = write_config(tmp_path, {**SMALL, "optimizer": {"name": "sgd", "lr": 1.0e30}})
    runs = tmp_path / "runs"
    assert main(["--config", str(config), "--runs-dir", str(runs), "--quiet"]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "TrainingDiverged" in err and "optimizer.lr=1e+30 is probably too high" in err
    assert not (runs / "small" / "summary.json").exists()
