"""The package as a wheel: built, installed (not editable) into a fresh environment, and
used from a folder outside the repository, with no course folder to fall back on.

The fresh environment gets its dependencies (torch and the rest) from the course's own
environment through a ``.pth`` file that holds the path of its ``site-packages``: a plain
path line, so the ``.pth`` files there (the checkout's editable finder among them) are not
run and the checkout cannot stand in for the wheel. Nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What the build reads: the project file, the package and the files the wheel carries.
BUILD_INPUTS = ("pyproject.toml", "README.md", "mlcourse", "datasets", "configs")
# Variables that would point the installed package back at the checkout.
CHECKOUT_ENV = ("PYTHONPATH", "MLCOURSE_ROOT", "MLCOURSE_DATA_DIR", "VIRTUAL_ENV")

PROBE = """
import json, sys
import mlcourse
from mlcourse import course_files, full_mode, runrecord
from mlcourse.datasets import load_dataset
from mlcourse.lesson_outputs import SANITIZE_FILE
from mlcourse.seeding import seed_everything

digits = load_dataset("digits")  # verifies every checksum first
seed_everything(3)
try:
    from mlcourse.notebooks import PROJECT_ROOT
    lessons = str(PROJECT_ROOT)
except course_files.CourseFilesNotFound as error:
    lessons = "error: " + str(error)
box = full_mode.lite_and_full_table({}, lite={}, full=None, missing=full_mode.NOT_RECORDED)
print(json.dumps({
    "package": mlcourse.__file__,
    "prefix": sys.prefix,
    "course_root": course_files.course_root(),
    "datasets": str(course_files.datasets_dir()),
    "configs": str(course_files.configs_dir()),
    "digits": [digits.version, list(digits["images"].shape)],
    "sanitize_file": SANITIZE_FILE.is_file(),
    "full_mode_file": full_mode.full_mode_file(),
    "git": runrecord.git_info(),
    "lessons": lessons,
}, default=str))
"""


def run(command: list[str | Path], **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, timeout=300, **kwargs
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A fresh environment with the wheel installed, and a working folder outside the repo."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # a clean copy: no build/ or egg-info left in the checkout
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    run(
        [
            *pip,
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            tmp / "dist",
            source,
        ]
    )
    (wheel,) = (tmp / "dist").glob("mlcourse-*.whl")

    env_dir = tmp / "env"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    run([*pip, "--python", python, "install", "--no-deps", "--no-index", wheel])
    target = Path(
        run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
        ).stdout.strip()
    )
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (target / "course_dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))

    outside = tmp / "outside"
    outside.mkdir()
    return {"env": env_dir, "python": python, "bin": python.parent, "outside": outside}


def outside_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CHECKOUT_ENV}
    env["MPLBACKEND"] = "agg"
    return env


def test_a_lesson_helper_uses_the_installed_package_and_the_datasets_it_carries(fresh):
    out = run([fresh["python"], "-c", PROBE], cwd=fresh["outside"], env=outside_env())
    found = json.loads(out.stdout.strip().splitlines()[-1])
    env = fresh["env"].resolve()
    assert Path(found["package"]).resolve().is_relative_to(env), found["package"]
    assert found["course_root"] is None
    assert Path(found["datasets"]).resolve() == env / "share" / "mlcourse" / "datasets"
    assert Path(found["configs"]).resolve() == env / "share" / "mlcourse" / "configs"
    assert found["digits"] == ["1.0.0", [1797, 8, 8]]
    assert found["sanitize_file"], "output_sanitize.cfg is not in the wheel"
    # no course folder: no full-mode record and no git commit to report, and no crash
    assert found["full_mode_file"] is None and found["git"] is None
    assert found["lessons"].startswith("error: ") and "MLCOURSE_ROOT" in found["lessons"]


def test_mlcourse_train_runs_a_shipped_config_from_outside_the_repository(fresh):
    config = fresh["env"] / "share" / "mlcourse" / "configs" / "digits_mlp.yaml"
    train = fresh["bin"] / "mlcourse-train"
    run(
        [train, "--config", config, "--set", "epochs=1", "--run-name", "wheel", "--quiet"],
        cwd=fresh["outside"], env=outside_env(),
    )  # fmt: skip
    record = json.loads((fresh["outside"] / "runs" / "wheel" / "run_record.json").read_text())
    assert record["hyperparameters"]["epochs"] == 1
    assert [d["name"] for d in record["datasets"]] == ["digits"]
    assert record["git"] is None  # no checkout around the installed package


def test_mlcourse_grade_help_runs_from_outside_the_repository(fresh):
    out = run([fresh["bin"] / "mlcourse-grade", "--help"], cwd=fresh["outside"], env=outside_env())
    assert out.stdout.startswith("usage: mlcourse-grade")


def test_the_wheel_carries_every_shipped_dataset_and_config():
    data_files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "data-files"
    ]
    for dataset in sorted(p.parent.name for p in (ROOT / "datasets").glob("*/dataset.json")):
        assert data_files.get(f"share/mlcourse/datasets/{dataset}") == [f"datasets/{dataset}/*"]
    assert data_files["share/mlcourse/configs"] == ["configs/*.yaml"]
