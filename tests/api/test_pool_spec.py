"""SDXLPool spec: defaults, the documented example pool, and one field-named message per mistake."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sdxlpool.api import labels as lbl
from sdxlpool.api.spec import (
    API_VERSION,
    PoolSpecError,
    SDXLPool,
    SDXLPoolSpec,
    load_pool,
    load_spec,
    pool_from_yaml,
)
from sdxlpool.errors import ConfigError

EXAMPLE_POOL = """
apiVersion: sdxlpool.dev/v1alpha1
kind: SDXLPool
metadata: {name: demo, namespace: sdxl}
spec:
  image: ghcr.io/example/sdxlpool-worker:0.1.0
  imagePullPolicy: Always
  model:
    huggingFace:
      repo: stabilityai/stable-diffusion-xl-base-1.0
      refinerRepo: stabilityai/stable-diffusion-xl-refiner-1.0
      revision: main
      tokenSecret: {name: hf-token, key: token}
  placement: {labelScheme: nvidia}
  gpus:
    - model: A100
      replicas: 2
      gpusPerReplica: 1
      provider: {name: Foundry Staking, location: US-East}
      pricePerHour: 1.10
    - model: RTX-3090
      replicas: 4
  defaults: {sampler: DPM++ SDE Karras, steps: 25, cfgScale: 7, refinerSwitchAt: 0.8, width: 1024, height: 1024}
  limits: {maxSteps: 60, maxPixels: 2097152, maxBatch: 4, maxPromptChars: 400}
  gateway: {enabled: true, replicas: 2}
