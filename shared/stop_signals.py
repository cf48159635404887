"""SIGTERM and SIGHUP taken as Ctrl-C is, by the commands that finish their outputs when stopped
(`analyze`, `up`): `kill`, supervisord, `docker stop` and a closed terminal send them, and they ended
the process at once (no summary, a broken annotated video, `up`'s embedded redis-server left running)."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Ctrl-C raises KeyboardInterrupt; ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Deferral(threading.local):
    depth = 0  # deferred_stop sections entered
    pending: int | None = None  # a stop signal that came inside one
    raised: int | None = None  # the last stop raised, in case Python dropped it (raise_dropped_stop)


_deferral = _Deferral()


def _raise(signum, frame) -> None:
    if _deferral.depth:  # inside an output being written: raised as it ends (deferred_stop)
        _deferral.pending = _deferral.pending or signum
        return
    _deferral.raised = signum
    raise Stopped(signum) if signum != signal.SIGINT else KeyboardInterrupt


def raise_dropped_stop() -> None:
    """The stop signal raised where Python drops exceptions, raised again here (a loop's turn calls it): a
    handler runs at whatever bytecode the main thread is at, a finalizer's too (a redis ConnectionPool's
    ``__del__`` while `up` loaded its models), and there the exception is printed as "Exception ignored in"
    and dropped: `up` then ran to its end, exit 0, SIGTERM lost. One raised and caught as it should be
    (the loop's ``except KeyboardInterrupt``) is spent there: the loop calls this no more."""
    signum, _deferral.raised = _deferral.raised, None
    if signum is not None:
        raise Stopped(signum) if signum != signal.SIGINT else KeyboardInterrupt


@contextmanager
def deferred_stop():
    """A stop signal that comes inside is raised as the section ends, not where the main thread
    happens to be: an output being written (an annotated video's writer opened but not yet kept
    left a file of a header alone, that no player opens) is written whole first."""
    _deferral.depth += 1
    try:
        yield
    except BaseException:  # the section's own error ends the run: a stop that came with it is spent
        _deferral.depth -= 1
        if not _deferral.depth:
            _deferral.pending = None
        raise
    _deferral.depth -= 1
    if not _deferral.depth and _deferral.pending is not None:  # the section ended well: the stop now
        signum, _deferral.pending = _deferral.pending, None
        _raise(signum, None)


def take_stop_signals() -> dict:
    """Install the handlers (main thread only; elsewhere nothing); returns what to restore."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    _deferral.pending = _deferral.raised = None
    return {signum: signal.signal(signum, _raise) for signum in STOP_SIGNALS}


def hold_stop_signals(previous: dict) -> None:
    """While outputs are finished: a second signal does not cut them short."""
    for signum in previous:
        signal.signal(signum, signal.SIG_IGN)


def restore_stop_signals(previous: dict) -> None:
    for signum, handler in previous.items():
        if handler is not None:  # installed from C: Python cannot name it to give it back (TypeError)
            signal.signal(signum, handler)


@contextmanager
def handling(handler, signals=(signal.SIGINT, signal.SIGTERM)):
    """``handler`` for ``signals`` inside, the handlers found given back after (main thread only;
    elsewhere nothing): a long-running command run in-process (`track`, `dashboard`) left its own,
    which only set a stop flag, and Ctrl-C no longer interrupted its caller."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum in signals}
    try:
        yield
    finally:
        restore_stop_signals(previous)


def exit_code(exc: BaseException) -> int:
    """128 + the signal, as a shell reports it: 130 for Ctrl-C, 143 SIGTERM, 129 SIGHUP."""
    return 128 + getattr(exc, "signum", signal.SIGINT)


def stopped_by(code: int) -> str:
    """What an :func:`exit_code` says a person did: "Ctrl-C", "SIGTERM", "SIGHUP"."""
    return "Ctrl-C" if code == 130 else signal.Signals(code - 128).name
