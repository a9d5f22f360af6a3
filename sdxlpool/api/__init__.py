"""Shared, pure data for every part of sdxlpool: the A1111 wire format and its checks, GPU names,
and the SDXLPool spec.

Contract: nothing in this package does I/O (no network, files, Kubernetes or torch), so the
operator, worker and gateway can all import it cheaply and test it without servers.

The contracts between the parts live here, one home each: ``labels`` (label and annotation keys,
selectors), ``ports`` (ports and health/metrics paths), ``metric_names`` (Prometheus names),
``pool_config`` (the workers' and gateway's command lines derived from a pool spec), ``spec`` (the
SDXLPool CRD model), ``a1111`` and ``generation`` (the wire format and request checks), ``gpu``.
The names below load on first use, so importing one small module (the command line reads
``pool_config``'s flag table to build its parsers) does not build every pydantic model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sdxlpool._lazy import lazy_attributes

if TYPE_CHECKING:
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

__getattr__ = lazy_attributes(__name__, {
    "INERT_FIELDS": "sdxlpool.api.a1111",
    "ProgressResponse": "sdxlpool.api.a1111",
    "ProgressState": "sdxlpool.api.a1111",
    "Txt2ImgRequest": "sdxlpool.api.a1111",
    "Txt2ImgResponse": "sdxlpool.api.a1111",
    "MAX_SEED": "sdxlpool.api.generation",
    "GenerationDefaults": "sdxlpool.api.generation",
    "GenerationParams": "sdxlpool.api.generation",
    "RequestLimits": "sdxlpool.api.generation",
    "resolve_request": "sdxlpool.api.generation",
    "AKASH_GPU_LABEL_PREFIX": "sdxlpool.api.gpu",
    "GpuName": "sdxlpool.api.gpu",
    "akash_labels": "sdxlpool.api.gpu",
    "akash_model_name": "sdxlpool.api.gpu",
    "display_name": "sdxlpool.api.gpu",
    "gpu_matches": "sdxlpool.api.gpu",
    "normalize_gpu_name": "sdxlpool.api.gpu",
    "parse_gpu_name": "sdxlpool.api.gpu",
    "API_VERSION": "sdxlpool.api.spec",
    "GROUP": "sdxlpool.api.spec",
    "KIND": "sdxlpool.api.spec",
    "PLURAL": "sdxlpool.api.spec",
    "VERSION": "sdxlpool.api.spec",
    "DefaultsSpec": "sdxlpool.api.spec",
    "GatewaySpec": "sdxlpool.api.spec",
    "GpuEntry": "sdxlpool.api.spec",
    "GpuProvider": "sdxlpool.api.spec",
    "HuggingFaceModelSource": "sdxlpool.api.spec",
    "LimitsSpec": "sdxlpool.api.spec",
    "ModelSource": "sdxlpool.api.spec",
    "Placement": "sdxlpool.api.spec",
    "PoolSpecError": "sdxlpool.api.spec",
    "SDXLPool": "sdxlpool.api.spec",
    "SDXLPoolSpec": "sdxlpool.api.spec",
    "SecretKeyRef": "sdxlpool.api.spec",
    "VolumeModelSource": "sdxlpool.api.spec",
    "load_pool": "sdxlpool.api.spec",
    "load_spec": "sdxlpool.api.spec",
    "pool_from_yaml": "sdxlpool.api.spec",
})
