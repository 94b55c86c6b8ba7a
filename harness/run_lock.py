"""One writer per run directory: an OS-level lock held by the process that trains the run.

The lock is ``flock`` on ``<run>/.lock``, taken before anything is written and released when the
run ends, or by the operating system when the process dies in any way (SIGKILL included), so a stale
lock never blocks a re-run. While held, the file names the holder (pid, host, start time) for the
one-line error a second writer gets; it is emptied on release. A lock file that is not a regular file
(a FIFO or a link to a device in a copied tree) is refused. A writer that waited for the lock while
the directory was moved aside (``bench --rerun-changed``) locks the directory now at its path.

On a shared filesystem: Linux's NFS client turns ``flock`` into a lock held by the NFS server
(NFSv4, or NFSv3 with the lock daemon), so writers on different nodes exclude each other, and a
crashed node's lock is freed when its lease expires (about 90 s on NFSv4). On a mount without
server-side locking (NFS ``nolock``, Lustre without its ``flock`` option) the lock only excludes
writers on the same node.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import stat
import time
from pathlib import Path

from harness.errors import HarnessError


class RunLock:
    """An exclusive lock on one run directory."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.file = self.directory / ".lock"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, wait_s: float | None = None) -> None:
        """Take the lock, or raise a one-line error naming the directory and the process holding it.

        ``wait_s`` (default: the ``HARNESS_LOCK_WAIT`` environment variable, else 0) is how long to
        wait for the holder to go first: a cluster executor re-running a run whose node was lost
        waits for the lost process's lock to be released."""
        if self._fd is not None:
            return
        if wait_s is None:
            wait_s = float(os.environ.get("HARNESS_LOCK_WAIT", "0") or 0)
        deadline = time.monotonic() + wait_s
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                if time.monotonic() < deadline:
                    os.close(fd)
                    time.sleep(0.5)
                    continue
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise HarnessError(f"run directory {str(self.directory)!r} is being written by {holder}; "
                                   "wait for it to finish or stop it (one writer per run)") from None
            if self._same_file(fd):
                break
            os.close(fd)  # the directory was moved aside (bench --rerun-changed) while we waited: lock the new one
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()} since "
                      f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode(), 0)
        self._fd = fd

    def _open(self) -> int:
        """The lock file, opened (created when missing); one that is not a regular file is refused."""
        try:
            fd = os.open(self.file, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK, 0o644)
        except OSError as exc:
            raise HarnessError(f"cannot open the lock file {str(self.file)!r}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or a link to a device from a copied tree
            os.close(fd)
            raise HarnessError(f"{str(self.file)!r} is not a regular file; remove it (the lock file is made afresh)")
        return fd

    def _same_file(self, fd: int) -> bool:
        """Whether ``fd`` is still the file at ``self.file`` (not one moved away with its directory)."""
        try:
            now, held = os.stat(self.file), os.fstat(fd)
        except OSError:
            return False
        return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)

    def release(self) -> None:
        """Release the lock. The file stays, emptied (an unlocked file blocks nobody, and a process that
        only looked at a run, or was refused, leaves its files as they were)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
