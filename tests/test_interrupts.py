"""Ctrl-C during clean-up is held until the clean-up is done (semcat.interrupts)."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from semcat.interrupts import sigint_deferred


@pytest.fixture(autouse=True)
def default_sigint():
    """Python's own Ctrl-C handler for the test (another test in this process may have set one, e.g. Spark's)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_a_ctrl_c_inside_the_block_is_delivered_after_it() -> None:
    done = []
    with pytest.raises(KeyboardInterrupt):
        with sigint_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs here, without raising
            done.append("closed")  # the interrupt did not cut the block short
    assert done == ["closed"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_without_a_ctrl_c_the_block_runs_and_nothing_is_raised() -> None:
    with sigint_deferred():
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_off_the_main_thread_the_block_runs_as_is() -> None:
    ran = []

    def work() -> None:
        with sigint_deferred():
            ran.append(True)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert ran == [True]
