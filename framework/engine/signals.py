"""Ctrl-C and a scheduler's SIGTERM stop training cleanly: the current step finishes, last.pth is saved, the logs
are closed; a second signal exits at once.

Python's default turns SIGINT into a KeyboardInterrupt wherever the interpreter happens to be (possibly inside an
optimizer step, with half-updated weights), and SIGTERM kills the process outright; either loses the work since the
last checkpoint. Here the handler only records the request, and the training loop asks `requested` between steps.
Data-loader workers ignore both signals (framework/data/loader.py:seed_worker), so a Ctrl-C in a terminal, which
reaches the whole process group, does not kill them under the main process's feet.
"""
from __future__ import annotations

import os
import signal
import threading
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulInterrupt:
    """While active (`with GracefulInterrupt() as stop:`), the first SIGINT/SIGTERM sets `stop.received`; the second
    restores the default handlers and raises KeyboardInterrupt. Outside the main thread it does nothing (Python
    only delivers signals there)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.received is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received is not None else ""

    def __enter__(self) -> GracefulInterrupt:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            self._restore()
            _say(f"\n{name} again: exiting now, without saving (the last saved checkpoint is intact).\n")
            raise KeyboardInterrupt
        self.received = signum
        # os.write, not logging or print: a signal handler may run while the logging lock or stderr's buffer is held
        _say(f"\n{name} received: finishing the current step, then saving last.pth and exiting "
             "(press Ctrl-C again to exit at once without saving).\n")


def _say(text: str) -> None:
    try:
        os.write(2, text.encode())
    except OSError:
        pass


__all__ = ["GracefulInterrupt", "STOP_SIGNALS"]
