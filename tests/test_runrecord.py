import json
import subprocess

import pytest
import torch

from mlcourse.datasets import load_dataset
from mlcourse.resources import resolve
from mlcourse.runrecord import collect_run_record, git_info
from mlcourse.seeding import seed_everything


def test_record_holds_environment_inputs_and_is_json(tmp_path):
    record = collect_run_record(
        seeds=seed_everything(5),
        resources=resolve(device="cpu"),
        datasets=[load_dataset("digits")],
        hyperparameters={"lr": 0.1, "layers": [64, 10]},
    )
    env = record["environment"]
    assert env["torch"] == torch.__version__
    assert env["python"].startswith("3.11")
    assert env["cuda"] == torch.cuda.is_available()
    for key in ("os", "cpu", "cpu_count", "cudnn", "gpus", "cuda_build"):
        assert key in env
    assert record["packages"]["torch"].startswith("2.14")
    assert record["seeds"]["seed"] == 5
    assert record["resources"]["device"] == "cpu"
    assert record["datasets"][0]["version"] == "1.0.0"
    assert record["hyperparameters"] == {"lr": 0.1, "layers": [64, 10]}
    path = record.save(tmp_path / "record.json")
    assert json.loads(path.read_text())["seeds"]["seed"] == 5
    with pytest.raises(FileExistsError):
        record.save(path)
    assert "<table>" in record._repr_html_()


def test_unknown_package_is_recorded_as_missing():
    record = collect_run_record(packages=["torch", "surely-not-installed-pkg"])
    assert record["packages"]["surely-not-installed-pkg"] is None


def test_git_commit_is_recorded_inside_a_repository(tmp_path):
    assert git_info(tmp_path) is None
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f.txt").write_text("x")
    subprocess.run(["git", "-C", str(tmp_path), "add", "f.txt"], check=True)
    subprocess.run(
        ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.org",
         "commit", "-qm", "init"], check=True,
    )  # fmt: skip
    info = git_info(tmp_path)
    assert len(info["commit"]) == 40 and info["dirty"] is False
    (tmp_path / "f.txt").write_text("changed")
    assert git_info(tmp_path)["dirty"] is True
