"""JupyterHub's configuration for a class on one machine.

Written for ``python3 course.py hub`` (``classroom_hub/launch.py``), which checks and
prepares everything, writes the hub's settings to ``DATA/state/hub-settings.json`` and
starts ``jupyterhub -f`` this file with ``MLCOURSE_HUB_SETTINGS`` naming them. What the
configuration holds: ``classroom_hub/hub_config.py``. Add your own settings below.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the classroom_hub package

from classroom_hub.hub_config import SETTINGS_ENV, HubSettings, configure  # noqa: E402

if SETTINGS_ENV not in os.environ:
    sys.exit(f"{__file__}: {SETTINGS_ENV} is not set; start the hub with `python3 course.py hub`.")
configure(c, HubSettings.from_json(Path(os.environ[SETTINGS_ENV]).read_text()))  # noqa: F821
