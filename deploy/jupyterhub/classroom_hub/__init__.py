"""A class on one machine: JupyterHub with the course environment, nbgrader's exchange,
learner/instructor mode per group, culling and per-user limits.

Modules (each one job):

- :mod:`classroom_hub.class_file`: the class file (who teaches, who learns, their limits);
- :mod:`classroom_hub.cgroups`: one user's memory, CPU and process limits (cgroup v1);
- :mod:`classroom_hub.user_config`: the Jupyter configuration students and instructors get;
- :mod:`classroom_hub.layout`: the hub's folders (exchange, course, state) and their owners;
- :mod:`classroom_hub.spawner`: the spawner that puts each user's server in its limits;
- :mod:`classroom_hub.proxy`: finding configurable-http-proxy;
- :mod:`classroom_hub.launch`: ``python3 course.py hub``: prepare all that, start JupyterHub.

``deploy/jupyterhub/jupyterhub_config.py`` is JupyterHub's configuration, built from the
same class file. See ``docs/classroom.md``.
"""
