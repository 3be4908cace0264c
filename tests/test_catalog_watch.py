"""watch: a file written slowly is ingested once, complete, and never recorded as broken."""
from __future__ import annotations

import threading
from datetime import datetime
import time
from pathlib import Path

import pytest
from test_catalog_helpers import write_fei_tiff

from semcat._io import sha256_file
from semcat.catalog import open_catalog
from semcat.catalog.watch import watch


def _wait(cond, timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_watch_ingests_a_slowly_written_file(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_fei_tiff(inbox / "already_there.tif", mag=1000, pixel_m=1e-8, acquired=datetime(2024, 1, 1), seed=1)
    source = write_fei_tiff(tmp_path / "src.tif", mag=5000, pixel_m=2e-9,
                            acquired=datetime(2024, 2, 1), seed=2, size=128)
    data = source.read_bytes()
    cat = open_catalog(tmp_path / "c.db")
    stop = threading.Event()
    calls: list[list[str]] = []
    thread = threading.Thread(target=watch, args=(cat, [inbox]), daemon=True,
                              kwargs=dict(settle_s=0.6, poll_s=0.1, stop=stop,
                                          on_ingest=lambda paths, s: calls.append(paths)))
    thread.start()
    try:
        assert _wait(lambda: cat.count() == 1), "the file present at start was not ingested"
        target = inbox / "sub" / "slow.tif"
        target.parent.mkdir()
        with open(target, "wb") as f:  # a microscope writing over ~1.5 s, in 6 pieces
            step = len(data) // 6 + 1
            for i in range(0, len(data), step):
                f.write(data[i:i + step])
                f.flush()
                time.sleep(0.25)
                assert cat.count() == 1, "a half-written file was ingested"
        assert _wait(lambda: cat.count() == 2), "the finished file was not ingested"
        rec = cat.get(sha256_file(source))
        assert rec is not None and rec.path == str(target) and rec.magnification == 5000
        assert cat.errors() == []
        time.sleep(1.0)
        assert sum(str(target) in c for c in calls) == 1  # debounced: ingested once
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    cat.close()


def test_watch_refuses_a_missing_folder(tmp_path: Path) -> None:
    cat = open_catalog(tmp_path / "c.db")
    with pytest.raises(NotADirectoryError, match="expected an existing folder"):
        watch(cat, [tmp_path / "nope"])
    cat.close()


def test_watch_does_not_follow_a_symlink_out_of_the_folder(tmp_path: Path) -> None:
    """A link dropped into the watched folder (to an image elsewhere, or a FIFO) is never read."""
    import os

    inbox, elsewhere = tmp_path / "inbox", tmp_path / "elsewhere"
    inbox.mkdir()
    secret = write_fei_tiff(elsewhere / "secret.tif", mag=1000, pixel_m=1e-8, acquired=datetime(2024, 1, 1), seed=3)
    cat = open_catalog(tmp_path / "c.db")
    stop = threading.Event()
    thread = threading.Thread(target=watch, args=(cat, [inbox]), daemon=True,
                              kwargs=dict(settle_s=0.2, poll_s=0.05, stop=stop))
    thread.start()
    try:
        time.sleep(0.5)
        (inbox / "link.tif").symlink_to(secret)
        os.mkfifo(inbox / "pipe.tif")
        inside = write_fei_tiff(inbox / "real.tif", mag=2000, pixel_m=1e-8, acquired=datetime(2024, 1, 2), seed=4)
        assert _wait(lambda: cat.count() == 1), "the real file was not ingested"
        time.sleep(1.0)
        assert cat.count() == 1 and cat.get(sha256_file(inside)) is not None
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    cat.close()
