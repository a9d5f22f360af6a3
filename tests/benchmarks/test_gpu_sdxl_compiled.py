"""benchmarks/gpu_sdxl.py with the worker's fast path on: what a GPU run times is the compiled path.

On the CPU with torch.compile's `eager` backend (dynamo traces the UNets and the VAE decode into the
same graphs the GPU compiles, without generating kernels): every shape the run times is compiled
before it is timed, every gate and profile job reports the compiled path, and the gate compares that
path with eager diffusers. Without the warm-up in the script, the fast path would run each timed job
eager and a GPU run would measure, and gate, the wrong thing. One compiled shape: ~30 s on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_sdxl.py"
TIMEOUT_S = 300  # on a loaded 2-core machine; ~30 s alone


def test_every_timed_job_runs_the_compiled_path(tmp_path: Path) -> None:
    out = tmp_path / "gpu_sdxl.json"
    args = ["--arch", "tiny", "--device", "cpu", "--workdir", str(tmp_path / "weights"), "--steps", "4",
            "--size", "128", "--sizes", "128x128", "--batches", "1", "--samplers", "euler", "--profile-images", "1",
            "--gate-seeds", "1", "--gate-samplers", "euler,dpmpp-sde-karras", "--no-http",
            "--compile", "on", "--compile-backend", "eager",
            # the fast path fuses the QKV projections: fp32 sums in another order, not bit for bit
            "--max-latent-diff", "1e-3", "--gate-min-psnr", "60", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "SDXLPOOL_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    report = json.loads(out.read_text())
    assert report["complete"] is True
    compiled = report["compile"]
    assert (compiled["on"], compiled["backend"], compiled["cache_loaded"]) == (True, "eager", False), compiled
    assert set(compiled["warm_seconds"]) == {"128x128x1"}, compiled
    gate = report["exactness"]
    assert gate["passed"] is True
    assert [(c["sampler"], c["path"]) for c in gate["per_seed"]] == [("euler", "compiled"),
                                                                     ("dpmpp-sde-karras", "compiled")], gate
    (cell,) = report["profile"]["cells"]
    assert cell["paths"] == ["compiled"], cell
