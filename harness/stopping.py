"""Stopping cleanly: SIGINT or SIGTERM asks the training in this process to checkpoint at the end of
the iteration it is in and stop (a second signal stops at once); worker processes stop the same way
when their parent asks them to, or when their parent dies, so a worker never outlives its parent.

``install()`` sets the handlers (in the main thread), ``check()`` raises :class:`Interrupted` once a
stop was requested, and ``watch(parent_pid, event)`` starts a thread that requests a stop when the
parent process is gone or sets ``event``. Exit codes follow the shell: 128 + the signal number
(130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from typing import Any, Iterator

_requested: int | None = None


class Interrupted(KeyboardInterrupt):
    """Raised where work stops after a stop request; ``exit_code`` is 128 + the signal number.
    ``at_once`` says why the work stopped where it was instead of at its next checkpoint (a second
    signal, a task call that hung); None for a stop at a checkpoint."""

    def __init__(self, signum: int, at_once: str | None = None) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum, self.at_once = signum, at_once

    def __reduce__(self) -> tuple:  # crosses process boundaries (a pool worker's result)
        return (Interrupted, (self.signum, self.at_once))

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def requested() -> int | None:
    """The signal that asked this process to stop, or None."""
    return _requested


def request(signum: int = signal.SIGTERM) -> None:
    """Ask the work in this process to stop at its next check (and watch for a task call that hangs
    meanwhile: :func:`_watch_for_hang`)."""
    global _requested
    if _requested is None:
        _requested = int(signum)
        _watch_for_hang(int(signum))


def reset() -> None:
    """Forget a stop request (for a process that goes on with other work)."""
    global _requested
    _requested = None


def check() -> None:
    """Raise :class:`Interrupted` if a stop was requested."""
    if _requested is not None:
        raise Interrupted(_requested)


#: A task's ``reset`` or ``step`` still running this many seconds after a stop was requested is taken
#: to hang: the stop then takes effect inside it, as a second signal's would.
HANG_S = 5.0
#: Why the stop is being forced (set just before the hang watch signals the main thread).
_forced: str | None = None


def _task_call(frame: Any) -> Any:
    """The outermost ``reset`` or ``step`` frame on the stack ending at ``frame`` that is not the
    harness's own code (a task plugin's, or a wrapped environment's through :mod:`harness.task_api`)."""
    found = None
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if frame.f_code.co_name in ("reset", "step") and (
                not module.startswith("harness.") or module == "harness.task_api"):
            found = frame
        frame = frame.f_back
    return found


#: Plugin work that checks no stop (importing a plugin, building a task), innermost last, as
#: ``(token, what)``: see :func:`plugin_work`.
_regions: list[tuple[object, str]] = []


@contextlib.contextmanager
def plugin_work(what: str) -> Iterator[None]:
    """Mark plugin code that checks no stop request (``what``: "importing plugin 'x'"): a stop
    requested while it runs, or while it is still running, takes effect inside it once it has run
    :data:`HANG_S` seconds past the request, as a hung task call's does."""
    region = (object(), what)
    _regions.append(region)
    try:
        yield
    finally:
        _regions.remove(region)


def _watch_for_hang(signum: int) -> None:
    """Once a stop is requested: if one task call of the main thread lasts :data:`HANG_S` seconds
    from then on, stop inside it (signal the main thread again, with the reason in ``_forced``)."""
    main = threading.main_thread().ident

    def run() -> None:
        global _forced
        seen, since = None, time.monotonic()
        while _requested is not None:
            time.sleep(0.1)
            frame = sys._current_frames().get(main)
            call: Any = _task_call(frame)
            del frame
            if call is None and _regions:
                call = _regions[-1]
            if call is None or call is not seen:
                seen, since = call, time.monotonic()
            elif time.monotonic() - since >= HANG_S:
                if signal.getsignal(signum) is not _handler:  # no handler of ours to raise in the main thread
                    return
                what = call[1] if isinstance(call, tuple) else f"the task's {call.f_code.co_name}()"
                _forced = f"{what} had not returned {HANG_S:g} s after the stop was asked"
                signal.pthread_kill(main, signum)
                return

    threading.Thread(target=run, name="harness-hang-watch", daemon=True).start()


def _handler(signum: int, _frame: Any) -> None:
    if _requested is not None:  # asked twice, or a task call hangs: stop now
        raise Interrupted(signum, _forced or "a second signal")
    request(signum)


def install(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
    """Handle ``signals`` (SIGINT and SIGTERM) by requesting a stop (only possible in the main thread)."""
    if threading.current_thread() is threading.main_thread():
        for sig in signals:
            signal.signal(sig, _handler)


_parent: int | None = None
_busy = 0


def _orphaned() -> bool:
    return _parent is not None and os.getppid() != _parent


@contextlib.contextmanager
def working() -> Iterator[None]:
    """Mark a unit of work (one run) in a worker process: a worker whose parent died finishes it
    (checkpointing at the next iteration) and then exits instead of waiting for more work."""
    global _busy
    _busy += 1
    try:
        yield
    finally:
        _busy -= 1
        if _orphaned():
            os._exit(128 + signal.SIGTERM)


def watch(parent_pid: int, event: Any = None, grace_s: float = 60.0) -> None:
    """Request a stop when ``parent_pid`` is no longer this process's parent (it died) or when
    ``event`` is set. An orphaned process exits as soon as no work is running, and at the latest
    ``grace_s`` seconds after its parent died."""
    global _parent
    _parent = parent_pid

    def run() -> None:
        while not _orphaned() and not (event is not None and event.is_set()):
            time.sleep(0.25)
        request(signal.SIGTERM)
        while not _orphaned():  # asked by a living parent: it ends this process
            time.sleep(0.25)
        deadline = time.monotonic() + grace_s
        while _busy and time.monotonic() < deadline:
            time.sleep(0.25)
        os._exit(128 + signal.SIGTERM)

    threading.Thread(target=run, name="harness-stop-watch", daemon=True).start()


def worker_setup(parent_pid: int, event: Any = None) -> None:
    """Initializer of a worker process: stop on signals, on ``event`` and when the parent dies."""
    install()
    watch(parent_pid, event)
