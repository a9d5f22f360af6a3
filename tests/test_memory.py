"""keep_large_buffers(): glibc's mallopt takes the thresholds (the gateway calls it at start).
ram_usage(): A1111's /memory ``ram`` of this process, as psutil (A1111's source of it) reads it."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

from sdxlpool._memory import keep_large_buffers, ram_usage


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_glibc_takes_the_thresholds_and_large_buffers_stop_page_faulting() -> None:
    # In a child process, so this test run's own allocator is left as it was. Each round holds three
    # 2 MB buffers at once and frees them, like an answer received, spliced and sent. By default
    # glibc trims the freed heap and the next round faults ~1400 pages back in; tuned, none.
    code = """
import resource, sys
from sdxlpool._memory import keep_large_buffers
if "--tune" in sys.argv:
    assert keep_large_buffers()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def round_trip():
    received = b"x" * 2_000_000
    spliced = received + b"y"
    sent = spliced + b"z"
    del received, spliced, sent
for _ in range(5):
    round_trip()
before = faults()
for _ in range(50):
    round_trip()
print(faults() - before)
"""
    try:
        ctypes.CDLL(None).mallopt  # noqa: B018 - only glibc has it
    except AttributeError:
        pytest.skip("not glibc")
    untuned = int(subprocess.check_output([sys.executable, "-c", code], text=True))
    tuned = int(subprocess.check_output([sys.executable, "-c", code, "--tune"], text=True))
    assert untuned > 50 * 400, untuned
    assert tuned < 50 * 20, tuned


def test_calling_it_twice_is_harmless() -> None:
    assert keep_large_buffers() == keep_large_buffers()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ram_usage_is_this_process_resident_memory_against_the_machines() -> None:
    psutil = pytest.importorskip("psutil")
    before = psutil.Process().memory_info().rss
    ram = ram_usage()
    after = psutil.Process().memory_info().rss
    assert set(ram) == {"free", "used", "total"}
    assert ram["total"] == psutil.virtual_memory().total
    assert min(before, after) - 2**20 <= ram["used"] <= max(before, after) + 2**20
    assert ram["free"] == ram["total"] - ram["used"]
    held = b"\x01" * (64 * 2**20)  # written, so resident
    assert ram_usage()["used"] >= ram["used"] + 60 * 2**20
    del held
