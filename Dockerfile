# mlcourse learner image: CPU-only PyTorch, the lessons, JupyterLab with a login token.
#
#   docker build -t mlcourse .
#   docker run --rm -p 127.0.0.1:8888:8888 -e JUPYTER_TOKEN="$(openssl rand -hex 16)" mlcourse
#   (without JUPYTER_TOKEN a token is generated: the link holding it is in `docker logs`)
#
# Offline use, e.g. grading: the course's console scripts are on PATH.
#   docker run --rm --network none mlcourse mlcourse-grade --help
# mlcourse-grade runs each submission in a bubblewrap sandbox (installed below); inside a
# container that needs namespaces allowed (docs/instructors.md, "Without a sandbox"):
#   docker run --rm --security-opt seccomp=unconfined --security-opt apparmor=unconfined ...
#
# Set-up runs the same command a learner runs, `python3 course.py setup` (part of
# `course.py lab` / `course.py test`), with MLCOURSE_TORCH=cpu: the lock's pins, hash-
# checked, less torch's CUDA build, then PyTorch's CPU build (binder/requirements*.txt,
# generated from requirements.lock by tools/make_binder_requirements.py).
FROM python:3.11-slim

ENV MLCOURSE_TORCH=cpu \
    MLCOURSE_VENV=/opt/mlcourse-venv \
    PATH=/opt/mlcourse-venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

# An unprivileged user (uid 1000) owns the environment and the course files, so lessons
# can be saved.
RUN useradd --create-home --uid 1000 --user-group --shell /bin/bash learner \
    && install -d -o learner -g learner /opt/mlcourse-venv

# The grading sandbox (bubblewrap, from the base image's Debian release).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap \
    && rm -rf /var/lib/apt/lists/*

USER 1000:1000
WORKDIR /home/learner/mlcourse

# The pinned packages first: this layer is rebuilt only when the pins change.
COPY --chown=learner:learner course.py ./
COPY --chown=learner:learner binder/requirements.txt binder/requirements-torch-cpu.txt binder/
RUN python3 course.py setup --requirements-only

# Then the course itself, installed (editable, no dependencies) by the same command.
COPY --chown=learner:learner . .
RUN python3 course.py setup

EXPOSE 8888
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8888/api', timeout=4)"]
# `course.py lab` as on a laptop, listening on all of the container's interfaces (publish
# the port on the host's loopback only: -p 127.0.0.1:8888:8888). Token: $JUPYTER_TOKEN.
CMD ["python3", "course.py", "lab", "--no-browser", "--ip=0.0.0.0", "--port=8888", "--ServerApp.port_retries=0"]
