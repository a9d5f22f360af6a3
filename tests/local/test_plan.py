"""`sdxlpool up`'s plan, pure: replicas -> worker processes with ports, labels, devices and flags."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sdxlpool.api.spec import load_pool
from sdxlpool.local.plan import TINY_DEFAULT_SIDE, Model, cap_replicas, plan_pool

EXAMPLE = Path(__file__).parents[2] / "examples" / "local-pool.yaml"
REAL = Model(Path("/models/base"), Path("/models/refiner"), tiny=False, source="/models/base")
TINY = Model(Path("/cache/tiny/base"), Path("/cache/tiny/refiner"), tiny=True, source="tiny")


def spec(**changes):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["spec"].update(changes)
    return load_pool(data).spec


def plan(model=REAL, **options):
    options = {"device": "cpu", "cpu_count": 6, "backends_file": Path("/run/backends.yaml"), **options}
    return plan_pool(options.pop("spec", spec()), model, **options)


def flag(argv: tuple[str, ...], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_the_example_pool_is_one_worker_per_gpu_model_with_its_labels() -> None:
    result = plan(port=9000, worker_port=7000)
    assert [(w.name, w.gpu_model, w.provider, w.location, w.port, w.entry.price_per_hour) for w in result.workers] == [
        ("a100-1", "A100", "Foundry Staking", "US-East", 7000, 1.10),
        ("rtx-4090-1", "RTX-4090", "Europlots", "EU-Central", 7001, 0.45),
        ("rtx-3090-1", "RTX-3090", "Akash Community", "US-West", 7002, 0.25),
    ]
    a100 = result.workers[0]
    assert flag(a100.argv, "--model") == "/models/base" and flag(a100.argv, "--refiner") == "/models/refiner"
    assert flag(a100.argv, "--gpu-model") == "A100" and flag(a100.argv, "--worker-name") == "a100-1"
    assert flag(a100.argv, "--max-steps") == "60" and flag(a100.argv, "--default-sampler") == "DPM++ SDE Karras"
    assert flag(a100.argv, "--default-width") == "1024"  # real weights keep the spec's size
    assert a100.threads == 2 and a100.env == {"OMP_NUM_THREADS": "2"}  # 6 cores over 3 workers
    assert result.backends_file_entries()["backends"][0] == {
        "name": "a100-1", "url": "http://127.0.0.1:7000", "gpu": "A100", "provider": "Foundry Staking",
        "location": "US-East", "type": "sdxlpool", "pricePerHour": 1.10}
    gateway = result.gateway
    assert flag(gateway.argv, "--backends") == "/run/backends.yaml" and flag(gateway.argv, "--port") == "9000"
    assert flag(gateway.argv, "--max-steps") == "60" and gateway.url == "http://127.0.0.1:9000"


def test_replicas_names_and_consecutive_ports() -> None:
    pool = spec(gpus=[{"model": "A100", "replicas": 2}, {"model": "RTX 3090", "replicas": 3}])
    result = plan(spec=pool, worker_port=7861)
    assert [w.name for w in result.workers] == ["a100-1", "a100-2", "rtx-3090-1", "rtx-3090-2", "rtx-3090-3"]
    assert [w.port for w in result.workers] == list(range(7861, 7866))
    assert {(w.provider, w.location) for w in result.workers} == {("local", "this machine")}
    assert "pricePerHour" not in result.backends_file_entries()["backends"][0]


def test_tiny_model_on_cpu_asks_for_small_images_and_says_so() -> None:
    result = plan(model=TINY)
    side = str(TINY_DEFAULT_SIDE)
    assert flag(result.workers[0].argv, "--default-width") == side
    assert flag(result.gateway.argv, "--default-width") == side
    assert result.notes[0] == "model: tiny"
    assert any("tiny model on the CPU" in note and "1024x1024" in note for note in result.notes)
    on_gpu = plan(model=TINY, device="cuda", cuda_devices=1)
    assert flag(on_gpu.workers[0].argv, "--default-width") == "1024"


def test_workers_share_gpus_round_robin_and_it_is_said() -> None:
    pool = spec(gpus=[{"model": "A100", "replicas": 3}, {"model": "L4", "replicas": 2}])
    result = plan(spec=pool, device="cuda", cuda_devices=2)
    assert [w.device for w in result.workers] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert all(w.threads is None and w.env == {} for w in result.workers)
    assert any("5 workers on 2 GPU(s)" in note for note in result.notes)


@pytest.mark.parametrize(
    ("replicas", "limit", "expected"),
    [([2, 4], None, [2, 4]), ([2, 4], 6, [2, 4]), ([2, 4], 3, [2, 1]), ([2, 4], 1, [1, 0]),
     ([0, 3, 1], 2, [0, 1, 1]), ([5], 2, [2])],
)
def test_max_workers_keeps_every_model_while_it_can(replicas, limit, expected) -> None:
    assert cap_replicas(replicas, limit) == expected


def test_max_workers_is_noted() -> None:
    result = plan(max_workers=2)
    assert [w.name for w in result.workers] == ["a100-1", "rtx-4090-1"]
    assert any("--max-workers 2: running 2 of the spec's 3 workers" in note for note in result.notes)


def test_fine_tune_folders_become_the_workers_flags() -> None:
    model = Model(Path("/models/base"), None, tiny=False, source="/models/base",
                  fine_tunes={"loras": Path("/cache/fine-tunes/loras-1"), "vaes": Path("/vae")},
                  fine_tune_notes=("spec.loras[1]: x is not on this machine; left out",))
    result = plan(model=model)
    for worker in result.workers:
        assert flag(worker.argv, "--lora-dir") == "/cache/fine-tunes/loras-1" and flag(worker.argv, "--vae-dir") == "/vae"
        assert "--embeddings-dir" not in worker.argv
    assert "spec.loras[1]: x is not on this machine; left out" in result.notes
    assert "--lora-dir" not in plan().workers[0].argv


@pytest.mark.parametrize("sim", [False, True], ids=["workers", "sim-workers"])
def test_a_fast_mode_entry_runs_its_workers_in_that_mode_and_only_those(sim: bool) -> None:
    pool = spec(gpus=[{"model": "A100", "replicas": 1, "fastMode": "deepcache"}, {"model": "RTX 3090", "replicas": 1}])
    result = plan(spec=pool, sim=sim)
    argv = {w.name: w.argv for w in result.workers}
    command = argv["a100-1"][argv["a100-1"].index("-m") + 2]
    assert command == ("sim-worker" if sim else "worker")
    assert flag(argv["a100-1"], "--fast-mode") == "deepcache"
    assert "--fast-mode" not in argv["rtx-3090-1"]  # off: nothing passed, the exact default
    from sdxlpool.cli import _build_parser

    parsed = _build_parser().parse_args(argv["a100-1"][argv["a100-1"].index("-m") + 2:])  # the real CLI takes it
    assert parsed.command == command and parsed.fast_mode == "deepcache"
