"""Shared, pure data for every part of sdxlpool: the A1111 wire format and its checks, GPU names,
and the SDXLPool spec.

Contract: nothing in this package does I/O (no network, files, Kubernetes or torch), so the
operator, worker and gateway can all import it cheaply and test it without servers.
"""

from __future__ import annotations

from sdxlpool.api.a1111 import (
    INERT_FIELDS,
    ProgressResponse,
    ProgressState,
    Txt2ImgRequest,
    Txt2ImgResponse,
)
from sdxlpool.api.generation import (
    MAX_SEED,
    GenerationDefaults,
    GenerationParams,
    RequestLimits,
    resolve_request,
)
from sdxlpool.api.gpu import (
    AKASH_GPU_LABEL_PREFIX,
    GpuName,
    akash_labels,
    akash_model_name,
    display_name,
    gpu_matches,
    normalize_gpu_name,
    parse_gpu_name,
)
from sdxlpool.api.spec import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    DefaultsSpec,
    GatewaySpec,
    GpuEntry,
    GpuProvider,
    HuggingFaceModelSource,
    LimitsSpec,
    ModelSource,
    Placement,
    PoolSpecError,
    SDXLPool,
    SDXLPoolSpec,
    SecretKeyRef,
    VolumeModelSource,
    load_pool,
    load_spec,
    pool_from_yaml,
)

__all__ = [
    # a1111.py
    "INERT_FIELDS",
    "ProgressResponse",
    "ProgressState",
    "Txt2ImgRequest",
    "Txt2ImgResponse",
    # generation.py
    "MAX_SEED",
    "GenerationDefaults",
    "GenerationParams",
    "RequestLimits",
    "resolve_request",
    # gpu.py
    "AKASH_GPU_LABEL_PREFIX",
    "GpuName",
    "akash_labels",
    "akash_model_name",
    "display_name",
    "gpu_matches",
    "normalize_gpu_name",
    "parse_gpu_name",
    # spec.py
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
