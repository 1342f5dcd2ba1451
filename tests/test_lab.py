"""The course's JupyterLab launcher without a browser: settings per mode, the learner's
``my-work/`` copies (attacked with edits, deletions, links and damaged records), the
environment the kernels inherit, ``binder/start``, and ``course.py lab``.

The browser tests (test_browser.py) check what these settings do in JupyterLab itself.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from mlcourse.lab import jupyterlab_command, lab_environment, parse_args, prepare
from mlcourse.lab_settings import (
    CULL_IDLE_MINUTES,
    NBGRADER_LAB_EXTENSION,
    NBGRADER_SERVER_EXTENSIONS,
    page_config,
    server_config,
    write_config,
)
from mlcourse.my_work import RECORD_NAME, check_work_folder, course_files, sync_work
from mlcourse.notebooks import NOTEBOOK_DIR, lesson_kernel_environment
from mlcourse.numerics import PIN_VARIABLES
from mlcourse.resources import DEVICE_ENV
from mlcourse.start_page import (
    lesson_entries,
    page_problems,
    read_measurements,
    render,
    stale_lessons,
)

ROOT = Path(__file__).resolve().parent.parent


def notebook(text: str) -> str:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {text}")])
    return nbformat.writes(nb)


@pytest.fixture
def course(tmp_path: Path) -> Path:
    """A small course repository: a start page, two lessons, one exercise copy."""
    notebooks = tmp_path / "course" / "notebooks"
    (notebooks / "student").mkdir(parents=True)
    (notebooks / "START.md").write_text("# Welcome\n")
    (notebooks / "00_intro.ipynb").write_text(notebook("00 · Intro"))
    (notebooks / "01_gd.ipynb").write_text(notebook("01 · GD"))
    (notebooks / "student" / "01_gd.ipynb").write_text(notebook("01 · GD, exercises"))
    (notebooks / "student" / "README.md").write_text("generated, not copied\n")
    (notebooks / "notes.txt").write_text("not a lesson\n")
    return tmp_path / "course"


# --- settings per mode -------------------------------------------------------------------


def test_learner_mode_switches_nbgrader_off_and_instructor_mode_keeps_it():
    learner = server_config("learner", settings_dir="/s", start_url="/lab/tree/START.md")
    instructor = server_config("instructor", settings_dir="/s", start_url="/lab")
    assert learner["ServerApp"]["jpserver_extensions"] == dict.fromkeys(
        NBGRADER_SERVER_EXTENSIONS, False
    )
    assert instructor["ServerApp"]["jpserver_extensions"] == {}
    assert page_config("learner")["disabledExtensions"] == {NBGRADER_LAB_EXTENSION: True}
    assert page_config("instructor")["disabledExtensions"] == {}
    for config in (learner, instructor):
        assert config["LabApp"]["news_url"] is None
        assert config["LabApp"]["check_for_updates_class"].endswith("NeverCheckForUpdate")
        culling = config["MappingKernelManager"]
        assert culling["cull_idle_timeout"] == CULL_IDLE_MINUTES * 60
        assert culling["cull_connected"] is True and culling["cull_busy"] is False
    assert learner["LabApp"]["default_url"] == "/lab/tree/START.md"


def test_an_unknown_mode_is_refused_with_the_accepted_ones(tmp_path: Path):
    with pytest.raises(ValueError, match=r"mode='student' is not supported; expected one of "):
        write_config(tmp_path, "student", start_url="/lab")
    with pytest.raises(ValueError, match="'learner', 'instructor'"):
        page_config("teacher")
    assert list(tmp_path.iterdir()) == []


def test_config_files_are_replaced_on_every_start(tmp_path: Path):
    config = write_config(tmp_path / "cfg", "instructor", start_url="/lab")
    config = write_config(tmp_path / "cfg", "learner", start_url="/lab/tree/START.md")
    server = json.loads((config / "jupyter_server_config.json").read_text())
    assert server["LabApp"]["app_settings_dir"] == str(config / "settings")
    assert json.loads((config / "labconfig" / "page_config.json").read_text()) == page_config(
        "learner"
    )
    overrides = json.loads((config / "settings" / "overrides.json").read_text())
    assert overrides["@jupyterlab/notebook-extension:tracker"] == {"kernelShutdown": True}
    assert overrides["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"
    assert not [p for p in config.rglob("*") if p.name.endswith(".tmp")], "temporary files left"


# --- the learner's copies ------------------------------------------------------------------


def test_first_start_copies_the_start_page_lessons_and_exercises(course: Path):
    work = course / "my-work"
    result = sync_work(course / "notebooks", work)
    expected = ["START.md", "00_intro.ipynb", "01_gd.ipynb", "student/01_gd.ipynb"]
    assert sorted(result.copied) == sorted(expected)
    for name in expected:
        assert (work / name).read_bytes() == (course / "notebooks" / name).read_bytes()
    assert not (work / "notes.txt").exists() and not (work / "student" / "README.md").exists()
    assert sync_work(course / "notebooks", work).copied == []


def test_later_starts_add_new_lessons_update_untouched_copies_and_keep_edited_ones(course: Path):
    notebooks, work = course / "notebooks", course / "my-work"
    sync_work(notebooks, work)
    (work / "00_intro.ipynb").write_text(notebook("my answers"))  # the learner's work
    (work / "my-notes.md").write_text("mine\n")  # the learner's own file
    (notebooks / "00_intro.ipynb").write_text(notebook("00 · Intro, revised"))  # git pull
    (notebooks / "01_gd.ipynb").write_text(notebook("01 · GD, revised"))
    (notebooks / "02_new.ipynb").write_text(notebook("02 · New"))
    result = sync_work(notebooks, work)
    assert result.copied == ["02_new.ipynb"]
    assert result.updated == ["01_gd.ipynb"]
    assert result.kept == {"00_intro.ipynb": str(notebooks / "00_intro.ipynb")}
    assert "my answers" in (work / "00_intro.ipynb").read_text()
    assert "revised" in (work / "01_gd.ipynb").read_text()
    assert (work / "my-notes.md").read_text() == "mine\n"
    assert any("kept your 00_intro.ipynb" in line for line in result.summary())


def test_a_deleted_copy_comes_back_fresh(course: Path):
    notebooks, work = course / "notebooks", course / "my-work"
    sync_work(notebooks, work)
    (work / "01_gd.ipynb").unlink()
    assert sync_work(notebooks, work).copied == ["01_gd.ipynb"]


def test_nothing_is_written_through_symbolic_links(course: Path, tmp_path: Path):
    notebooks, work = course / "notebooks", course / "my-work"
    sync_work(notebooks, work)
    # untouched copies replaced by links to files elsewhere with the same content: an
    # update would write into those files
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "student").mkdir(parents=True)
    for name in ("00_intro.ipynb", "student/01_gd.ipynb"):
        shutil.copy2(work / name, elsewhere / name)
    (work / "00_intro.ipynb").unlink()
    (work / "00_intro.ipynb").symlink_to(elsewhere / "00_intro.ipynb")
    shutil.rmtree(work / "student")
    (work / "student").symlink_to(elsewhere / "student")
    before = {p: p.read_bytes() for p in elsewhere.rglob("*.ipynb")}
    (notebooks / "00_intro.ipynb").write_text(notebook("00 · Intro, revised"))
    (notebooks / "student" / "01_gd.ipynb").write_text(notebook("01 · GD, revised"))
    result = sync_work(notebooks, work)
    assert {p: p.read_bytes() for p in elsewhere.rglob("*.ipynb")} == before
    assert set(result.skipped) == {"00_intro.ipynb", "student/01_gd.ipynb"}
    assert "symbolic link" in result.skipped["00_intro.ipynb"]
    assert "its folder is a symbolic link" in result.skipped["student/01_gd.ipynb"]


def test_a_damaged_record_overwrites_nothing(course: Path):
    notebooks, work = course / "notebooks", course / "my-work"
    sync_work(notebooks, work)
    (work / "00_intro.ipynb").write_text(notebook("my answers"))
    (notebooks / "01_gd.ipynb").write_text(notebook("01 · GD, revised"))
    for damage in ("{not json", '["a", "list"]', '{"00_intro.ipynb": 5}', "\udcff"):
        (work / RECORD_NAME).write_text(damage, errors="surrogateescape")
        result = sync_work(notebooks, work)
        assert result.updated == [] and "my answers" in (work / "00_intro.ipynb").read_text()
        assert any("damaged" in w for w in result.warnings), damage
    # copies identical to the course's are adopted into the new record (so later updates
    # work again); the learner's changed one is not
    record = json.loads((work / RECORD_NAME).read_text())
    assert {"START.md", "student/01_gd.ipynb"} <= record.keys()
    assert "00_intro.ipynb" not in record


def test_the_work_folder_cannot_be_the_course_itself(course: Path):
    notebooks = course / "notebooks"
    for bad in (notebooks, notebooks / "student", course):
        with pytest.raises(ValueError, match="must be outside the course's notebooks folder"):
            check_work_folder(notebooks, bad)
    (course / "a-file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        sync_work(notebooks, course / "a-file")


def test_the_real_course_files_are_the_start_page_and_every_notebook():
    files = course_files(NOTEBOOK_DIR)
    assert "START.md" in files and "00_setup_and_reproducibility.ipynb" in files
    assert all(name.endswith((".md", ".ipynb")) for name in files)


# --- the launcher ---------------------------------------------------------------------------


def test_kernels_inherit_the_pins_but_keep_the_learners_device():
    base = {"PATH": "/bin", "JUPYTER_CONFIG_PATH": os.pathsep.join(["/a", "/b"])}
    env = lab_environment(base, "/course-config")
    pinned = lesson_kernel_environment(base)
    assert {k: env.get(k) for k in PIN_VARIABLES} == {k: pinned.get(k) for k in PIN_VARIABLES}
    assert DEVICE_ENV not in env, "device = 'auto' must still find a learner's GPU"
    assert env["JUPYTER_CONFIG_PATH"].split(os.pathsep) == ["/course-config", "/a", "/b"]
    assert lab_environment({**base, DEVICE_ENV: "cuda"}, "/c")[DEVICE_ENV] == "cuda"
    assert lab_environment({"ATEN_CPU_CAPABILITY": "default"}, "/c")["ATEN_CPU_CAPABILITY"] == (
        "default"
    )


def test_jupyterlab_listens_on_loopback_unless_told_otherwise():
    command = jupyterlab_command("py", "/w", ["--no-browser"])
    assert command[:4] == ["py", "-m", "jupyterlab", "--ServerApp.root_dir=/w"]
    assert "--ip=127.0.0.1" in command and command[-1] == "--no-browser"
    assert not any("token" in a for a in command), "JupyterLab's login token stays on"
    docker = jupyterlab_command("py", "/w", ["--ip=0.0.0.0"])
    assert [a for a in docker if a.startswith("--ip")] == ["--ip=0.0.0.0"]


def test_launcher_options_are_checked(capsys: pytest.CaptureFixture[str]):
    for argv, message in (
        (["--wrap"], "--wrap needs the command to run"),
        (["--port=1", "--wrap", "jupyter"], "go after --wrap's command"),
    ):
        with pytest.raises(SystemExit):
            parse_args(argv)
        assert message in capsys.readouterr().err
    options, rest = parse_args(["--no-browser", "--instructor", "--port", "8899"])
    assert options.mode == "instructor" and rest == ["--no-browser", "--port", "8899"]


def test_learner_launch_serves_my_work_and_opens_the_start_page(course: Path):
    options, _ = parse_args([f"--project={course}"])
    launch = prepare(options, {"PATH": os.environ["PATH"]}, cwd=Path("/elsewhere"))
    work = course / "my-work"
    assert launch.root_dir == work and launch.cwd == work and (work / "START.md").exists()
    config = Path(launch.environment["JUPYTER_CONFIG_PATH"].split(os.pathsep)[0])
    assert config == course / ".mlcourse-lab" / "learner"
    server = json.loads((config / "jupyter_server_config.json").read_text())
    assert server["LabApp"]["default_url"] == "/lab/tree/START.md"


def test_instructor_launch_makes_the_course_folder_nbgrader_reads(course: Path):
    pytest.importorskip("nbgrader")
    options, _ = parse_args([f"--project={course}", "--instructor"])
    launch = prepare(options, {"PATH": os.environ["PATH"]}, cwd=Path("/elsewhere"))
    assert launch.root_dir == course and launch.cwd == course / "course"
    assert (course / "course" / "nbgrader_config.py").is_file()
    config = Path(launch.environment["JUPYTER_CONFIG_PATH"].split(os.pathsep)[0])
    server = json.loads((config / "jupyter_server_config.json").read_text())
    assert server["LabApp"]["default_url"] == "/lab/tree/notebooks/START.md"
    assert not (course / "my-work").exists()


def test_binder_start_prepares_the_learner_lab_then_runs_binders_command(course: Path):
    """``binder/start`` on a copy of the course, wrapping a command that reports what the
    Jupyter server would see: the working folder, the environment, the files made."""
    (course / "binder").mkdir()
    shutil.copy2(ROOT / "binder" / "start", course / "binder" / "start")
    report = "import json, os; print(json.dumps({'cwd': os.getcwd(), 'env': dict(os.environ)}))"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("JUPYTER_CONFIG_PATH", None)
    result = subprocess.run(
        [str(course / "binder" / "start"), sys.executable, "-c", report],
        cwd=course, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(seen["cwd"]) == course
    config = Path(seen["env"]["JUPYTER_CONFIG_PATH"].split(os.pathsep)[0]).resolve()
    assert config == (course / ".mlcourse-lab" / "learner").resolve()
    server = json.loads((config / "jupyter_server_config.json").read_text())
    assert server["LabApp"]["default_url"] == "/lab/tree/my-work/START.md"
    assert (course / "my-work" / "student" / "01_gd.ipynb").is_file()
    assert seen["env"]["OMP_NUM_THREADS"] == lesson_kernel_environment(env)["OMP_NUM_THREADS"]


def test_a_bad_work_folder_stops_the_launcher_with_a_clear_message(course: Path):
    (course / "taken").write_text("a file")
    result = subprocess.run(
        [sys.executable, "-m", "mlcourse.lab", f"--project={course}",
         f"--work-dir={course / 'taken'}", "--no-browser"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "is a file, not a folder" in result.stderr and "--work-dir" in result.stderr


def test_course_py_lab_runs_the_launcher():
    spec = importlib.util.spec_from_file_location("course_for_lab", ROOT / "course.py")
    assert spec is not None and spec.loader is not None
    course = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(course)
    assert course.lab_command("py", ["--instructor"]) == [
        "py",
        "-m",
        "mlcourse.lab",
        "--instructor",
    ]


# --- the start page -------------------------------------------------------------------------


def test_the_start_page_is_current():
    """notebooks/START.md is what the lessons and their measured lite runs give; after a
    lesson's code changes, `python -m mlcourse.start_page --measure` brings it up to date."""
    problems = page_problems()
    assert not problems, "\n".join(problems)


