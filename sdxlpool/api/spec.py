"""The SDXLPool custom resource (``sdxlpool.dev/v1alpha1``) as pydantic models.

Contract: pure data, no I/O. These models are the one definition of a pool spec: the operator
validates what kopf hands it with :func:`load_spec`, ``sdxlpool render``/``up`` read files
through :func:`pool_from_yaml`, and the CRD's openAPIV3Schema is generated from
``SDXLPool.model_json_schema(by_alias=True)``. So constraints live in ``Field(...)`` (``ge``,
``le``, ``multiple_of``, ``pattern``, ``Literal``) wherever a schema can say them; validators
only check what spans several fields (one model source, no duplicate GPU entries, defaults
within limits) or needs code (GPU names go through :func:`sdxlpool.api.gpu.parse_gpu_name`).

YAML keys are camelCase as in Kubernetes (``gpusPerReplica``); Python attributes are
snake_case (``gpus_per_replica``); either spelling is accepted on input, unknown keys are
rejected rather than ignored, and every field a minimal pool may leave out has a default::

    spec:
      image: ghcr.io/example/sdxlpool-worker:0.1
      model: {huggingFace: {repo: stabilityai/stable-diffusion-xl-base-1.0}}
      gpus: [{model: A100}]

Errors (see ``sdxlpool.errors``)::

    SDXLPoolError
    └── ConfigError
        └── PoolSpecError  (also a ValueError) every problem with one pool, one per line:
                           "spec.gpus[1].model: invalid GPU name 'banana': ..."
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from sdxlpool.api import cel
from sdxlpool.api.fast_modes import FastMode
from sdxlpool.api.gpu import AKASH_GPU_LABEL_PREFIX, GpuName, parse_gpu_name
from sdxlpool.api.labels import GPU_RESOURCE, NVIDIA_PRODUCT
from sdxlpool.errors import ConfigError

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "ApiKeysSecretRef",
    "CompileCache",
    "DefaultsSpec",
    "EmptyDirCache",
    "FINE_TUNE_FIELDS",
    "FineTuneSource",
    "GatewaySpec",
    "GpuAutoscaling",
    "GpuEntry",
    "GpuProvider",
    "HuggingFaceCache",
    "HuggingFaceFileSource",
    "HuggingFaceModelSource",
    "LatencyTarget",
    "LimitsSpec",
    "LocalObjectReference",
    "ModelSource",
    "NetworkPolicySpec",
    "Placement",
    "PoolAutoscaling",
    "PoolSpecError",
    "Quantity",
    "RateLimitSpec",
    "ResourceAmounts",
    "Resources",
    "SDXLPool",
    "SDXLPoolSpec",
    "SecretKeyRef",
    "Toleration",
    "VolumeFileSource",
    "VolumeModelSource",
    "is_label_key",
    "is_label_value",
    "load_pool",
    "load_spec",
    "pool_from_yaml",
]

GROUP = "sdxlpool.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "SDXLPool"
PLURAL = "sdxlpools"


class PoolSpecError(ConfigError, ValueError):
    """A pool spec that does not validate; ``problems`` holds one ``"path: reason"`` per issue.

    A ``ConfigError`` (the CLI reports it without a traceback) and a ``ValueError`` (what a
    bad value is, for callers that know nothing of sdxlpool's error tree).
    """

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        if len(self.problems) == 1:
            message = f"invalid SDXLPool: {self.problems[0]}"
        else:
            lines = "\n".join(f"  {problem}" for problem in self.problems)
            message = f"invalid SDXLPool ({len(self.problems)} problems):\n{lines}"
        super().__init__(message)


# Bounds that keep the CEL rules' cost estimate within the API server's budget (sdxlpool.api.cel);
# far above any real pool.
MAX_GPU_ENTRIES = 64
MAX_GPU_NAME_CHARS = 128


class _SpecModel(BaseModel):
    """Shared config: camelCase aliases, snake_case names also accepted, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel)


# An object-valued field whose model has defaults for everything gets ``default: {}`` in the CRD,
# so the API server fills in (and ``kubectl get -o yaml`` shows) the same defaults pydantic applies.
_OBJECT_DEFAULT: dict[str, Any] = {"default": {}}


# --- Kubernetes value types ----------------------------------------------------------------------

