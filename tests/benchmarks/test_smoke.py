"""Every benchmark script runs in CI in its smoke mode, so none can rot between measurements.

Each `benchmarks/*.py` (not `_private.py`) is found on disk, run as `python SCRIPT --smoke --out
TMP.json` in its own process (tiny sizes, seconds), and must exit 0 and write a results JSON with
its own fields plus where it came from (sdxlpool.testing.pool.write_report: date, machine,
command, commit, clean). A new script fails here until it has a `--smoke` mode and a FIELDS entry.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_"))
PROVENANCE = ("date", "machine", "command", "commit", "clean")
# The result fields each script's JSON must carry (the ones docs/benchmarks.md quotes).
FIELDS: dict[str, tuple[str, ...]] = {
    "gateway_overhead": ("setup", "latency_ms", "added_latency_ms", "gateway_added_over_nginx_added_p50",
                         "throughput", "requests_per_s", "gateway_over_nginx_requests_per_s",
                         "gateway_rss_kib_after", "goal", "load_average_1min", "kinds",
                         "kind_ratio_over_txt2img"),
    "routing": ("pool", "steps", "size", "capacity_rps", "requests_per_cell", "max_seconds", "seed", "profiles",
                "wall_seconds", "cells", "summary"),
    "up_first_image": ("runs",),
    "operator_scale": ("pools", "seconds_to_converge", "api_calls_per_pool_per_minute_at_rest"),
    "worker_overhead": ("direct_images_per_s", "http_images_per_s"),
    "gpu_sdxl": ("diffusers", "worker", "exactness", "profile", "compile", "complete"),
    "prompt_encoding": ("model", "device", "repeats", "cases"),
    "autoscaling": ("simulation", "seed", "simulated_hours", "peak_rps", "target_p95_seconds", "requests", "pool",
                    "policies", "summary", "goal", "ours_target_sweep"),
    "lora_switch": ("seconds", "cached_over_none_of_medians", "cold_over_none_of_medians", "cold_load_seconds_median"),
    "image_encoding": ("size", "repeats", "kinds", "goal"),
    "routing_model": ("simulation", "mixes", "steps", "sizes", "requests_per_seed", "seeds", "loads", "replicas",
                      "policies", "scrape_period_seconds", "wall_seconds", "cells", "summary"),
    "peer_announce": ("count", "rounds", "datagram_bytes", "send", "receive"),
    "worker_throughput": ("sides", "same_pictures", "fast_over_today_images_per_s", "goal", "complete"),
}
SPREAD = {"median", "p10", "p90", "min", "max", "n"}


def _worker_overhead(report: dict[str, Any]) -> None:
    assert report["smoke"] is True and report["concurrency"] == "one request at a time on both sides"
    for key in ("direct_spread", "http_spread", "http_over_direct_per_round_spread"):
        assert set(report[key]) == SPREAD and report[key]["n"] == report["rounds"], key
    assert report["http_over_direct_of_medians"] > 0


def _gpu_sdxl(report: dict[str, Any]) -> None:
    """Both sides did the same work: on the CPU in fp32 they draw exactly the same pixels."""
    same = report["same_work"]["per_seed"]
    assert len(same) == report["images"] == 2
    assert all(s["psnr_db"] is None and s["max_abs_difference"] == 0 for s in same), same
    for side in ("diffusers", "worker"):
        assert set(report[side]["seconds"]) == SPREAD and report[side]["seconds"]["n"] == 2
    assert report["ratio_worker_over_diffusers_median"] > 0
    gate = report["exactness"]  # the worker in-process against eager diffusers: identical on the CPU
    assert gate["passed"] is True and {c["sampler"] for c in gate["per_seed"]} == {"euler", "dpmpp-sde-karras"}
    assert all(c["max_abs_latent_difference"] == 0 and c["psnr_db"] is None for c in gate["per_seed"]), gate
    assert report["complete"] is True and report["compile"] == {"on": False}  # the CPU's default: eager
    profile = report["profile"]  # every stage timed in every cell of the (smoke) sweep
    assert profile["clock"] == "time.perf_counter" and profile["measured_on_gpu"] is False
    assert {(c["width"], c["height"], c["batch"]) for c in profile["cells"]} == {(128, 96, 1), (128, 96, 2)}
    for cell in profile["cells"]:
        for stage in ("text_encoders", "base_unet", "refiner_unet", "vae_decode"):
            assert cell[f"{stage}_calls_per_job"] >= 1 and cell[f"{stage}_ms_per_job"]["median"] > 0, stage
        assert cell["base_unet_calls_per_job"] + cell["refiner_unet_calls_per_job"] == report["steps"]  # Euler
        assert cell["png_base64_ms_per_image"]["n"] == cell["batch"]
        assert cell["paths"] == ["eager"]
    fast = report["fast_mode"]  # DeepCache against the exact path: timed, and a little different
    assert (fast["mode"], fast["interval"], fast["branch"]) == ("deepcache", 3, 0)
    assert fast["speedup_median"] > 0 and fast["exact"]["unet_seconds_per_image"]["median"] > 0
    (cell,) = fast["per_seed"]
    assert cell["max_abs_latent_difference"] > 0 and cell["psnr_db"] is not None and cell["psnr_db"] > 20, cell


def _worker_throughput(report: dict[str, Any]) -> None:
    """Today's worker ran one image per job; the batching one shared jobs; every picture the same."""
    today, fast = report["sides"]["today"], report["sides"]["fast"]
    assert today["batch_images"] == {"1": report["requests"]}, today
    assert sum(fast["batch_images"].values()) == report["requests"] and max(map(int, fast["batch_images"])) > 1, fast
    assert today["images_per_s"] > 0 and fast["images_per_s"] > 0 and report["complete"] is True
    assert [s["seed"] for s in report["same_pictures"]["per_seed"]] == list(range(report["requests"]))
    assert all(s["psnr_db"] is None or s["psnr_db"] >= 40 for s in report["same_pictures"]["per_seed"])


