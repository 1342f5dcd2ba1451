"""Safe files: SHA-256 checksums, ``SHA256SUMS`` manifests and atomic writes.

A file written with :func:`atomic_write_bytes` either appears whole or not at all
(it is written to a temporary file in the same folder, flushed, then renamed), and
is never written over an existing file unless you ask for it.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = atomic_write_bytes(folder / "a.txt", b"hello")
    >>> sha256_file(folder / "a.txt")[:12]
    '2cf24dba5fb0'
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

SUMS_FILE = "SHA256SUMS"
STAGING_SUFFIX = ".partial"
_CHUNK = 1 << 20
_LOADED_AT = time.time()  # no staging folder of this process can be older
# ``.{label}.{writer pid}.{mkdtemp's 8 random characters}.partial``
_STAGING_PID = re.compile(r"\.(?P<pid>[0-9]+)\.[a-z0-9_]{8}\.partial$")


class ChecksumError(RuntimeError):
    """A file's content does not match the checksum recorded for it."""


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's content, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, *, overwrite: bool = False
) -> Path:
    """Write ``data`` to ``path`` atomically; refuse to replace an existing file.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"refusing to overwrite existing file {str(path)!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp_name, 0o666 & ~current_umask())  # mkstemp creates files private (0600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp_name, path)
        else:
            _link_without_replacing(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str, *, overwrite: bool = False) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _link_without_replacing(tmp_name: str, path: Path) -> None:
    """Move ``tmp_name`` to ``path``, failing if ``path`` appeared meanwhile."""
    try:
        os.link(tmp_name, path)  # fails with FileExistsError instead of replacing
    except FileExistsError:
        raise FileExistsError(f"refusing to overwrite existing file {str(path)!r}.") from None
    except OSError:  # file systems without hard links: check, then rename
        if path.exists():
            raise FileExistsError(f"refusing to overwrite existing file {str(path)!r}.") from None
        os.replace(tmp_name, path)
        return
    os.unlink(tmp_name)


def format_sums(sums: dict[str, str]) -> str:
    """``SHA256SUMS`` text (the format ``sha256sum -c`` reads), sorted by file name."""
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(sums.items()))


def parse_sums(text: str, *, source: str = SUMS_FILE) -> dict[str, str]:
    """Parse ``SHA256SUMS`` text into ``{file name: hex digest}``."""
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name:
            raise ChecksumError(
                f"{source} line {number} is malformed: {line!r}; expected '<64 hex digits>  <file>'."
            )
        name = name.lstrip("*")
        parts = PurePosixPath(name).parts
        if not parts or name.startswith("/") or ".." in parts or name.strip() == ".":
            raise ChecksumError(
                f"{source} line {number} lists {name!r}; entries must name a file inside the "
                "folder, e.g. 'weights.pt' or 'data/train.npz'."
            )
        sums[name] = digest.lower()
    return sums


def write_sums(folder: str | os.PathLike[str], names: Iterable[str]) -> dict[str, str]:
    """Checksum ``names`` inside ``folder`` and write them to ``folder/SHA256SUMS``."""
    folder = Path(folder)
    sums = {name: sha256_file(folder / name) for name in names}
    atomic_write_text(folder / SUMS_FILE, format_sums(sums))
    return sums


def verify_sums(
    folder: str | os.PathLike[str], names: Iterable[str] | None = None
) -> dict[str, str]:
    """Check files in ``folder`` against its ``SHA256SUMS``; return the verified sums.

    Args:
        names: the files that must be listed and match; ``None`` checks every listed file.

    Raises:
        ChecksumError: a file is missing, unlisted or its content differs.
    """
    folder = Path(folder)
    manifest = folder / SUMS_FILE
    if not manifest.is_file():
        raise ChecksumError(f"no {SUMS_FILE} in {str(folder)!r}: cannot verify its files.")
    sums = parse_sums(manifest.read_text(encoding="utf-8"), source=str(manifest))
    wanted = list(sums) if names is None else list(names)
    for name in wanted:
        if name not in sums:
            raise ChecksumError(f"{name!r} is not listed in {str(manifest)!r}.")
        path = folder / name
        if not path.is_file():
            raise ChecksumError(f"{str(path)!r} is listed in {SUMS_FILE} but missing.")
        actual = sha256_file(path)
        if actual != sums[name]:
            raise ChecksumError(
                f"checksum mismatch for {str(path)!r}: expected sha256 {sums[name]}, "
                f"found {actual}. The file is corrupted or was changed after it was recorded."
            )
    return {name: sums[name] for name in wanted}


# --- staging folders: where a folder is built before it is renamed into place -------------------


def make_staging_dir(parent: str | os.PathLike[str], label: str) -> Path:
    """Create ``parent/.{label}.{pid}.{random}.partial`` with normal permissions.

    Build a folder in it, then rename it into place: readers never see half of it. The
    writer's process id in the name tells :func:`stale_staging_dirs` whether the writer
    is still alive.

    Example:
        >>> import tempfile
        >>> staging = make_staging_dir(tempfile.mkdtemp(), "v1")
        >>> staging.name.startswith(".v1.") and staging.name.endswith(".partial")
        True
    """
    staging = tempfile.mkdtemp(prefix=f".{label}.{os.getpid()}.", suffix=STAGING_SUFFIX, dir=parent)
    os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes it private (0700)
    return Path(staging)


def stale_staging_dirs(
    parent: str | os.PathLike[str], *, older_than: float | None = None
) -> list[Path]:
    """Staging folders in ``parent`` that no writer will finish, oldest name first.

    A staging folder is stale when it was last changed before ``older_than`` (default: when
    this process loaded this module, before it could stage anything) *and* the process
    that made it is no longer running (a save killed part-way). Both must hold, so a save
    under way, in this process or another, is never touched.

    Example:
        >>> import tempfile, time
        >>> folder = tempfile.mkdtemp()
        >>> _ = make_staging_dir(folder, "v1")  # this process is alive: not stale
        >>> stale_staging_dirs(folder, older_than=time.time() + 60)
        []
    """
    import psutil

    parent = Path(parent)
    if not parent.is_dir():
        return []
    cutoff = _LOADED_AT if older_than is None else older_than
    stale = []
    for path in sorted(parent.iterdir()):
        if not (path.name.startswith(".") and path.name.endswith(STAGING_SUFFIX)):
            continue
        if not path.is_dir() or path.is_symlink() or path.stat().st_mtime >= cutoff:
            continue
        writer = _STAGING_PID.search(path.name)
        if writer is not None and psutil.pid_exists(int(writer["pid"])):
            continue
        stale.append(path)
    return stale


def staging_label(path: str | os.PathLike[str]) -> str | None:
    """The label a :func:`make_staging_dir` folder was made with, or ``None`` for other names.

    Example:
        >>> staging_label(".run-1.4242.abcd1234.partial"), staging_label("run-1")
        ('run-1', None)
    """
    name = Path(path).name
    found = _STAGING_PID.search(name)
    if not name.startswith(".") or found is None:
        return None
    return name[1 : found.start()]
