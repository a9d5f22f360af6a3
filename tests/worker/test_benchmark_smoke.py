"""The worker benchmarks' --smoke modes run end to end (tiny model, CPU, seconds), so they cannot rot,
and gpu_sdxl's same-work check passes only when the worker draws diffusers' pixels."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SPREAD = {"median", "p10", "p90", "min", "max", "n"}


def smoke(script: str, out: Path) -> dict:
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), "--smoke", "--out", str(out)],
                            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


def test_worker_overhead_smoke(tmp_path: Path) -> None:
    report = smoke("worker_overhead.py", tmp_path / "overhead.json")
    assert {"date", "machine", "command"} <= set(report)
    assert report["smoke"] is True and report["concurrency"] == "one request at a time on both sides"
    for key in ("direct_spread", "http_spread", "http_over_direct_per_round_spread"):
        assert set(report[key]) == SPREAD and report[key]["n"] == report["rounds"], key
    assert report["http_over_direct_of_medians"] > 0


def test_gpu_sdxl_smoke_checks_the_same_pixels(tmp_path: Path) -> None:
    report = smoke("gpu_sdxl.py", tmp_path / "gpu.json")
    assert {"date", "machine", "command"} <= set(report)
    same = report["same_work"]["per_seed"]
    assert len(same) == report["images"] == 2
    # On the CPU in fp32 both sides draw exactly the same pixels.
    assert all(s["psnr_db"] is None and s["max_abs_difference"] == 0 for s in same), same
    for side in ("diffusers", "worker"):
        assert set(report[side]["seconds"]) == SPREAD and report[side]["seconds"]["n"] == 2
    assert report["ratio_worker_over_diffusers_median"] > 0