def _prompt_encoding(report: dict[str, Any]) -> None:
    """Every prompt was measured on each side, and the long one really needed three chunks."""
    assert set(report["cases"]) == {"short", "weighted", "three_chunks", "scheduled"}
    for case in report["cases"].values():
        for side in ("parse_ms", "encode_ms", "diffusers_encode_ms"):
            assert set(case[side]) == SPREAD and case[side]["n"] == report["repeats"], side
        assert case["encode_over_diffusers"] > 0
    assert report["cases"]["three_chunks"]["chunks"] == 3 and report["cases"]["scheduled"]["schedule_entries"] > 1


def _lora_switch(report: dict[str, Any]) -> None:
    """Every kind was timed in every round, and the cold LoRAs stayed loaded (the cache's default bound)."""
    for kind in ("none", "cached", "cold"):
        assert len(report["seconds"][kind]) == report["rounds"] * report["images_per_kind_per_round"], kind
        assert set(report["seconds_spread"][kind]) == SPREAD
    assert report["cached_over_none_of_medians"] > 0 and report["cold_over_none_of_medians"] > 0
    assert report["loras_held_at_the_end"] == 2 + report["rounds"] * report["images_per_kind_per_round"]


def _gateway_overhead(report: dict[str, Any]) -> None:
    """Every kind of request was timed on both sides, the img2img with its upload."""
    kinds = report["kinds"]
    assert set(kinds) == {"txt2img", "img2img", "hires"} == set(report["kind_ratio_over_txt2img"])
    for row in kinds.values():
        assert row["direct_ms"]["n"] == row["gateway_ms"]["n"] == report["kind_requests"]
        assert row["gateway_over_direct_p50"] > 0
    assert kinds["img2img"]["request_bytes"] > 100_000 > kinds["txt2img"]["request_bytes"]
    assert report["kind_ratio_over_txt2img"]["txt2img"] == 1


def _autoscaling(report: dict[str, Any]) -> None:
    """Every policy ran the same requests and accounted for each of them (answered or lost)."""
    policies = report["policies"]
    assert {"fixed", "hpa", "ours"} <= set(policies)
    for name, figures in policies.items():
        assert figures["images"] + figures["lost"] == report["requests"] > 0, name
        assert figures["cost_per_1000_images"] > 0 and figures["p95"] >= figures["p50"] > 0, name
    assert policies["fixed"]["replica_changes"] == 0 and report["summary"]["ours_over_hpa"]["cost_per_1000_images"]


