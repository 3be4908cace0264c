"""Ctrl-C during clean-up is held until the clean-up is done (semcat.interrupts)."""
from __future__ import annotations

import signal
import subprocess
import sys
import threading

import pytest

from semcat.interrupts import sigint_deferred


@pytest.fixture(autouse=True)
def default_sigint():
    """Python's own Ctrl-C handler for the test (another test in this process may have set one, e.g. Spark's)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


# The real SIGINT goes to a child process: sent to an xdist worker itself it once took that whole
# worker down in fresh-clone CI (not reproduced alone; the cause was not found), and a child with
# nothing else loaded tests sigint_deferred alone.
_CHILD = """
import os, signal, time
from semcat.interrupts import sigint_deferred
signal.signal(signal.SIGINT, signal.default_int_handler)
done = []
try:
    with sigint_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # the handler runs here, without raising
        done.append("closed")  # the interrupt did not cut the block short
except KeyboardInterrupt:
    print("raised after", done, signal.getsignal(signal.SIGINT) is signal.default_int_handler)
"""


def test_a_ctrl_c_inside_the_block_is_delivered_after_it() -> None:
    out = subprocess.run([sys.executable, "-c", _CHILD], check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "raised after ['closed'] True"


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