# A resource quantity ("500m", "16Gi", "2", 4), unsigned. The pattern is the one Kubernetes'
# own CRD generators use; YAML numbers are accepted and kept as their string form.
QUANTITY_PATTERN = (
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def _number_to_text(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


Quantity = Annotated[
    str,
    BeforeValidator(_number_to_text),
    Field(pattern=QUANTITY_PATTERN),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]
"""A Kubernetes resource quantity such as ``"500m"``, ``"16Gi"`` or ``2``, held as text."""

_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_LABEL_VALUE_PATTERN = rf"^({_LABEL_NAME})?$"
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

LabelValue = Annotated[str, Field(max_length=63, pattern=_LABEL_VALUE_PATTERN)]


def is_label_value(text: str) -> bool:
    """True when ``text`` may be a Kubernetes label value (empty, or 63 safe characters)."""
    return len(text) <= 63 and re.fullmatch(_LABEL_VALUE_PATTERN.strip("^$"), text) is not None


def is_label_key(text: str) -> bool:
    """True when ``text`` may be a Kubernetes label key: ``[prefix/]name`` (a qualified name)."""
    prefix, _, name = text.rpartition("/")
    if "/" in text and not (len(prefix) <= 253 and _DNS_SUBDOMAIN.fullmatch(prefix)):
        return False
    return 0 < len(name) <= 63 and re.fullmatch(_LABEL_NAME, name) is not None


class LocalObjectReference(_SpecModel):
    """An object in the pool's namespace, by name (here: an image pull Secret)."""

    name: str = Field(min_length=1, description="Name of the Secret.")


class ResourceAmounts(_SpecModel):
    """Amounts of the resources a worker may set; ``nvidia.com/gpu`` comes from ``gpusPerReplica``."""

    cpu: Quantity | None = Field(None, description="CPU cores, e.g. 4 or 500m; unset: none stated.")
    memory: Quantity | None = Field(None, description="Memory, e.g. 32Gi; unset: none stated.")
    ephemeral_storage: Quantity | None = Field(None, alias="ephemeral-storage",
                                               description="Local disk, e.g. 50Gi; unset: none stated.")


class Resources(_SpecModel):
    """Container resources, as in a Pod spec but limited to cpu, memory and ephemeral-storage."""

    requests: ResourceAmounts = Field(default_factory=ResourceAmounts, json_schema_extra=_OBJECT_DEFAULT)
    limits: ResourceAmounts = Field(default_factory=ResourceAmounts, json_schema_extra=_OBJECT_DEFAULT)


class Toleration(_SpecModel):
    """A Pod toleration, as in a Pod spec."""

    model_config = ConfigDict(json_schema_extra=cel.validations(
        cel.TOLERATION_EXISTS_NO_VALUE, cel.TOLERATION_KEYLESS_EXISTS, cel.TOLERATION_SECONDS_NO_EXECUTE))

    key: str | None = Field(None, min_length=1, description="Taint key; unset with operator Exists: every taint.")
    operator: Literal["Exists", "Equal"] = Field("Equal", description="Equal: the taint's value must be `value`; "
                                                 "Exists: any value.")
    value: LabelValue | None = Field(None, description="Taint value to match; operator Equal only.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to match; unset: every effect.")
    toleration_seconds: int | None = Field(None, description="NoExecute only: how long the pod stays bound.")

    @field_validator("key")
    @classmethod
    def _label_key(cls, key: str | None) -> str | None:
        if key is not None and not is_label_key(key):
            raise ValueError(f"{key!r} is not a valid label key")
        return key

    @model_validator(mode="after")
    def _consistent(self) -> Toleration:
        if self.operator == "Exists" and self.value:
            raise ValueError("operator Exists takes no value")
        if self.key is None and self.operator != "Exists":
            raise ValueError("a toleration without a key needs operator Exists")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds needs effect NoExecute")
        return self


# --- where the weights come from ---------------------------------------------------------------


class SecretKeyRef(_SpecModel):
    """A key of a Secret in the pool's namespace (here: a Hugging Face token)."""

    name: str = Field(min_length=1, description="Name of the Secret.")
    key: str = Field("token", min_length=1, description="Key in the Secret whose value is the token.")


class VolumeModelSource(_SpecModel):
    """Weights already on a PersistentVolumeClaim, in diffusers layout or as one .safetensors."""

    claim_name: str = Field(min_length=1, description="PersistentVolumeClaim holding the weights (mounted read-only).")
    base_path: str = Field(min_length=1, description="Path of the SDXL base model inside the volume.")
    refiner_path: str | None = Field(None, min_length=1, description="Path of the refiner; none: no refiner.")


_HF_REPO_ID = r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)?$"


class EmptyDirCache(_SpecModel):
    """A pod-local cache: empty again whenever a pod starts (on a new node, or replaced)."""

    size_limit: Quantity | None = Field(None, description="Largest size of the cache, e.g. 40Gi.")


class HuggingFaceCache(_SpecModel):
    """Where downloaded weights are kept: a PersistentVolumeClaim (shared, survives restarts;
    ReadWriteMany when replicas run on several nodes) or an emptyDir (the default)."""

    model_config = ConfigDict(json_schema_extra=cel.validations(cel.CACHE_AT_MOST_ONE))

    claim_name: str | None = Field(None, min_length=1, description="PVC holding the download cache.")
    empty_dir: EmptyDirCache | None = None

    @model_validator(mode="after")
    def _at_most_one(self) -> HuggingFaceCache:
        if self.claim_name is not None and self.empty_dir is not None:
            raise ValueError("set claimName or emptyDir, not both")
        return self


class CompileCache(HuggingFaceCache):
    """Where the workers keep compiled kernels between starts (`--compile-cache-dir`): a
    PersistentVolumeClaim (survives restarts; one claim may serve the whole pool, since entries are
    keyed by GPU model, torch version and compiled shapes, and written atomically) or an emptyDir.
    Unset: the pod's scratch space, so every start compiles again."""

    claim_name: str | None = Field(None, min_length=1, description="PVC holding the compiled kernels.")


class HuggingFaceModelSource(_SpecModel):
    """Weights (diffusers layout) downloaded from the Hugging Face Hub before a worker starts."""

    repo: str = Field(pattern=_HF_REPO_ID, description="Repo id of the SDXL base model.")
    refiner_repo: str | None = Field(None, pattern=_HF_REPO_ID, description="Repo id of the refiner; unset: no refiner.")
    revision: str | None = Field(None, min_length=1, description="Branch, tag or commit of the repos; unset: main.")
    token_secret: SecretKeyRef | None = Field(None, description="Token for gated or private repos; unset: none.")
    cache: HuggingFaceCache = Field(default_factory=HuggingFaceCache, json_schema_extra=_OBJECT_DEFAULT)


class ModelSource(_SpecModel):
    """Exactly one of ``volume`` or ``huggingFace``."""

    model_config = ConfigDict(json_schema_extra=cel.validations(cel.MODEL_SOURCE_EXACTLY_ONE))

    volume: VolumeModelSource | None = None
    hugging_face: HuggingFaceModelSource | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelSource:
        if (self.volume is None) == (self.hugging_face is None):
            got = "both" if self.volume is not None else "neither"
            raise ValueError(f"set exactly one of volume or huggingFace (got {got})")
        return self


class HuggingFaceFileSource(_SpecModel):
    """One file of a Hugging Face Hub repo, downloaded before a worker starts."""

    repo: str = Field(pattern=_HF_REPO_ID, description="Repo id, e.g. nerijs/pixel-art-xl.")
    file: str = Field(min_length=1, description="Path of the file in the repo, e.g. pixel-art-xl.safetensors.")
    revision: str | None = Field(None, min_length=1, description="Branch, tag or commit; unset: main.")
    token_secret: SecretKeyRef | None = Field(None, description="Token for a gated or private repo.")

    @field_validator("file")
    @classmethod
    def _inside_repo(cls, file: str) -> str:
        return _relative_path(file)


class VolumeFileSource(_SpecModel):
    """A file, or a folder of them, on a PersistentVolumeClaim (mounted read-only)."""

    claim_name: str | None = Field(
        None, min_length=1, description="PVC holding it; default: the model's, spec.model.volume.claimName."
    )
    path: str = Field(min_length=1, description="Path of the file or folder inside the volume ('.' or '/': all of it).")

    @field_validator("path")
    @classmethod
    def _inside_volume(cls, path: str) -> str:
        return _relative_path(path, whole=True)


def _relative_path(path: str, *, whole: bool = False) -> str:
    """A path that stays inside its repo (relative) or volume (a leading ``/`` is its root, as for
    ``basePath``; ``.`` is all of it): normalised, never leaving it through ``..``."""
    normal = posixpath.normpath(path)
    inside = normal.lstrip("/") if whole else normal
    if (not whole and normal.startswith("/")) or inside == ".." or inside.startswith("../") or (
        inside in (".", "") and not whole
    ):
        raise ValueError(f"must be a path inside the {'volume' if whole else 'repo'}, got {path!r}")
    return normal


def _inside(path: str, folder: str) -> bool:
    """True when volume path `path` is `folder` itself or inside it (``.`` and ``/`` are the root)."""
    path, folder = path.strip("/") or ".", folder.strip("/") or "."
    return folder == "." or path == folder or path.startswith(folder + "/")


class FineTuneSource(_SpecModel):
    """Where one fine-tune file comes from: exactly one of ``huggingFace`` or ``volume``."""

    model_config = ConfigDict(json_schema_extra=cel.validations(cel.FINE_TUNE_EXACTLY_ONE))

    hugging_face: HuggingFaceFileSource | None = None
    volume: VolumeFileSource | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> FineTuneSource:
        if (self.volume is None) == (self.hugging_face is None):
            got = "both" if self.volume is not None else "neither"
            raise ValueError(f"set exactly one of volume or huggingFace (got {got})")
        return self


FINE_TUNE_FIELDS = ("loras", "embeddings", "vaes", "styles")
"""The spec's fine-tune fields, in the order they are rendered (see sdxlpool.api.pool_config): lists
of files, and ``styles``, one file."""


# --- where the workers run ---------------------------------------------------------------------


class Placement(_SpecModel):
    """Which node labels say what GPU a node has.

    - ``nvidia``: ``nvidia.com/gpu.product`` from GPU feature discovery, matched by name
      normalisation (``A100`` runs on ``NVIDIA-A100-SXM4-80GB``).
    - ``akash``: ``akash.network/capabilities.gpu.vendor.nvidia.model.<m>`` keys from Akash
      providers (see :func:`sdxlpool.api.gpu.akash_labels`).
    - ``custom``: a node must carry the label key ``labelKeyTemplate`` with ``{model}``
      replaced by the entry's GPU slug (``example.com/gpu.{model}`` -> ``example.com/gpu.a100``).
    """

    model_config = ConfigDict(json_schema_extra=cel.validations(cel.TEMPLATE_IFF_CUSTOM))

    label_scheme: Literal["nvidia", "akash", "custom"] = Field(
        "nvidia", description=f"nvidia: {NVIDIA_PRODUCT}; akash: {AKASH_GPU_LABEL_PREFIX}<m>; custom: labelKeyTemplate.")
    label_key_template: str | None = Field(
        None,
        pattern=r"\{model\}",
        description="Label key with a {model} placeholder; labelScheme custom only.",
    )

    @model_validator(mode="after")
    def _template_iff_custom(self) -> Placement:
        if self.label_scheme == "custom" and self.label_key_template is None:
            raise ValueError("labelScheme custom needs labelKeyTemplate, e.g. 'example.com/gpu.{model}'")
        if self.label_scheme != "custom" and self.label_key_template is not None:
            raise ValueError(
                f"labelKeyTemplate is only used with labelScheme custom, not {self.label_scheme}"
            )
        return self

    def label_key(self, slug: str) -> str:
        """The custom scheme's label key for a GPU slug (``+`` in MIG profiles becomes ``_``)."""
        if self.label_key_template is None:
            raise ValueError(f"labelScheme {self.label_scheme} has no labelKeyTemplate")
        return self.label_key_template.replace("{model}", slug.replace("+", "_"))


class GpuProvider(_SpecModel):
    """Who runs these GPUs; reported by workers and the gateway, not used for placement."""

    name: str = Field(min_length=1, description="Provider name shown to users, e.g. Foundry Staking.")
    location: str | None = Field(None, description="Where the GPUs are, e.g. US-East; shown to users.")


class GpuAutoscaling(_SpecModel):
    """How far the pool's autoscaler may move one GPU model's replicas (spec.autoscaling.enabled)."""

    model_config = ConfigDict(json_schema_extra=cel.validations(cel.AUTOSCALING_MIN_WITHIN_MAX))

    min_replicas: int = Field(1, ge=0, description="Fewest workers; 0 lets the model scale to zero.")
    max_replicas: int = Field(ge=0, description="Most workers.")


class GpuEntry(_SpecModel):
    """One GPU model of the pool; the operator makes one Deployment per entry."""

    model_config = ConfigDict(json_schema_extra=cel.validations(cel.REPLICAS_WITHIN_AUTOSCALING))

    model: str = Field(description="GPU model, any common spelling: A100, RTX-3090, NVIDIA-A100-SXM4-80GB.",
                       max_length=MAX_GPU_NAME_CHARS,
                       json_schema_extra=cel.validations(cel.GPU_NAME_LOOKS_NVIDIA))
    replicas: int = Field(1, ge=0, description="Worker pods of this GPU model; with autoscaling, the starting size.")
    gpus_per_replica: int = Field(1, ge=1, description=f"{GPU_RESOURCE} per worker pod.")
    resources: Resources = Field(default_factory=Resources, json_schema_extra=_OBJECT_DEFAULT)
    node_selector: dict[str, LabelValue] = Field(
        default_factory=dict, description="Node labels a worker's node must carry, besides its GPU."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description=f"Added to the toleration of the {GPU_RESOURCE} taint."
    )
    provider: GpuProvider | None = None
    price_per_hour: float | None = Field(
        None, gt=0, description="What one worker of this model costs per hour (any currency, the same for every "
        "entry); the gateway's cost routing and the autoscaler prefer the cheapest per step.")
    autoscaling: GpuAutoscaling | None = Field(
        None, description="Replica bounds for the pool's autoscaler (spec.autoscaling); unset: this entry keeps "
        "`replicas` workers."
    )
    fast_mode: FastMode = Field(
        "off", description="An opt-in, inexact fast mode for this GPU model's workers (their --fast-mode): "
        "deepcache reuses the UNet's deep features between full evaluations (faster; images a little "
        "different); off: the exact images. Answers say which in X-SDXL-Fast-Mode.")

    @field_validator("model")
    @classmethod
    def _known_gpu(cls, value: str) -> str:
        parse_gpu_name(value)  # raises ValueError naming the value
        return value.strip()

    @field_validator("node_selector")
    @classmethod
    def _label_keys(cls, selector: dict[str, str]) -> dict[str, str]:
        bad = [key for key in selector if not is_label_key(key)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a valid label key")
        return selector

    @property
    def gpu(self) -> GpuName:
        """The parsed GPU name."""
        return parse_gpu_name(self.model)

    @property
    def slug(self) -> str:
        """Canonical GPU slug, e.g. ``"a100-80gb"``."""
        return self.gpu.slug


# --- what the workers do -------------------------------------------------------------------------


# Named ...Spec (like LimitsSpec) to stay apart from sdxlpool.api.generation.GenerationDefaults,
# the resolved, frozen form the worker builds from it. Docstrings here become CRD descriptions.
class DefaultsSpec(_SpecModel):
    """txt2img parameters used when a request leaves them out."""

    sampler: str = Field("DPM++ SDE Karras", min_length=1, description="A1111 sampler name, e.g. Euler a.")
    steps: int = Field(25, ge=1, description="Denoising steps; at most limits.maxSteps.")
    cfg_scale: float = Field(7.0, ge=1.0, le=30.0, description="Classifier-free guidance scale.")
    refiner_switch_at: float = Field(0.8, ge=0.0, le=1.0, description="Share of the steps run by the base model "
                                     "before the refiner takes over; 1: no refiner.")
    width: int = Field(1024, ge=64, multiple_of=8, description="Image width in pixels, a multiple of 8.")
    height: int = Field(1024, ge=64, multiple_of=8, description="Image height in pixels, a multiple of 8; "
                        "width x height at most limits.maxPixels.")


class LimitsSpec(_SpecModel):
    """Largest request the pool accepts; beyond these workers and gateway answer 422."""

    max_steps: int = Field(60, ge=1, description="Most denoising steps a request may ask for.")
    max_pixels: int = Field(2097152, ge=1, description="width * height of one image.")
    max_batch: int = Field(4, ge=1, description="Most images one request may ask for.")
    max_prompt_chars: int = Field(400, ge=1, description="Longest prompt (and negative prompt), in characters.")


class RateLimitSpec(_SpecModel):
    """Per-client token bucket at the gateway: refills requestsPerMinute, holds up to burst."""

    requests_per_minute: int = Field(ge=1, description="Requests a client may send per minute, sustained.")
    burst: int = Field(10, ge=1, description="Requests a client may send at once after a quiet spell.")


class ApiKeysSecretRef(_SpecModel):
    """A Secret in the pool's namespace whose key holds the gateway's API keys file (hashed keys,
    made with sdxlpool api-key). Mounted read-only into the gateway and passed as --api-keys; the
    gateway re-reads it when the Secret changes. Unset: no API keys, the gateway is open."""

    name: str = Field(min_length=1, description="Name of the Secret.")
    key: str = Field("keys.yaml", description="Key in the Secret holding the keys file.", min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class GatewaySpec(_SpecModel):
    """The pool's own gateway Deployment and Service."""

    enabled: bool = Field(True, description="Run the pool's gateway; false: workers only.")
    replicas: int = Field(2, ge=0, description="Gateway pods behind the pool's Service.")
    image: str | None = Field(None, min_length=1, description="Gateway image; default: spec.image.")
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        "ClusterIP", description="Type of the gateway's Service.")
    rate_limit: RateLimitSpec | None = Field(None, description="Unset: no per-client rate limit.")
    api_keys_secret: ApiKeysSecretRef | None = Field(None, description="Secret with the gateway's API keys; unset: "
                                                     "no API keys, the gateway is open.")
    resources: Resources = Field(default_factory=Resources, json_schema_extra=_OBJECT_DEFAULT)


_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class NetworkPolicySpec(_SpecModel):
    """A NetworkPolicy on the pool's workers: they accept connections only from the pool's gateway
    and from pods of the monitoring namespace (Prometheus), on the worker port. Needs a CNI that
    enforces NetworkPolicy (Calico, Cilium, ...); elsewhere it is accepted and has no effect."""

    enabled: bool = Field(True, description="Make the NetworkPolicy; false: none.")
    monitoring_namespace: str | None = Field(
        "monitoring",
        max_length=63,
        pattern=_DNS_LABEL,
        description="Namespace whose pods may scrape the workers' /metrics; null: none.",
    )


class LatencyTarget(_SpecModel):
    """The latency the autoscaler sizes the pool for."""

    p95_seconds: float = Field(30.0, gt=0, description="95th percentile of a request's seconds at the gateway "
                               "(queue + inference).")


class PoolAutoscaling(_SpecModel):
    """Demand- and price-driven replicas per GPU model: the operator reads the gateway's demand and
    sizes each entry that has `autoscaling` bounds, cheapest price per normalised step first, to keep
    the predicted p95 under the target; `replicas` is each entry's starting size."""

    enabled: bool = Field(False, description="Let the operator size the entries that have autoscaling bounds.")
    latency_target: LatencyTarget = Field(default_factory=LatencyTarget, json_schema_extra=_OBJECT_DEFAULT)
    scale_up_delay: float = Field(15.0, ge=0, description="Seconds more replicas must be wanted before they are "
                                  "added (a model at zero with requests waiting starts at once).")
    scale_down_delay: float = Field(300.0, ge=0, description="Seconds fewer replicas must be enough before any "
                                    "is removed.")


class SDXLPoolSpec(_SpecModel):
    """``spec`` of an SDXLPool."""

    model_config = ConfigDict(json_schema_extra=cel.validations(
        cel.DEFAULT_STEPS_WITHIN_LIMITS, cel.DEFAULT_PIXELS_WITHIN_LIMITS))

    image: str = Field(min_length=1, description="Worker container image.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="Pull policy of the worker and gateway containers.")
    image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list, description="Secrets for pulling the images from a private registry.")
    model: ModelSource
    placement: Placement = Field(default_factory=Placement, json_schema_extra=_OBJECT_DEFAULT)
    gpus: list[GpuEntry] = Field(
        min_length=1, max_length=MAX_GPU_ENTRIES, description="The pool's GPU models, one entry each: how many "
        "workers, where they run, what they cost.", json_schema_extra=cel.validations(cel.GPU_ENTRIES_UNIQUE))
    defaults: DefaultsSpec = Field(default_factory=DefaultsSpec, json_schema_extra=_OBJECT_DEFAULT)
    limits: LimitsSpec = Field(default_factory=LimitsSpec, json_schema_extra=_OBJECT_DEFAULT)
    gateway: GatewaySpec = Field(default_factory=GatewaySpec, json_schema_extra=_OBJECT_DEFAULT)
    autoscaling: PoolAutoscaling = Field(default_factory=PoolAutoscaling, json_schema_extra=_OBJECT_DEFAULT)
    network_policy: NetworkPolicySpec = Field(default_factory=NetworkPolicySpec, json_schema_extra=_OBJECT_DEFAULT)
    loras: list[FineTuneSource] = Field(
        default_factory=list,
        description="LoRA files the workers offer, named in prompts by their file name without extension; "
        "from Hugging Face repos or volumes; passed as --lora-dir.",
    )
    embeddings: list[FineTuneSource] = Field(
        default_factory=list,
        description="Textual-inversion embeddings (SDXL: clip_l and clip_g) the workers offer; --embeddings-dir.",
    )
    vaes: list[FineTuneSource] = Field(
        default_factory=list, description="VAE files the workers offer as sd_vae choices; --vae-dir."
    )
    styles: FineTuneSource | None = Field(
        None, description="An A1111 styles.csv (name, prompt, negative_prompt) the workers apply by a request's "
        "styles; a file, not a folder; --styles."
    )
    compile_cache: CompileCache | None = Field(
        None, description="A volume for the compiled kernels of the exact fast path (CUDA workers), so a "
        "restarted worker loads them instead of compiling again; unset: compiled at every start."
    )

    @field_validator("gpus")
    @classmethod
    def _one_entry_per_gpu(cls, gpus: list[GpuEntry]) -> list[GpuEntry]:
        seen: dict[str, int] = {}
        clashes = []
        for index, entry in enumerate(gpus):
            first = seen.setdefault(entry.slug, index)
            if first != index:
                clashes.append(
                    f"gpus[{first}] ({gpus[first].model}) and gpus[{index}] ({entry.model}) "
                    f"are both GPU model {entry.slug}"
                )
        if clashes:
            raise ValueError("; ".join(clashes) + "; give each GPU model one entry")
        return gpus

    @model_validator(mode="after")
    def _replicas_within_autoscaling(self) -> SDXLPoolSpec:
        """minReplicas <= replicas <= maxReplicas for every entry with bounds: `replicas` is where
        the autoscaler starts, so it must be a size the autoscaler could choose."""
        problems = []
        for index, entry in enumerate(self.gpus):
            bounds = entry.autoscaling
            if bounds is None:
                continue
            where = f"gpus[{index}] ({entry.model})"
            if bounds.min_replicas > bounds.max_replicas:
                problems.append(f"{where}.autoscaling: minReplicas ({bounds.min_replicas}) exceeds maxReplicas "
                                f"({bounds.max_replicas})")
            elif not bounds.min_replicas <= entry.replicas <= bounds.max_replicas:
                problems.append(f"{where}.replicas ({entry.replicas}) must lie within autoscaling "
                                f"minReplicas..maxReplicas ({bounds.min_replicas}..{bounds.max_replicas}): it is "
                                "the starting size")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _defaults_within_limits(self) -> SDXLPoolSpec:
        defaults, limits = self.defaults, self.limits
        problems = []
        if defaults.steps > limits.max_steps:
            problems.append(f"defaults.steps ({defaults.steps}) exceeds limits.maxSteps ({limits.max_steps})")
        pixels = defaults.width * defaults.height
        if pixels > limits.max_pixels:
            problems.append(
                f"defaults.width x defaults.height ({defaults.width}x{defaults.height} = {pixels}) "
                f"exceeds limits.maxPixels ({limits.max_pixels})"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def fine_tunes(self, field: str) -> list[FineTuneSource]:
        """The sources of fine-tune field `field` (one of FINE_TUNE_FIELDS) as a list."""
        value = getattr(self, field)
        return list(value) if isinstance(value, list) else [] if value is None else [value]

    @model_validator(mode="after")
    def _fine_tunes_resolvable(self) -> SDXLPoolSpec:
        """Volume files without a claimName use the model's PVC, which needs one; no file twice, no
        volume entries inside one another (a mount inside a read-only mount fails); styles is a file."""
        problems = []
        for field in FINE_TUNE_FIELDS:
            seen: dict[tuple[str | None, ...], int] = {}
            single = not isinstance(getattr(self, field), list)
            for index, source in enumerate(self.fine_tunes(field)):
                where = field if single else f"{field}[{index}]"
                volume, hub = source.volume, source.hugging_face
                if volume is not None and volume.claim_name is None and self.model.volume is None:
                    problems.append(f"{where}.volume.claimName: required when spec.model is not a volume "
                                    "(there is no pool volume to default to)")
                if volume is not None and single and volume.path.strip("/") in ("", "."):
                    problems.append(f"{where}.volume.path: must name the file, not the whole volume")
                if volume is not None:
                    claim = volume.claim_name or (self.model.volume.claim_name if self.model.volume else None)
                    key: tuple[str | None, ...] = ("volume", claim, volume.path)
                else:
                    assert hub is not None
                    key = ("huggingFace", hub.repo, hub.revision, hub.file)
                first = seen.setdefault(key, index)
                if first != index:
                    problems.append(f"{where} is the same file as {field}[{first}]")
                    continue
                for (kind, *other_key), other in seen.items():
                    if kind == "volume" and key[0] == "volume" and other != index and other_key[0] == key[1] and (
                            _inside(str(key[2]), str(other_key[1])) or _inside(str(other_key[1]), str(key[2]))):
                        problems.append(f"{where} ({volume.path if volume else ''}) and {field}[{other}] "
                                        "overlap on one volume: list the folder or its files, not both")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _placeable(self) -> SDXLPoolSpec:
        """Every entry can be expressed in the chosen label scheme."""
        placement, problems = self.placement, []
        for index, entry in enumerate(self.gpus):
            if placement.label_scheme == "akash" and entry.gpu.mig:
                problems.append(
                    f"gpus[{index}].model ({entry.model}): labelScheme akash cannot place MIG slices; "
                    "use labelScheme nvidia or custom"
                )
            if placement.label_scheme == "custom" and placement.label_key_template is not None:
                key = placement.label_key(entry.slug)
                if not is_label_key(key):
                    problems.append(
                        f"placement.labelKeyTemplate gives {key!r} for gpus[{index}] ({entry.model}), "
                        "which is not a valid label key"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class SDXLPool(_SpecModel):
    """A whole SDXLPool object; ``status`` is accepted (objects read back) but not checked."""

    api_version: Literal["sdxlpool.dev/v1alpha1"] = "sdxlpool.dev/v1alpha1"
    kind: Literal["SDXLPool"] = "SDXLPool"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: SDXLPoolSpec
    status: dict[str, Any] | None = None


# --- loading -------------------------------------------------------------------------------------


def load_pool(data: Mapping[str, Any]) -> SDXLPool:
    """Validate a whole SDXLPool object (a parsed manifest); ``PoolSpecError`` lists every problem."""
    if not isinstance(data, Mapping):
        raise PoolSpecError([f"pool: expected a mapping, got {type(data).__name__}"])
    try:
        return SDXLPool.model_validate(dict(data))
    except ValidationError as error:
        raise PoolSpecError(_problems(error)) from None


def load_spec(spec: Mapping[str, Any]) -> SDXLPoolSpec:
    """Validate only the ``spec`` (what a kopf handler receives); paths still start ``spec.``."""
    if not isinstance(spec, Mapping):
        raise PoolSpecError([f"spec: expected a mapping, got {type(spec).__name__}"])
    try:
        return SDXLPoolSpec.model_validate(dict(spec))
    except ValidationError as error:
        raise PoolSpecError(_problems(error, prefix=("spec",))) from None


def pool_from_yaml(text: str) -> SDXLPool:
    """Parse one YAML document holding an SDXLPool and validate it."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise PoolSpecError([f"YAML: {' '.join(str(error).split())}"]) from None
    return load_pool(data)


# Python field name -> camelCase alias, for every model above, so error paths read like the YAML.
_ALIASES: dict[str, str] = {
    name: field.alias or name
    for model in (
        LocalObjectReference,
        ResourceAmounts,
        Resources,
        Toleration,
        SecretKeyRef,
        VolumeModelSource,
        EmptyDirCache,
        HuggingFaceCache,
        HuggingFaceModelSource,
        ModelSource,
        HuggingFaceFileSource,
        VolumeFileSource,
        FineTuneSource,
        Placement,
        GpuProvider,
        GpuEntry,
        DefaultsSpec,
        LimitsSpec,
        RateLimitSpec,
        ApiKeysSecretRef,
        GatewaySpec,
        NetworkPolicySpec,
        SDXLPoolSpec,
        SDXLPool,
    )
    for name, field in model.model_fields.items()
}

_PLAIN_MESSAGES = {"missing": "required field is missing", "extra_forbidden": "unknown field"}
_MESSAGE_PREFIXES = ("Value error, ", "Assertion failed, ")


def _problems(error: ValidationError, prefix: tuple[str, ...] = ()) -> list[str]:
    """pydantic errors as ``"spec.gpus[1].model: reason"`` lines, camelCase, in input order."""
    return [f"{_path((*prefix, *item['loc']), item['type'])}: {_message(item)}" for item in error.errors()]


def _path(loc: tuple[str | int, ...], error_type: str) -> str:
    path = ""
    for position, part in enumerate(loc):
        if isinstance(part, int):
            path += f"[{part}]"
            continue
        # An unknown key is shown as the user wrote it, not "corrected" to a field alias.
        is_unknown_key = error_type == "extra_forbidden" and position == len(loc) - 1
        name = part if is_unknown_key else _ALIASES.get(part, part)
        path += f".{name}" if path else name
    return path or "pool"


def _message(item: Mapping[str, Any]) -> str:
    if item["type"] in _PLAIN_MESSAGES:
        return _PLAIN_MESSAGES[item["type"]]
    message = str(item["msg"])
    for known in _MESSAGE_PREFIXES:
        message = message.removeprefix(known)
    value = item.get("input")
    if item["type"] not in ("value_error", "assertion_error") and isinstance(value, (str, int, float, bool)):
        message += f" (got {value!r})"
    return message