def _image_encoding(report: dict[str, Any]) -> None:
    """Both encoders timed on both kinds of image, every part of the overhead (PNG, base64, JSON)."""
    assert set(report["kinds"]) == {"noise", "photo_like"}
    for row in report["kinds"].values():
        for side in ("before", "after"):
            for part in ("png_ms", "base64_ms", "json_ms", "total_ms"):
                assert set(row[side][part]) == SPREAD and row[side][part]["n"] == report["repeats"], (side, part)
            assert row[side]["png_bytes"] > 0 and row[side]["json_bytes"] > row[side]["png_bytes"]
        assert row["after_over_before_total"] > 0 and set(row["pillow_levels"]) == {"0", "1", "6"}
    assert report["goal"]["after_percent_of_gpu_image_worst_kind"] > 0


# What a script's smoke results must say beyond its fields (its own claims).
def _routing_model(report: dict[str, Any]) -> None:
    """Nothing lost; the clairvoyant policy believes the truth; each ratio is against the right peer."""
    cells = report["cells"]
    assert {c["policy"] for c in cells} == set(report["policies"]) and all(c["lost"] == 0 for c in cells)
    for cell in cells:
        if cell["policy"].startswith("clairvoyant"):
            assert cell["belief"]["eta_bias_seconds"] == 0 and cell["belief"]["eta_abs_error_seconds"] == 0, cell
            assert cell["replicas"] == 1
        if cell["policy"] == "least_inflight":
            assert cell["over_least_inflight"] == {"p50": 1.0, "p95": 1.0}
        if cell["policy"] == "clairvoyant":
            assert cell["over_clairvoyant"] == {"p50": 1.0, "p95": 1.0}


CHECKS = {"autoscaling": _autoscaling, "routing_model": _routing_model, "gateway_overhead": _gateway_overhead, "worker_overhead": _worker_overhead, "gpu_sdxl": _gpu_sdxl, "prompt_encoding": _prompt_encoding,
          "image_encoding": _image_encoding,
          "lora_switch": _lora_switch, "worker_throughput": _worker_throughput}
TIMEOUT_S = 240  # per script, on a loaded 2-core CI machine; each takes seconds to ~30 s alone


def _head() -> str | None:
    """This checkout's full HEAD, None when the tests do not run from a git checkout."""
    done = subprocess.run(["git", "--no-optional-locks", "-C", str(ROOT), "rev-parse", "--verify", "HEAD"],
                          capture_output=True, text=True, timeout=30)
    head = done.stdout.strip()
    return head if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", head) else None


def _param(script: Path) -> Any:
    return pytest.param(script, id=script.stem)


def test_the_scripts_are_found() -> None:
    """Discovery itself: the known scripts are there (a broken glob must not pass with nothing to run)."""
    assert {"routing", "gateway_overhead", "up_first_image"} <= {p.stem for p in SCRIPTS}


@pytest.mark.parametrize("script", [_param(p) for p in SCRIPTS])
def test_smoke_run_writes_its_results(script: Path, tmp_path: Path) -> None:
    assert script.stem in FIELDS, f"{script.name}: list the result fields its JSON must carry in FIELDS"
    out = tmp_path / f"{script.stem}.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, str(script), "--smoke", "--out", str(out)], cwd=tmp_path, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT_S)
    output = (done.stdout + done.stderr)[-4000:]
    assert done.returncode == 0, f"{script.name} --smoke exited {done.returncode}:\n{output}"
    assert out.is_file(), f"{script.name} --smoke wrote no {out.name}:\n{output}"
    report = json.loads(out.read_text())
    missing = [f for f in (*PROVENANCE, *FIELDS[script.stem]) if f not in report]
    assert not missing, f"{script.name}: results JSON lacks {missing}; it has {sorted(report)}"
    head = _head()
    assert report["commit"] == head, f"{script.name}: commit {report['commit']!r}, the checkout is at {head!r}"
    assert isinstance(report["clean"], bool) if head else report["clean"] is None
    assert "--smoke" in report["command"]
    CHECKS.get(script.stem, lambda _: None)(report)
