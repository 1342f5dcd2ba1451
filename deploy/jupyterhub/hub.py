"""Start the course's JupyterHub for a class: ``python3 course.py hub`` runs this file with
the course environment's Python (``.venv/bin/python deploy/jupyterhub/hub.py`` is the
same). Options and steps: ``classroom_hub/launch.py``; the guide: ``docs/classroom.md``.
"""

import sys

from classroom_hub.launch import main  # this file's folder is first on sys.path

if __name__ == "__main__":
    sys.exit(main())