"""


def minimal() -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "SDXLPool",
        "metadata": {"name": "mini"},
        "spec": {
            "image": "worker:1",
            "model": {"volume": {"claimName": "sdxl-weights", "basePath": "base"}},
            "gpus": [{"model": "A100"}],
        },
    }


def with_spec(**changes: Any) -> dict[str, Any]:
    data = minimal()
    data["spec"].update(changes)
    return data


def problems_of(data: Any) -> tuple[str, ...]:
    with pytest.raises(PoolSpecError) as caught:
        load_pool(data)
    return caught.value.problems


def test_minimal_pool_gets_defaults() -> None:
    pool = load_pool(minimal())
    spec = pool.spec
    assert pool.api_version == "sdxlpool.dev/v1alpha1" and pool.kind == "SDXLPool"
    assert spec.image_pull_policy == "IfNotPresent"
    assert spec.placement.label_scheme == "nvidia" and spec.placement.label_key_template is None
    assert spec.model.volume is not None and spec.model.volume.refiner_path is None
    entry = spec.gpus[0]
    assert (entry.replicas, entry.gpus_per_replica, entry.provider, entry.price_per_hour) == (
        1,
        1,
        None,
        None,
    )
    assert entry.node_selector == {} and entry.slug == "a100"
    defaults = spec.defaults
    assert (defaults.sampler, defaults.steps, defaults.cfg_scale) == ("DPM++ SDE Karras", 25, 7.0)
    assert (defaults.refiner_switch_at, defaults.width, defaults.height) == (0.8, 1024, 1024)
    limits = spec.limits
    assert (limits.max_steps, limits.max_pixels, limits.max_batch, limits.max_prompt_chars) == (
        60,
        2097152,
        4,
        400,
    )
    assert (spec.gateway.enabled, spec.gateway.replicas) == (True, 2)


def test_minimal_without_api_version_and_kind() -> None:
    data = minimal()
    del data["apiVersion"], data["kind"]
    assert load_pool(data).kind == "SDXLPool"


def test_design_example() -> None:
    pool = pool_from_yaml(EXAMPLE_POOL)
    assert pool.metadata == {"name": "demo", "namespace": "sdxl"}
    spec = pool.spec
    assert spec.image_pull_policy == "Always"
    hf = spec.model.hugging_face
    assert hf is not None and hf.token_secret is not None
    assert (hf.repo, hf.refiner_repo, hf.revision) == (
        "stabilityai/stable-diffusion-xl-base-1.0",
        "stabilityai/stable-diffusion-xl-refiner-1.0",
        "main",
    )
    assert (hf.token_secret.name, hf.token_secret.key) == ("hf-token", "token")
    a100, rtx = spec.gpus
    assert (a100.slug, a100.replicas, a100.price_per_hour) == ("a100", 2, 1.10)
    assert a100.provider is not None and (a100.provider.name, a100.provider.location) == (
        "Foundry Staking",
        "US-East",
    )
    assert (rtx.model, rtx.slug, rtx.replicas) == ("RTX-3090", "rtx-3090", 4)
    assert spec.defaults.cfg_scale == 7.0


def test_dump_round_trips_with_camel_case() -> None:
    pool = pool_from_yaml(EXAMPLE_POOL)
    dumped = pool.model_dump(by_alias=True, exclude_none=True)
    assert dumped["spec"]["gpus"][0]["gpusPerReplica"] == 1
    assert dumped["spec"]["model"]["huggingFace"]["tokenSecret"] == {"name": "hf-token", "key": "token"}
    assert load_pool(dumped) == pool


def test_snake_case_names_accepted() -> None:
    data = minimal()
    data["spec"]["image_pull_policy"] = "Never"
    data["spec"]["gpus"] = [{"model": "L40S", "gpus_per_replica": 2, "price_per_hour": 0.9}]
    spec = load_pool(data).spec
    assert spec.image_pull_policy == "Never" and spec.gpus[0].gpus_per_replica == 2


def test_status_is_accepted() -> None:
    data = minimal()
    data["status"] = {"observedGeneration": 3, "conditions": []}
    assert load_pool(data).status == {"observedGeneration": 3, "conditions": []}


def test_custom_placement() -> None:
    spec = load_pool(
        with_spec(placement={"labelScheme": "custom", "labelKeyTemplate": "example.com/gpu.{model}"})
    )
    assert spec.spec.placement.label_key_template == "example.com/gpu.{model}"


def test_fine_tunes_from_the_hub_and_volumes() -> None:
    spec = load_pool(with_spec(
        loras=[{"huggingFace": {"repo": "nerijs/pixel-art-xl", "file": "./pixel-art-xl.safetensors",
                                "revision": "v1", "tokenSecret": {"name": "hf"}}},
               {"volume": {"path": "/loras/ink.safetensors"}},
               {"volume": {"claimName": "team", "path": "."}}],
        vaes=[{"hugging_face": {"repo": "madebyollin/sdxl-vae-fp16-fix", "file": "sdxl.vae.safetensors"}}],
    )).spec
    hub = spec.loras[0].hugging_face
    assert hub is not None and (hub.repo, hub.file, hub.revision) == ("nerijs/pixel-art-xl", "pixel-art-xl.safetensors", "v1")
    assert hub.token_secret is not None and hub.token_secret.key == "token"
    assert [s.volume.path for s in spec.loras[1:] if s.volume] == ["/loras/ink.safetensors", "."]
    assert spec.loras[1].volume is not None and spec.loras[1].volume.claim_name is None  # the model's PVC
    assert spec.embeddings == [] and len(spec.vaes) == 1
    assert load_pool(minimal()).spec.loras == []  # optional: a pool without fine-tunes is as before


def test_load_spec_prefixes_paths() -> None:
    spec = load_spec(minimal()["spec"])
    assert isinstance(spec, SDXLPoolSpec)
    with pytest.raises(PoolSpecError) as caught:
        load_spec({**minimal()["spec"], "gpus": [{"model": "banana"}]})
    assert caught.value.problems[0].startswith("spec.gpus[0].model: invalid GPU name 'banana'")


def _gpu(**fields: Any) -> dict[str, Any]:
    return with_spec(gpus=[{"model": "A100", **fields}])


INVALID_CASES = [
    pytest.param(
        with_spec(gpus=[{"model": "A100"}, {"model": "banana"}]),
        "spec.gpus[1].model: invalid GPU name 'banana'",
        id="gpu-model-unknown",
    ),
    pytest.param(
        with_spec(gpus=[{"model": ""}]), "spec.gpus[0].model: invalid GPU name ''", id="gpu-model-empty"
    ),
    pytest.param(
        with_spec(gpus=[{"model": "MI300X"}]), "spec.gpus[0].model: invalid GPU name 'MI300X'", id="gpu-amd"
    ),
    pytest.param(
        with_spec(gpus=[{"replicas": 1}]),
        "spec.gpus[0].model: required field is missing",
        id="gpu-model-missing",
    ),
    pytest.param(with_spec(gpus=[]), "spec.gpus: List should have at least 1 item", id="gpus-empty"),
    pytest.param(
        _gpu(replicas=-1),
        "spec.gpus[0].replicas: Input should be greater than or equal to 0 (got -1)",
        id="replicas-negative",
    ),
    pytest.param(
        _gpu(gpusPerReplica=0),
        "spec.gpus[0].gpusPerReplica: Input should be greater than or equal to 1",
        id="gpus-per-replica-zero",
    ),
    pytest.param(
        _gpu(gpus_per_replica=0), "spec.gpus[0].gpusPerReplica: Input should be greater", id="snake-path"
    ),
    pytest.param(
        _gpu(pricePerHour=-0.5),
        "spec.gpus[0].pricePerHour: Input should be greater than 0",
        id="price-negative",
    ),
    pytest.param(
        _gpu(pricePerHour=0),
        "spec.gpus[0].pricePerHour: Input should be greater than 0",
        id="price-zero",
    ),
    pytest.param(
        _gpu(provider={"location": "EU"}),
        "spec.gpus[0].provider.name: required field is missing",
        id="provider-name-missing",
    ),
    pytest.param(
        _gpu(nodeSelector={"zone": 3}),
        "spec.gpus[0].nodeSelector.zone: Input should be a valid string",
        id="node-selector-value",
    ),
    pytest.param(_gpu(gpuCount=2), "spec.gpus[0].gpuCount: unknown field", id="gpu-unknown-field"),
    pytest.param(
        with_spec(gpus=[{"model": "A100"}, {"model": "RTX-3090"}, {"model": "NVIDIA-A100"}]),
        "spec.gpus: gpus[0] (A100) and gpus[2] (NVIDIA-A100) are both GPU model a100",
        id="gpu-duplicate",
    ),
    pytest.param(
        with_spec(image=""), "spec.image: String should have at least 1 character", id="image-empty"
    ),
    pytest.param(
        {"spec": {"model": {"volume": {"claimName": "c", "basePath": "b"}}, "gpus": [{"model": "A100"}]}},
        "spec.image: required field is missing",
        id="image-missing",
    ),
    pytest.param(
        with_spec(imagePullPolicy="Sometimes"),
        "spec.imagePullPolicy: Input should be 'Always', 'IfNotPresent' or 'Never' (got 'Sometimes')",
        id="pull-policy",
    ),
    pytest.param(
        with_spec(model={}),
        "spec.model: set exactly one of volume or huggingFace (got neither)",
        id="model-neither",
    ),
    pytest.param(
        with_spec(model={"volume": {"claimName": "c", "basePath": "b"}, "huggingFace": {"repo": "a/b"}}),
        "spec.model: set exactly one of volume or huggingFace (got both)",
        id="model-both",
    ),
    pytest.param(
        with_spec(model={"volume": {"basePath": "b"}}),
        "spec.model.volume.claimName: required field is missing",
        id="volume-claim-missing",
    ),
    pytest.param(
        with_spec(model={"huggingFace": {"repo": "not a repo"}}),
        "spec.model.huggingFace.repo: String should match",
        id="hf-repo-pattern",
    ),
    pytest.param(
        with_spec(model={"huggingFace": {"repo": "a/b", "tokenSecret": {"key": "k"}}}),
        "spec.model.huggingFace.tokenSecret.name: required field is missing",
        id="token-secret-name",
    ),
    pytest.param(
        with_spec(model={"hf": {"repo": "a/b"}}), "spec.model.hf: unknown field", id="model-unknown-key"
    ),
    pytest.param(
        with_spec(placement={"labelScheme": "gke"}),
        "spec.placement.labelScheme: Input should be 'nvidia', 'akash' or 'custom' (got 'gke')",
        id="label-scheme",
    ),
    pytest.param(
        with_spec(placement={"labelScheme": "custom"}),
        "spec.placement: labelScheme custom needs labelKeyTemplate",
        id="custom-without-template",
    ),
    pytest.param(
        with_spec(placement={"labelScheme": "custom", "labelKeyTemplate": "example.com/gpu"}),
        "spec.placement.labelKeyTemplate: String should match pattern",
        id="template-without-placeholder",
    ),
    pytest.param(
        with_spec(placement={"labelScheme": "akash", "labelKeyTemplate": "x/{model}"}),
        "spec.placement: labelKeyTemplate is only used with labelScheme custom",
        id="template-not-custom",
    ),
    pytest.param(
        with_spec(defaults={"steps": 0}),
        "spec.defaults.steps: Input should be greater than or equal to 1",
        id="steps-zero",
    ),
    pytest.param(
        with_spec(defaults={"cfgScale": 0.5}),
        "spec.defaults.cfgScale: Input should be greater than or equal to 1",
        id="cfg-low",
    ),
    pytest.param(
        with_spec(defaults={"refinerSwitchAt": 1.5}),
        "spec.defaults.refinerSwitchAt: Input should be less than or equal to 1 (got 1.5)",
        id="refiner-switch",
    ),
    pytest.param(
        with_spec(defaults={"width": 1020}),
        "spec.defaults.width: Input should be a multiple of 8 (got 1020)",
        id="width-multiple",
    ),
    pytest.param(
        with_spec(defaults={"height": 32}),
        "spec.defaults.height: Input should be greater than or equal to 64",
        id="height-small",
    ),
    pytest.param(
        with_spec(defaults={"steps": 80}),
        "spec: defaults.steps (80) exceeds limits.maxSteps (60)",
        id="defaults-over-limit-steps",
    ),
    pytest.param(
        with_spec(defaults={"width": 2048, "height": 2048}),
        "spec: defaults.width x defaults.height (2048x2048 = 4194304) exceeds limits.maxPixels (2097152)",
        id="defaults-over-limit-pixels",
    ),
    pytest.param(
        with_spec(limits={"maxSteps": 0}),
        "spec.limits.maxSteps: Input should be greater than or equal to 1",
        id="max-steps",
    ),
    pytest.param(
        with_spec(limits={"maxPixels": 0}), "spec.limits.maxPixels: Input should be greater", id="max-pixels"
    ),
    pytest.param(
        with_spec(limits={"maxBatch": 0}), "spec.limits.maxBatch: Input should be greater", id="max-batch"
    ),
    pytest.param(
        with_spec(limits={"maxPromptChars": 0}),
        "spec.limits.maxPromptChars: Input should be greater",
        id="max-prompt-chars",
    ),
    pytest.param(
        with_spec(gateway={"replicas": -1}),
        "spec.gateway.replicas: Input should be greater than or equal to 0",
        id="gateway-replicas",
    ),
    pytest.param(
        with_spec(gateway={"enabled": "maybe"}),
        "spec.gateway.enabled: Input should be a valid boolean",
        id="gateway-enabled",
    ),
    pytest.param(with_spec(replicas=3), "spec.replicas: unknown field", id="spec-unknown-field"),
    pytest.param(
        {**minimal(), "apiVersion": "v1"},
        "apiVersion: Input should be 'sdxlpool.dev/v1alpha1' (got 'v1')",
        id="api-version",
    ),
    pytest.param({**minimal(), "kind": "Pool"}, "kind: Input should be 'SDXLPool' (got 'Pool')", id="kind"),
    pytest.param({"metadata": {}}, "spec: required field is missing", id="spec-missing"),
    # --- fields added for the operator (issue 3) ---
    pytest.param(
        with_spec(imagePullSecrets=[{}]),
        "spec.imagePullSecrets[0].name: required field is missing",
        id="pull-secret-name",
    ),
    pytest.param(
        _gpu(resources={"requests": {"cpu": "lots"}}),
        "spec.gpus[0].resources.requests.cpu: String should match pattern",
        id="quantity-pattern",
    ),
    pytest.param(
        _gpu(resources={"limits": {"memory": "-1Gi"}}),
        "spec.gpus[0].resources.limits.memory: String should match pattern",
        id="quantity-negative",
    ),
    pytest.param(
        _gpu(resources={"requests": {lbl.GPU_RESOURCE: 1}}),
        f"spec.gpus[0].resources.requests.{lbl.GPU_RESOURCE}: unknown field",
        id="resources-gpu-key",
    ),
    pytest.param(
        _gpu(nodeSelector={"bad key!": "x"}),
        "spec.gpus[0].nodeSelector: 'bad key!' is not a valid label key",
        id="node-selector-key",
    ),
    pytest.param(
        _gpu(nodeSelector={"zone": "not valid!"}),
        "spec.gpus[0].nodeSelector.zone: String should match pattern",
        id="node-selector-value-pattern",
    ),
    pytest.param(
        _gpu(tolerations=[{"key": "a", "operator": "Exists", "value": "b"}]),
        "spec.gpus[0].tolerations[0]: operator Exists takes no value",
        id="toleration-exists-value",
    ),
    pytest.param(
        _gpu(tolerations=[{"value": "b"}]),
        "spec.gpus[0].tolerations[0]: a toleration without a key needs operator Exists",
        id="toleration-no-key",
    ),
    pytest.param(
        _gpu(tolerations=[{"key": "a", "effect": "NoSchedule", "tolerationSeconds": 5}]),
        "spec.gpus[0].tolerations[0]: tolerationSeconds needs effect NoExecute",
        id="toleration-seconds",
    ),
    pytest.param(
        _gpu(tolerations=[{"key": "a", "effect": "Never"}]),
        "spec.gpus[0].tolerations[0].effect: Input should be 'NoSchedule', 'PreferNoSchedule' or 'NoExecute'",
        id="toleration-effect",
    ),
    pytest.param(
        with_spec(model={"huggingFace": {"repo": "a/b", "cache": {"claimName": "c", "emptyDir": {}}}}),
        "spec.model.huggingFace.cache: set claimName or emptyDir, not both",
        id="cache-both",
    ),
    pytest.param(
        with_spec(model={"huggingFace": {"repo": "a/b", "cache": {"emptyDir": {"sizeLimit": "big"}}}}),
        "spec.model.huggingFace.cache.emptyDir.sizeLimit: String should match pattern",
        id="cache-size",
    ),
    pytest.param(
        with_spec(placement={"labelScheme": "akash"}, gpus=[{"model": "A100"}, {"model": "A100-40GB-MIG-1g.5gb"}]),
        "spec: gpus[1].model (A100-40GB-MIG-1g.5gb): labelScheme akash cannot place MIG slices",
        id="akash-mig",
    ),
    pytest.param(
        with_spec(placement={"labelScheme": "custom", "labelKeyTemplate": "bad key/{model}"}),
        "spec: placement.labelKeyTemplate gives 'bad key/a100' for gpus[0] (A100), which is not a valid label key",
        id="custom-template-invalid-key",
    ),
    pytest.param(
        with_spec(gateway={"serviceType": "ExternalName"}),
        "spec.gateway.serviceType: Input should be 'ClusterIP', 'NodePort' or 'LoadBalancer'",
        id="gateway-service-type",
    ),
    pytest.param(
        with_spec(gateway={"rateLimit": {"burst": 3}}),
        "spec.gateway.rateLimit.requestsPerMinute: required field is missing",
        id="rate-limit-missing",
    ),
    pytest.param(
        with_spec(gateway={"rateLimit": {"requestsPerMinute": 0}}),
        "spec.gateway.rateLimit.requestsPerMinute: Input should be greater than or equal to 1",
        id="rate-limit-zero",
    ),
    pytest.param(
        with_spec(gateway={"image": ""}), "spec.gateway.image: String should have at least 1 character", id="gw-image"
    ),
    pytest.param(
        with_spec(loras=[{"huggingFace": {"repo": "a/b"}}]),
        "spec.loras[0].huggingFace.file: required field is missing",
        id="lora-hf-file-missing",
    ),
    pytest.param(
        with_spec(loras=[{"huggingFace": {"repo": "a b", "file": "x.safetensors"}}]),
        "spec.loras[0].huggingFace.repo: String should match pattern",
        id="lora-hf-repo",
    ),
    pytest.param(
        with_spec(loras=[{"huggingFace": {"repo": "a/b", "file": "../x.safetensors"}}]),
        "spec.loras[0].huggingFace.file: must be a path inside the repo, got '../x.safetensors'",
        id="lora-hf-file-outside",
    ),
    pytest.param(
        with_spec(embeddings=[{"huggingFace": {"repo": "a/b", "file": "/x.pt"}}]),
        "spec.embeddings[0].huggingFace.file: must be a path inside the repo, got '/x.pt'",
        id="embedding-hf-file-absolute",
    ),
    pytest.param(
        with_spec(loras=[{"volume": {"path": "ok.safetensors"}}, {"volume": {"path": "a/../../up"}}]),
        "spec.loras[1].volume.path: must be a path inside the volume, got 'a/../../up'",
        id="lora-volume-outside",
    ),
    pytest.param(
        with_spec(vaes=[{}]), "spec.vaes[0]: set exactly one of volume or huggingFace (got neither)", id="vae-neither"
    ),
    pytest.param(
        with_spec(loras=[{"volume": {"path": "x"}, "huggingFace": {"repo": "a/b", "file": "x"}}]),
        "spec.loras[0]: set exactly one of volume or huggingFace (got both)",
        id="lora-both",
    ),
    pytest.param(
        with_spec(loras=[{"url": "https://example.com/x.safetensors"}]),
        "spec.loras[0].url: unknown field",
        id="lora-unknown-source",
    ),
    pytest.param(
        with_spec(model={"huggingFace": {"repo": "a/b"}}, loras=[{"volume": {"path": "x.safetensors"}}]),
        "spec: loras[0].volume.claimName: required when spec.model is not a volume",
        id="lora-volume-without-claim",
    ),
    pytest.param(
        with_spec(loras=[{"volume": {"path": "l/x.safetensors"}},
                         {"volume": {"claimName": "sdxl-weights", "path": "./l/x.safetensors"}}]),
        "spec: loras[1] is the same file as loras[0]",
        id="lora-twice",
    ),
    pytest.param(
        with_spec(loras=[{"volume": {"path": "loras/ink.safetensors"}}, {"volume": {"path": "/loras"}}]),
        "spec: loras[1] (/loras) and loras[0] overlap on one volume: list the folder or its files, not both",
        id="lora-volume-overlap",
    ),
    pytest.param(
        with_spec(styles={"volume": {"path": "/"}}),
        "spec: styles.volume.path: must name the file, not the whole volume",
        id="styles-whole-volume",
    ),
    pytest.param(
        with_spec(styles=[{"volume": {"path": "styles.csv"}}]),
        "spec.styles: Input should be a valid dictionary or instance of FineTuneSource",
        id="styles-is-one-file",
    ),
    pytest.param(["not", "a", "mapping"], "pool: expected a mapping, got list", id="not-a-mapping"),
]


@pytest.mark.parametrize(("data", "expected"), INVALID_CASES)
def test_invalid(data: Any, expected: str) -> None:
    problems = problems_of(copy.deepcopy(data))
    assert any(problem.startswith(expected) for problem in problems), problems


def test_every_problem_is_listed_in_one_error() -> None:
    data = with_spec(
        imagePullPolicy="Sometimes",
        gpus=[{"model": "A100", "replicas": -1}, {"model": "banana"}],
        limits={"maxBatch": 0},
    )
    with pytest.raises(PoolSpecError) as caught:
        load_pool(data)
    error = caught.value
    assert [problem.split(":")[0] for problem in error.problems] == [
        "spec.imagePullPolicy",
        "spec.gpus[0].replicas",
        "spec.gpus[1].model",
        "spec.limits.maxBatch",
    ]
    message = str(error)
    assert message.startswith("invalid SDXLPool (4 problems):")
    assert all(problem in message for problem in error.problems)


def test_single_problem_is_one_line() -> None:
    with pytest.raises(PoolSpecError) as caught:
        load_pool(with_spec(image=""))
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("invalid SDXLPool: spec.image:")


def test_error_types() -> None:
    with pytest.raises(PoolSpecError) as caught:
        load_pool(with_spec(image=""))
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, ConfigError)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("spec: [unclosed", "YAML: ", id="yaml-syntax"),
        pytest.param("- a\n- b\n", "pool: expected a mapping, got list", id="yaml-list"),
        pytest.param("", "pool: expected a mapping, got NoneType", id="yaml-empty"),
    ],
)
def test_bad_yaml(text: str, expected: str) -> None:
    with pytest.raises(PoolSpecError) as caught:
        pool_from_yaml(text)
    assert caught.value.problems[0].startswith(expected)


def test_operator_fields_have_defaults() -> None:
    spec = load_pool(minimal()).spec
    entry = spec.gpus[0]
    assert spec.image_pull_secrets == [] and entry.tolerations == []
    assert entry.resources.requests.cpu is None and entry.resources.limits.memory is None
    gateway = spec.gateway
    assert (gateway.image, gateway.service_type, gateway.rate_limit) == (None, "ClusterIP", None)
    hf = load_pool(with_spec(model={"huggingFace": {"repo": "a/b"}})).spec.model.hugging_face
    assert hf is not None and (hf.cache.claim_name, hf.cache.empty_dir) == (None, None)


def test_operator_fields() -> None:
    data = with_spec(
        imagePullSecrets=[{"name": "regcred"}],
        model={"huggingFace": {"repo": "a/b", "cache": {"emptyDir": {"sizeLimit": 40e9}}}},
        placement={"labelScheme": "custom", "labelKeyTemplate": "example.com/gpu-{model}"},
        gpus=[
            {
                "model": "A100-40GB-MIG-1g.10gb+me",
                "resources": {"requests": {"cpu": 4, "memory": "16Gi", "ephemeral-storage": "10Gi"}, "limits": {"cpu": 0.5}},
                "nodeSelector": {"example.com/zone": "a"},
                "tolerations": [{"operator": "Exists"}, {"key": "k", "value": "v", "effect": "NoExecute", "tolerationSeconds": 60}],
            }
        ],
        gateway={"image": "gw:1", "serviceType": "LoadBalancer", "rateLimit": {"requestsPerMinute": 60}},
    )
    spec = load_pool(data).spec
    assert spec.image_pull_secrets[0].name == "regcred"
    entry = spec.gpus[0]
    # YAML numbers become quantity strings; the dash-spelled key is accepted under its Kubernetes name
    assert (entry.resources.requests.cpu, entry.resources.limits.cpu) == ("4", "0.5")
    assert entry.resources.requests.ephemeral_storage == "10Gi"
    assert entry.tolerations[0].key is None and entry.tolerations[1].toleration_seconds == 60
    assert spec.model.hugging_face is not None and spec.model.hugging_face.cache.empty_dir is not None
    assert spec.model.hugging_face.cache.empty_dir.size_limit == "40000000000.0"
    assert spec.placement.label_key(entry.slug) == "example.com/gpu-a100-40gb-mig-1g.10gb_me"
    assert (spec.gateway.rate_limit is not None and spec.gateway.rate_limit.burst) == 10
    dumped = load_pool(data).model_dump(by_alias=True, exclude_none=True)
    assert dumped["spec"]["gpus"][0]["resources"]["requests"]["ephemeral-storage"] == "10Gi"
    assert load_pool(dumped) == load_pool(data)


@pytest.mark.parametrize(
    ("key", "valid"),
    [("zone", True), ("example.com/zone", True), ("a/b/c", False), ("Example.com/x", False), ("x" * 64, False),
     ("example.com/", False), ("bad key", False), (lbl.NVIDIA_PRODUCT, True)],
)
def test_is_label_key(key: str, valid: bool) -> None:
    from sdxlpool.api.spec import is_label_key

    assert is_label_key(key) is valid


def test_json_schema_has_camel_case_and_constraints() -> None:
    schema = SDXLPool.model_json_schema(by_alias=True)
    defs = schema["$defs"]
    entry = defs["GpuEntry"]["properties"]
    assert (entry["gpusPerReplica"]["type"], entry["gpusPerReplica"]["minimum"]) == ("integer", 1)
    assert defs["SDXLPoolSpec"]["properties"]["imagePullPolicy"]["enum"] == [
        "Always",
        "IfNotPresent",
        "Never",
    ]
    assert defs["DefaultsSpec"]["properties"]["width"]["multipleOf"] == 8
    assert defs["DefaultsSpec"]["properties"]["refinerSwitchAt"]["maximum"] == 1.0
    assert defs["SDXLPoolSpec"]["properties"]["gpus"]["minItems"] == 1
    assert defs["SDXLPoolSpec"]["required"] == ["image", "model", "gpus"]
    assert all(spec.get("additionalProperties") is False for spec in defs.values())
