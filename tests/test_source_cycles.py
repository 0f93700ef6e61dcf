"""300 open / stall / re-open cycles on the real file decoder: no file descriptor or memory leak."""

from __future__ import annotations

import time

import psutil
import pytest

from camera_doubles import FreezingFile
from conftest import CLASSROOM
from device.supervisor import Capture

CYCLES = 300
WARMUP = 20


def cycle(capture: Capture, until_opens: int) -> None:
    while capture.opens < until_opens:
        capture.next_frame(0.002)
        capture.supervise(time.monotonic())
        assert capture.crashed is None


@pytest.mark.timeout(120)
def test_300_stall_cycles_release_every_source():
    me = psutil.Process()
    capture = Capture(lambda: FreezingFile(CLASSROOM, good=2), fps=1000, stall_s=0.02, hang_s=30,
                      backoff_base_s=0.001, backoff_max_s=0.001)
    capture.start()
    try:
        cycle(capture, WARMUP)  # decoder, allocator and thread machinery warmed up
        time.sleep(0.05)
        fds0, rss0, threads0 = me.num_fds(), me.memory_info().rss, me.num_threads()
        cycle(capture, WARMUP + CYCLES)
        time.sleep(0.05)
        fds1, rss1, threads1 = me.num_fds(), me.memory_info().rss, me.num_threads()
    finally:
        capture.stop()
    print(f"\n{CYCLES} cycles: fds {fds0} -> {fds1}, RSS {rss0 / 2**20:.1f} -> {rss1 / 2**20:.1f} MiB, "
          f"threads {threads0} -> {threads1}, stalls {capture.stalls}")
    assert capture.stalls >= CYCLES
    assert FreezingFile.closed == FreezingFile.opened >= CYCLES  # closed explicitly, not by the GC
    assert fds1 <= fds0 and threads1 <= threads0
    assert rss1 - rss0 < 8 * 2**20  # 300 leaked 480x270 decoders would be far above this