def measured(entries, seconds: float = 8.4, peak_mb: int = 790) -> dict:
    return {
        "machine": "a test CPU",
        "lessons": {e.stem: {"code": e.code_hash, "wall_s": seconds, "peak_rss_mb": peak_mb}
                    for e in entries},
    }  # fmt: skip


def test_the_lesson_map_comes_from_the_lessons_and_the_measurements(course: Path):
    notebooks = course / "notebooks"
    cells = [
        nbformat.v4.new_markdown_cell("# Lesson 01: Gradient descent\n\n**Goal.** ..."),
        nbformat.v4.new_code_cell("x = 1"),
    ]
    cells[1].metadata["nbgrader"] = {"grade": True, "grade_id": "t1"}
    (notebooks / "01_gd.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook(cells=cells)))
    entries = lesson_entries(notebooks)
    assert [(e.number, e.title, e.exercises, e.has_student_copy) for e in entries] == [
        ("00", "Intro", 0, False),
        ("01", "Gradient descent", 1, True),
    ]  # fmt: skip
    page = render(entries, measured(entries))
    assert "| 00 | [Intro](00_intro.ipynb) | 8 s | none |" in page
    assert "| 01 | [Gradient descent](01_gd.ipynb) | 8 s | [1](student/01_gd.ipynb) |" in page
    assert "up to 0.8 GB" in page and "a test CPU" in page
    assert read_measurements(page) == measured(entries)  # kept in the page, invisibly
    (notebooks / "START.md").write_text(page)
    assert page_problems(notebooks) == []
    # a lesson whose code changes is no longer measured: the page says so, and the test fails
    cells[1].source = "x = 2"
    (notebooks / "01_gd.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook(cells=cells)))
    assert stale_lessons(lesson_entries(notebooks), measured(entries)) == ["01_gd"]
    problems = page_problems(notebooks)
    assert any("01_gd changed since its lite time was measured" in p for p in problems)
    assert any("out of date" in p for p in problems)
    assert "not measured yet" in render(lesson_entries(notebooks), measured(entries))


def test_damaged_measurements_and_untitled_lessons_are_refused(course: Path):
    with pytest.raises(ValueError, match="measurements in START.md are damaged"):
        read_measurements('lite-runs {"lessons": [1, 2]}')
    with pytest.raises(ValueError):  # not JSON at all
        read_measurements("lite-runs {not json}")
    (course / "notebooks" / "02_untitled.ipynb").write_text(nbformat.writes(
        nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("no heading")])))  # fmt: skip
    with pytest.raises(ValueError, match=r"02_untitled.ipynb has no title: .*'# Title' line"):
        lesson_entries(course / "notebooks")
