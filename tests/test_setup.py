"""The environment files agree, and the README's two commands are what CI runs."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def locked_versions() -> dict[str, list[str]]:
    pins: dict[str, list[str]] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)==([^ ;\\]+)", line)
        if match:
            pins.setdefault(match[1].lower().replace("_", "-"), []).append(match[2])
    return pins


def test_every_direct_dependency_is_locked_at_a_satisfying_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = locked_versions()
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, (
            f"{name} is in pyproject.toml but not in requirements.lock; run `python3 course.py lock`"
        )
        assert any(requirement.specifier.contains(v) for v in pins[name]), (name, pins[name])
    assert pins["torch"] == ["2.14.1"] and pins["torchvision"] == ["0.29.1"]


def test_lock_is_hashed_universal_and_free_of_machine_paths():
    text = (ROOT / "requirements.lock").read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9._-]+==)", text.split("\n", 2)[2])
    assert len(blocks) > 100
    for block in blocks:
        assert "--hash=sha256:" in block, f"no hash for {block.splitlines()[0]}"
    assert "--universal" in text.splitlines()[1] and "--generate-hashes" in text.splitlines()[1]
    assert "sys_platform == 'darwin'" in text  # resolved for other platforms too
    for leak in ("/opt/", "file://", "/root/", "/home/", "--index-url", "--find-links"):
        assert leak not in text, f"requirements.lock mentions {leak!r}"


def test_conda_environment_is_python_plus_the_lock():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert python == ["python=3.11"] and ">=3.11" in requires and "<3.12" in requires
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    # Nothing pinned here: conda gets exactly the lock's versions, so the two cannot drift.
    assert pip_section == ["--require-hashes", "-r requirements.lock"]
    assert "conda-forge" in env["channels"]


def readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.DOTALL)[1]
    return [line.split("#")[0].strip() for line in block.strip().splitlines()]


def test_readme_gives_exactly_two_commands_and_ci_runs_the_test_one():
    commands = readme_commands()
    assert commands == ["python3 course.py lab", "python3 course.py test"]
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith(("#", "set ", "cd "))]  # fmt: skip
    assert ci == [f"exec {commands[1]}"]


def test_setup_is_skipped_when_the_environment_is_current():
    # The suite runs inside the environment `course.py` set up; doing it again is a no-op.
    stamp = Path(sys.prefix) / "mlcourse-installed.sha256"
    if not stamp.exists():
        pytest.skip("not running inside an environment that course.py set up")
    fingerprint = subprocess.run(
        [sys.executable, "-c", "import course; print(course.environment_fingerprint())"],
        capture_output=True, text=True, check=True, cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "MLCOURSE_VENV": sys.prefix},
    ).stdout.strip()  # fmt: skip
    if stamp.read_text().strip() != fingerprint:
        pytest.skip("the lock or pyproject.toml changed since set-up: run `course.py setup`")
    result = subprocess.run(
        [sys.executable, str(ROOT / "course.py"), "setup"], capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin", "MLCOURSE_VENV": sys.prefix},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Installing" not in result.stdout


def test_course_py_rejects_unknown_commands():
    result = subprocess.run(
        [sys.executable, str(ROOT / "course.py"), "lbo"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "unknown command 'lbo'" in result.stderr and "python3 course.py lab" in result.stderr
