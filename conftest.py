"""Root pytest configuration: seen by the unit tests and by nbval's notebook runs alike."""

import os

# Every lesson kernel started by the test suite runs on the CPU, so the outputs match
# the committed ones (which were made on a CPU) on any machine.
os.environ["MLCOURSE_DEVICE"] = "cpu"
os.environ.pop("MPLBACKEND", None)
os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
