"""The first SIGINT/SIGTERM only asks the loop to stop; the second exits at once; handlers are restored after."""
from __future__ import annotations

import os
import signal

import pytest

from framework.engine.signals import GracefulInterrupt


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_first_signal_is_a_request_second_exits(sig, capfd):
    before = signal.getsignal(sig)
    with pytest.raises(KeyboardInterrupt):
        with GracefulInterrupt() as stop:
            os.kill(os.getpid(), sig)
            assert stop.requested and stop.name == sig.name  # delivered, and nothing raised
            os.kill(os.getpid(), sig)
    err = capfd.readouterr().err
    assert f"{sig.name} received: finishing the current step, then saving last.pth" in err
    assert f"{sig.name} again: exiting now, without saving" in err
    assert signal.getsignal(sig) == before


def test_handlers_are_restored_when_training_ends():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with GracefulInterrupt() as stop:
        assert signal.getsignal(signal.SIGTERM) == stop._handle
    assert {s: signal.getsignal(s) for s in before} == before and not stop.requested
