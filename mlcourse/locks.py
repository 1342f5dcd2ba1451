"""Read the course's hash-checked locks (``requirements.lock``, ``requirements-dev.lock``).

The one parser of uv's ``pip compile`` output used by the course: lesson 00 compares the
installed versions with it, ``tools/make_binder_requirements.py`` derives the CPU-only
pins from it, and the tests check that the locks agree. Standard library only, so that the
tools can use it before anything is installed.

Example:
    >>> text = '''# header
    ... numpy==2.4.6 \\\\
    ...     --hash=sha256:abc
    ...     # via mlcourse
    ... torch==2.14.1 ; sys_platform == 'linux' \\\\
    ...     --hash=sha256:def
    ... '''
    >>> [(p.name, p.version, p.markers) for p in parse_lock(text)[1]]
    [('numpy', '2.4.6', ''), ('torch', '2.14.1', "sys_platform == 'linux'")]
    >>> pinned_versions(text)
    {'numpy': '2.4.6', 'torch': '2.14.1'}
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)")


@dataclass(frozen=True)
class LockedPin:
    """One ``name==version`` entry of a lock, with its markers, hashes and comments."""

    name: str  # normalised: lower case, '-' for '_' and '.'
    version: str
    block: str  # the entry's text exactly as in the lock
    required_by: frozenset[str]  # from uv's "# via" comments

    @property
    def markers(self) -> str:
        first = self.block.splitlines()[0].rstrip(" \\")
        return first.split(";", 1)[1].strip() if ";" in first else ""


def normalise(name: str) -> str:
    """PEP 503 name normalisation: ``Jinja2`` and ``jinja_2`` -> ``jinja2``, ``jinja-2``.

    Example:
        >>> normalise("Jinja_2.Ext")
        'jinja-2-ext'
    """
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(text: str) -> tuple[str, list[LockedPin]]:
    """Split a uv-compiled lock into its header comment and its entries.

    Raises:
        ValueError: the text holds no ``name==version`` pin.
    """
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if PIN.match(line)), None)
    if start is None:
        raise ValueError("the lock holds no `name==version` pins")
    header = "".join(lines[:start])
    pins: list[LockedPin] = []
    for block in re.split(r"(?m)^(?=[A-Za-z0-9][A-Za-z0-9._-]*==)", "".join(lines[start:])):
        if not block.strip():
            continue
        match = PIN.match(block)
        if match is None:  # pragma: no cover - the split only yields pin-led blocks
            raise ValueError(f"cannot parse lock entry: {block[:80]!r}")
        via = re.findall(r"#\s+(?:via\s+)?([A-Za-z0-9][A-Za-z0-9._-]*)", block)
        pins.append(
            LockedPin(
                name=normalise(match["name"]),
                version=match["version"],
                block=block,
                required_by=frozenset(normalise(v) for v in via if v != "via"),
            )
        )
    return header, pins


def pinned_versions(text: str) -> dict[str, str]:
    """Normalised name -> version of every pin (the first, where markers pin several)."""
    versions: dict[str, str] = {}
    for pin in parse_lock(text)[1]:
        versions.setdefault(pin.name, pin.version)
    return versions
