"""One root: every module finds the lessons, datasets and configs through
mlcourse.course_files, which knows a checkout, an explicit folder and a wheel install."""

import json
import re
import shutil
from pathlib import Path

import pytest

import mlcourse
from mlcourse import course_files, full_mode, notebooks, runrecord
from mlcourse.course_files import CourseFilesNotFound
from mlcourse.datasets import data_dir, load_dataset

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(mlcourse.__file__).parent
# A path that climbs from a module's own file out of the package.
ABOVE_THE_PACKAGE = re.compile(r"__file__[^\n]*\.(parent\.parent|parents\[)")


@pytest.fixture
def course(tmp_path: Path) -> Path:
    """A course folder elsewhere: one lesson, the digits and one config."""
    (tmp_path / "notebooks").mkdir()
    shutil.copy2(ROOT / "notebooks" / "00_setup_and_reproducibility.ipynb", tmp_path / "notebooks")
    shutil.copytree(ROOT / "datasets" / "digits", tmp_path / "datasets" / "digits")
    (tmp_path / "configs").mkdir()
    shutil.copy2(ROOT / "configs" / "digits_mlp.yaml", tmp_path / "configs")
    return tmp_path


@pytest.fixture
def wheel_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """As installed from a wheel: no checkout, the shipped files under ``share/mlcourse``."""
    installed = tmp_path / "share" / "mlcourse"
    shutil.copytree(ROOT / "datasets" / "digits", installed / "datasets" / "digits")
    (installed / "configs").mkdir()
    monkeypatch.delenv(course_files.ROOT_ENV, raising=False)
    monkeypatch.delenv(course_files.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(course_files, "editable_checkout", lambda: None)
    monkeypatch.setattr(course_files, "INSTALLED", installed)
    return installed


def test_this_checkout_is_the_course_root_as_pip_recorded_it(monkeypatch):
    monkeypatch.delenv(course_files.ROOT_ENV, raising=False)
    assert course_files.editable_checkout() == ROOT
    assert course_files.course_root() == ROOT
    assert notebooks.PROJECT_ROOT == ROOT and notebooks.NOTEBOOK_DIR == ROOT / "notebooks"
    assert data_dir() == ROOT / "datasets" and course_files.configs_dir() == ROOT / "configs"


def test_an_explicit_root_wins_for_lessons_datasets_and_configs(monkeypatch, course):
    monkeypatch.setenv(course_files.ROOT_ENV, str(course))
    assert course == notebooks.PROJECT_ROOT
    assert [p.name for p in notebooks.lesson_paths()] == ["00_setup_and_reproducibility.ipynb"]
    assert data_dir() == course / "datasets"
    assert load_dataset("digits").version == "1.0.0"
    assert course_files.configs_dir() == course / "configs"
    assert full_mode.full_mode_file() == course / "benchmarks" / "full_mode.json"


def test_an_explicit_root_without_lessons_is_refused_by_name(monkeypatch, tmp_path):
    monkeypatch.setenv(course_files.ROOT_ENV, str(tmp_path))
    with pytest.raises(CourseFilesNotFound, match=rf"MLCOURSE_ROOT='{re.escape(str(tmp_path))}'"):
        course_files.course_root()


def test_the_data_dir_variable_overrides_the_datasets_alone(monkeypatch, tmp_path):
    monkeypatch.setenv(course_files.DATA_DIR_ENV, str(tmp_path))
    assert data_dir() == tmp_path
    assert course_files.configs_dir() == ROOT / "configs"


@pytest.mark.parametrize(
    ("record", "folder"),
    [
        ({"url": "file:///src/course", "dir_info": {"editable": True}}, Path("/src/course")),
        ({"url": "file:///src/course", "dir_info": {}}, None),  # pip install . (a copy)
        ({"url": "file:///dist/mlcourse-0.1.0.whl", "archive_info": {}}, None),
        ({"url": "https://example.org/c.git", "vcs_info": {"vcs": "git"}}, None),
    ],
)
def test_only_an_editable_install_points_at_a_checkout(record, folder):
    assert course_files._editable_folder(json.dumps(record)) == folder


def test_a_wheel_install_uses_the_files_it_carries(wheel_install):
    assert course_files.course_root() is None
    assert data_dir() == wheel_install / "datasets"
    assert load_dataset("digits").version == "1.0.0"
    assert course_files.configs_dir() == wheel_install / "configs"


def test_a_wheel_install_says_where_to_point_for_the_lessons(wheel_install):
    for ask in (
        lambda: notebooks.NOTEBOOK_DIR,
        notebooks.lesson_paths,
        lambda: notebooks.PROJECT_ROOT,
    ):
        with pytest.raises(CourseFilesNotFound, match="set MLCOURSE_ROOT to a checkout"):
            ask()
    shutil.rmtree(wheel_install / "configs")
    with pytest.raises(CourseFilesNotFound, match=r"no configs/ folder .*MLCOURSE_ROOT"):
        course_files.configs_dir()


def test_a_wheel_install_has_no_full_mode_record_and_no_git_commit(wheel_install):
    assert full_mode.full_mode_file() is None
    assert full_mode.recorded_full_mode("01_gradient_descent") is None
    table = full_mode.lite_and_full_table({}, lite={}, full=None, missing=full_mode.NOT_RECORDED)
    assert (
        table.splitlines()[-1]
        == "| wall time on 2 CPU cores | seconds | not recorded in this install |"
    )
    assert runrecord.git_info() is None


def test_unknown_module_attributes_still_fail_as_attributes():
    with pytest.raises(AttributeError, match="NOTEBOOKS_DIR"):
        _ = notebooks.NOTEBOOKS_DIR


def test_no_module_finds_course_files_relative_to_its_own_file():
    climbing = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if ABOVE_THE_PACKAGE.search(path.read_text(encoding="utf-8"))
    ]
    assert climbing == []
    assert ABOVE_THE_PACKAGE.search('ROOT = Path(__file__).resolve().parent.parent / "data"')


def test_a_missing_example_config_points_at_the_shipped_one(monkeypatch, tmp_path):
    from mlcourse.config_fields import ConfigError
    from mlcourse.training.overrides import read_config_file

    monkeypatch.chdir(tmp_path)
    shipped = course_files.configs_dir() / "digits_mlp.yaml"
    with pytest.raises(ConfigError, match=f"pass --config {re.escape(str(shipped))}"):
        read_config_file("configs/digits_mlp.yaml")
    with pytest.raises(ConfigError) as error:
        read_config_file("configs/no_such_config.yaml")
    assert "pass --config" not in str(error.value)
