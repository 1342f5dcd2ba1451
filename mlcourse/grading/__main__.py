"""``python -m mlcourse.grading``: the same as the ``mlcourse-grade`` command.

Example (in a shell)::

    python -m mlcourse.grading grade 01_gradient_descent submissions --course course
"""

import sys

from mlcourse.grading.cli import main

if __name__ == "__main__":
    sys.exit(main())
