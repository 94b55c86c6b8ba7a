"""Reading the files of a results tree that may come from someone else: regular files of a bounded
size only.

A run directory copied from another machine may hold a FIFO where ``metrics.csv`` belongs (opening
it for reading would wait forever for a writer), a link to ``/dev/zero`` or another device (reading
it never ends), or a file larger than any the harness writes. :func:`read_bytes` and
:func:`read_text` open a file without blocking, check that what was opened is a regular file no
larger than the limit of its kind (:data:`LIMITS`), and read at most that many bytes; anything else
is an :class:`UnsafeFile`, a one-line :class:`HarnessError` naming the file and what is accepted.
Links are followed: a link to a regular file reads as that file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from harness.errors import HarnessError

_MIB = 1 << 20
#: The largest file of each kind that is read (bytes). Far above what a run writes: a config.json is
#: a few KiB, a metrics row under 2 KiB (a million iterations fit), a checkpoint a few MiB.
LIMITS: dict[str, int] = {"json": 64 * _MIB, "text": 2048 * _MIB, "checkpoint": 4096 * _MIB}


class UnsafeFile(HarnessError):
    """A file of a results tree that is not a regular file, or is larger than its kind may be."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def _size(n: int) -> str:
    return f"{n / _MIB:.1f} MiB" if n >= _MIB else f"{n} bytes"


def _open(path: str | Path, kind: str) -> tuple[int, int]:
    """``(fd, limit)`` of regular file ``path`` opened for reading, or :class:`UnsafeFile`."""
    limit = LIMITS[kind]
    # O_NONBLOCK: opening a FIFO does not wait for a writer; it is refused below.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            link = f" (a link to {os.path.realpath(path)!r})" if os.path.islink(path) else ""
            raise UnsafeFile(f"{str(path)!r}{link} is {_kind(info.st_mode)}; only regular files are read "
                             "from a results tree: replace it with the file it stands for, or remove it")
        if info.st_size > limit:
            raise UnsafeFile(f"{str(path)!r} is {_size(info.st_size)}, more than the {_size(limit)} a {kind} file "
                             "of a run may hold; it is not read (damaged or not a harness file?)")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, limit


def check_file(path: str | Path, kind: str = "json") -> None:
    """Raise :class:`UnsafeFile` unless ``path`` is a regular file within the limit of its kind
    (before a reader that streams it, such as :mod:`csv`, opens it)."""
    os.close(_open(path, kind)[0])


def read_bytes(path: str | Path, kind: str = "json") -> bytes:
    """The bytes of regular file ``path`` of at most ``LIMITS[kind]`` bytes, else :class:`UnsafeFile`
    (a missing or unreadable file raises the usual :class:`OSError`)."""
    fd, limit = _open(path, kind)
    try:
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(limit + 1 - total, 16 * _MIB))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # grew while being read
                raise UnsafeFile(f"{str(path)!r} grew past the {_size(limit)} a {kind} file of a run may hold "
                                 "while being read; it is not read")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(path: str | Path, kind: str = "json") -> str:
    """:func:`read_bytes` decoded as UTF-8 (a :class:`UnicodeDecodeError` passes on to the caller)."""
    return read_bytes(path, kind).decode("utf-8")

