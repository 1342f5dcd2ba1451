"""Write each role's Jupyter settings for the Kubernetes image (deploy/kubernetes/Dockerfile).

    python deploy/kubernetes/role_configs.py /etc/mlcourse --exchange DIR --course-dir DIR

writes ``/etc/mlcourse/student`` and ``/etc/mlcourse/instructor`` with
:func:`classroom_hub.user_config.write_role_config`, the settings the one-machine hub
writes at each start, so both deployments give students and instructors the same JupyterLab.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "jupyterhub"))

from classroom_hub.user_config import ROLES, write_role_config  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where the roles' folders go")
    parser.add_argument("--exchange", required=True, help="nbgrader's exchange, in the pods")
    parser.add_argument("--course-dir", required=True, help="the course directory, in the pods")
    options = parser.parse_args(argv)
    for role in ROLES:
        written = write_role_config(
            options.folder / role, role, exchange=options.exchange, course_dir=options.course_dir
        )
        print(f"{role}: {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
