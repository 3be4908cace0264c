"""Ctrl-C at safe points: clean-up that must not be cut in half by a second thought of the user."""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold a Ctrl-C that arrives inside the block until the block is done, then deliver it.

    Closing a catalogue's pool is the case in point: a KeyboardInterrupt raised inside SQLAlchemy's
    connection close is logged as a traceback and leaves the close half done, although every batch
    is already committed. Off the main thread (where handlers cannot be set) the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(signal.SIGINT, None)  # the default handler raises KeyboardInterrupt here
