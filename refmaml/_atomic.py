"""Atomic files: how refmaml writes every file (checkpoints, ``results.json``, figures, test vectors).

The contents go to a temporary file in the target's folder, which is flushed and fsynced, then
renamed over the target (``os.replace``, atomic on POSIX and Windows), and the folder is fsynced so
that the rename itself is durable: a reader, or a process killed at any moment, sees the previous
complete file or the new complete file, never a partial one.
"""

import contextlib
import os
import secrets

PREFIX = ".tmp-"  # of the temporary files (a killed writer leaves at most one behind)


def _temporary(directory, suffix):
    """A new file next to the target, created with the permissions ``open`` gives (``umask``)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        path = os.path.join(directory, f"{PREFIX}{secrets.token_hex(6)}{suffix}")
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free name for a temporary file in {directory!r}")


def _sync_folder(directory):
    if hasattr(os, "O_DIRECTORY"):  # POSIX: make the rename itself durable
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def replacing(path, binary=False):
    """A file open for writing (text in UTF-8, or ``binary``) whose contents replace ``path`` once
    the block ends; an exception in the block leaves ``path`` as it was. The folder is created if
    missing."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = _temporary(directory, os.path.splitext(path)[1])
    try:
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _sync_folder(directory)


def write_bytes(path, data):
    """Replace ``path`` with ``data``, atomically."""
    with replacing(path, binary=True) as f:
        f.write(data)
