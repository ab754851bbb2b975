"""Atomic, durable file writes for token files.

A reader of the target path sees either the previous complete file or the new
complete file, never a partial one, even if the writer is killed half-way:

1. a temporary file is created in the target's own directory with
   ``O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW`` and the final mode (so the secret is
   never readable more widely, not even for an instant);
2. the bytes are written and ``fsync``-ed;
3. ``os.replace`` renames it over the target (atomic on POSIX within one filesystem);
4. the directory is ``fsync``-ed so that the rename survives a power loss.

A temporary file is removed when the write fails. A writer killed with SIGKILL
cannot clean up: its temporary file (``.<name>.<random>.tmp``, same mode as the
target) stays behind and is swept once older than :data:`STALE_TEMP_SECONDS`, by the
first write into the same directory in a later process. Only a killed process leaves
temporary files, so one sweep per directory and process is enough, and a fleet of
thousands of files in one directory is listed once, not once per write.

This module imports only the standard library and :mod:`usegrant_flows.api.errors` so
that a crash-test child process can import it cheaply.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import time
from pathlib import Path

from usegrant_flows.api.errors import ConfigurationError

__all__ = [
    "STALE_TEMP_SECONDS",
    "atomic_write",
    "check_target",
    "ensure_directory",
    "file_kind",
    "preflight_target",
]

#: Age in seconds after which a leftover temporary file of a killed writer is removed.
STALE_TEMP_SECONDS = 300.0

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def ensure_directory(directory: Path, mode: int = 0o700) -> None:
    """Create ``directory`` and its missing parents, each with ``mode``.

    ``os.makedirs`` applies its mode to the leaf only; this applies it to every
    directory it creates (subject to the umask, which can only narrow it).

    Args:
        directory: The directory that must exist.
        mode: Permission bits of the directories created (existing ones are left
            alone).
    """
    missing: list[Path] = []
    current = directory
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=mode)


def file_kind(mode: int) -> str:
    """Name the kind of file ``mode`` (an ``st_mode``) describes, for messages."""
    kinds = (
        (stat.S_ISREG, "regular file"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISFIFO, "named pipe (FIFO)"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    )
    return next((name for test, name in kinds if test(mode)), "special file")


def _existing_target(path: Path) -> None:
    """Refuse a target that exists and is not a regular file (a link is not followed)."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return  # missing (a folder that is a file is reported by the folder check)
    if stat.S_ISLNK(mode):
        raise ConfigurationError(f"token file {path} is a symbolic link: refusing to write it")
    if not stat.S_ISREG(mode):
        raise ConfigurationError(
            f"token file {path} is a {file_kind(mode)}, not a regular file: refusing it"
        )


def _check_directory(directory: Path) -> None:
    mode = directory.stat().st_mode
    if not stat.S_ISDIR(mode):
        raise ConfigurationError(f"{directory} is a {file_kind(mode)}, not a directory")
    if mode & stat.S_IWOTH:
        raise ConfigurationError(
            f"directory {directory} is world-writable: refusing to write a token file there"
        )


def check_target(path: Path) -> None:
    """Refuse to write to a symlink or into a world-writable directory.

    Args:
        path: The file that will be replaced.

    Raises:
        ConfigurationError: When ``path`` is a symbolic link, its directory is
            world-writable, or it exists and is not a regular file.
    """
    _existing_target(path)
    _check_directory(path.parent)


def preflight_target(path: Path) -> None:
    """Tell, without creating anything, whether :func:`atomic_write` to ``path`` can work.

    The path must not be a symbolic link, a directory, a FIFO, a socket or a device; its
    folder must be a directory that is not world-writable and that this process can
    write into, or, when missing, must be creatable (its nearest existing ancestor is a
    directory this process can write into).

    Args:
        path: The token file.

    Raises:
        ConfigurationError: Naming the path or folder and what is wrong with it.
    """
    try:
        _existing_target(path)
        parent = path.parent
        if parent.exists():
            _check_directory(parent)
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigurationError(f"directory {parent} is not writable by this process")
            return
        ancestor = parent
        while not ancestor.exists() and ancestor.parent != ancestor:
            ancestor = ancestor.parent
        mode = ancestor.stat().st_mode
        if not stat.S_ISDIR(mode):
            raise ConfigurationError(
                f"cannot create directory {parent}: {ancestor} is a {file_kind(mode)}"
            )
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise ConfigurationError(
                f"cannot create directory {parent}: {ancestor} is not writable by this process"
            )
    except OSError as exc:  # a folder we may not even look into, a path too long...
        raise ConfigurationError(
            f"token file {path} cannot be checked: {exc.strerror or type(exc).__name__}"
        ) from None


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | _O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Directories this process has already swept.
_swept: set[Path] = set()
# Our temporary files: ".<target name>.<16 hex digits>.tmp".
_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{16}\.tmp$")


def _sweep_stale_temps(directory: Path, now: float) -> None:
    if directory in _swept:
        return
    _swept.add(directory)
    with os.scandir(directory) as entries:
        for entry in entries:
            if not _TEMP_NAME.match(entry.name):
                continue
            with contextlib.suppress(OSError):
                if now - entry.stat(follow_symlinks=False).st_mtime > STALE_TEMP_SECONDS:
                    os.unlink(entry.path)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically and durably, with permission ``mode``.

    The directory must exist (see :func:`ensure_directory`) and pass
    :func:`check_target`; this function does not check it again.

    Args:
        path: The target file.
        data: The complete new contents.
        mode: Permission bits of the new file, set at creation.

    Raises:
        OSError: When the write fails; the previous file is untouched and the
            temporary file removed.
    """
    temp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | _O_NOFOLLOW | _O_CLOEXEC, mode)
    try:
        try:
            # The umask may have narrowed the mode; set it exactly (never wider).
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    _fsync_directory(path.parent)
    _sweep_stale_temps(path.parent, time.time())
