"""Root pytest configuration: seen by the unit tests and by nbval's notebook runs alike."""

import os

from mlcourse.notebooks import lesson_kernel_environment

# Every lesson kernel started by the test suite runs on the CPU, so the outputs match
# the committed ones (which were made on a CPU) on any machine.
_environment = lesson_kernel_environment(os.environ)
os.environ.clear()
os.environ.update(_environment)
