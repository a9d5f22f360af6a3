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

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from sdxlpool.api.gpu import GpuName, parse_gpu_name
from sdxlpool.errors import ConfigError

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "DefaultsSpec",
    "GatewaySpec",
    "GpuEntry",
    "GpuProvider",
    "HuggingFaceModelSource",
    "LimitsSpec",
    "ModelSource",
    "Placement",
    "PoolSpecError",
    "SDXLPool",
    "SDXLPoolSpec",
    "SecretKeyRef",
    "VolumeModelSource",
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


class _SpecModel(BaseModel):
    """Shared config: camelCase aliases, snake_case names also accepted, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel)


# --- where the weights come from ---------------------------------------------------------------


class SecretKeyRef(_SpecModel):
    """A key of a Secret in the pool's namespace (here: a Hugging Face token)."""

    name: str = Field(min_length=1)
    key: str = Field("token", min_length=1)


class VolumeModelSource(_SpecModel):
    """Weights already on a PersistentVolumeClaim, in diffusers layout or as one .safetensors."""

    claim_name: str = Field(min_length=1)
    base_path: str = Field(min_length=1, description="Path of the SDXL base model inside the volume.")
    refiner_path: str | None = Field(None, min_length=1, description="Path of the refiner; none: no refiner.")


_HF_REPO_ID = r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)?$"


class HuggingFaceModelSource(_SpecModel):
    """Weights fetched from the Hugging Face Hub into the worker's cache."""

    repo: str = Field(pattern=_HF_REPO_ID, description="Repo id of the SDXL base model.")
    refiner_repo: str | None = Field(None, pattern=_HF_REPO_ID)
    revision: str | None = Field(None, min_length=1)
    token_secret: SecretKeyRef | None = None


class ModelSource(_SpecModel):
    """Exactly one of ``volume`` or ``huggingFace``."""

    volume: VolumeModelSource | None = None
    hugging_face: HuggingFaceModelSource | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelSource:
        if (self.volume is None) == (self.hugging_face is None):
            got = "both" if self.volume is not None else "neither"
            raise ValueError(f"set exactly one of volume or huggingFace (got {got})")
        return self


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

    label_scheme: Literal["nvidia", "akash", "custom"] = "nvidia"
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


class GpuProvider(_SpecModel):
    """Who runs these GPUs; reported by workers and the gateway, not used for placement."""

    name: str = Field(min_length=1)
    location: str | None = None


class GpuEntry(_SpecModel):
    """One GPU model of the pool; the operator makes one Deployment per entry."""

    model: str = Field(description="GPU model, any common spelling: A100, RTX-3090, NVIDIA-A100-SXM4-80GB.")
    replicas: int = Field(1, ge=0)
    gpus_per_replica: int = Field(1, ge=1)
    provider: GpuProvider | None = None
    price_per_hour: float | None = Field(None, ge=0)
    node_selector: dict[str, str] = Field(default_factory=dict)

    @field_validator("model")
    @classmethod
    def _known_gpu(cls, value: str) -> str:
        parse_gpu_name(value)  # raises ValueError naming the value
        return value.strip()

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

    sampler: str = Field("DPM++ SDE Karras", min_length=1)
    steps: int = Field(25, ge=1)
    cfg_scale: float = Field(7.0, ge=1.0, le=30.0)
    refiner_switch_at: float = Field(0.8, ge=0.0, le=1.0)
    width: int = Field(1024, ge=64, multiple_of=8)
    height: int = Field(1024, ge=64, multiple_of=8)


class LimitsSpec(_SpecModel):
    """Largest request the pool accepts; beyond these workers and gateway answer 422."""

    max_steps: int = Field(60, ge=1)
    max_pixels: int = Field(2097152, ge=1, description="width * height of one image.")
    max_batch: int = Field(4, ge=1)
    max_prompt_chars: int = Field(400, ge=1)


class GatewaySpec(_SpecModel):
    """The pool's own gateway Deployment."""

    enabled: bool = True
    replicas: int = Field(2, ge=0)


class SDXLPoolSpec(_SpecModel):
    """``spec`` of an SDXLPool."""

    image: str = Field(min_length=1, description="Worker container image.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    model: ModelSource
    placement: Placement = Field(default_factory=Placement)
    gpus: list[GpuEntry] = Field(min_length=1)
    defaults: DefaultsSpec = Field(default_factory=DefaultsSpec)
    limits: LimitsSpec = Field(default_factory=LimitsSpec)
    gateway: GatewaySpec = Field(default_factory=GatewaySpec)

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
        SecretKeyRef,
        VolumeModelSource,
        HuggingFaceModelSource,
        ModelSource,
        Placement,
        GpuProvider,
        GpuEntry,
        DefaultsSpec,
        LimitsSpec,
        GatewaySpec,
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
