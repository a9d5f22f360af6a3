"""GPU name normalisation: real spellings from node labels, nvidia-smi, Akash and people."""

from __future__ import annotations

import pytest

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

AKASH = AKASH_GPU_LABEL_PREFIX

# (input, slug, form factor, mig profile)
PARSE_CASES = [
    # what people type
    pytest.param("A100", "a100", None, None, id="bare"),
    pytest.param("a100", "a100", None, None, id="lower"),
    pytest.param("NVIDIA A100", "a100", None, None, id="vendor-space"),
    pytest.param("nvidia-a100", "a100", None, None, id="vendor-dash"),
    pytest.param("  A100  ", "a100", None, None, id="padded"),
    pytest.param("RTX 3090", "rtx-3090", None, None, id="rtx-space"),
    pytest.param("rtx-3090", "rtx-3090", None, None, id="rtx-dash"),
    pytest.param("RTX_3090", "rtx-3090", None, None, id="rtx-underscore"),
    pytest.param("A100-80GB", "a100-80gb", None, None, id="memory-suffix"),
    pytest.param("A100 80 GB", "a100-80gb", None, None, id="memory-split-unit"),
    pytest.param("A6000", "rtx-a6000", None, None, id="bare-ampere-workstation"),
    pytest.param("RTX 6000 Ada", "rtx-6000-ada", None, None, id="ada-short"),
    pytest.param("GeForce RTX 3090 Ti", "rtx-3090-ti", None, None, id="ti"),
    pytest.param("GTX 1080Ti", "gtx-1080-ti", None, None, id="glued-ti"),
    # nvidia.com/gpu.product values written by GPU feature discovery
    pytest.param("NVIDIA-A100-SXM4-80GB", "a100-80gb", "sxm4", None, id="gfd-a100-sxm4-80"),
    pytest.param("NVIDIA-A100-SXM4-40GB", "a100-40gb", "sxm4", None, id="gfd-a100-sxm4-40"),
    pytest.param("NVIDIA-A100-PCIE-40GB", "a100-40gb", "pcie", None, id="gfd-a100-pcie-40"),
    pytest.param("NVIDIA-A100-80GB-PCIe", "a100-80gb", "pcie", None, id="gfd-a100-80-pcie"),
    pytest.param("NVIDIA-GeForce-RTX-3090", "rtx-3090", None, None, id="gfd-3090"),
    pytest.param("NVIDIA-GeForce-RTX-3090-Ti", "rtx-3090-ti", None, None, id="gfd-3090-ti"),
    pytest.param("NVIDIA-GeForce-RTX-4090", "rtx-4090", None, None, id="gfd-4090"),
    pytest.param("NVIDIA-GeForce-RTX-4080-SUPER", "rtx-4080-super", None, None, id="gfd-4080-super"),
    pytest.param("NVIDIA-L40S", "l40s", None, None, id="gfd-l40s"),
    pytest.param("NVIDIA-L40", "l40", None, None, id="gfd-l40"),
    pytest.param("NVIDIA-L4", "l4", None, None, id="gfd-l4"),
    pytest.param("NVIDIA-RTX-A6000", "rtx-a6000", None, None, id="gfd-rtx-a6000"),
    pytest.param("NVIDIA-RTX-A4000", "rtx-a4000", None, None, id="gfd-rtx-a4000"),
    pytest.param("NVIDIA-H100-80GB-HBM3", "h100-80gb", None, None, id="gfd-h100-hbm3"),
    pytest.param("NVIDIA-H100-PCIe", "h100", "pcie", None, id="gfd-h100-pcie"),
    pytest.param("NVIDIA-H100-NVL", "h100", "nvl", None, id="gfd-h100-nvl"),
    pytest.param("NVIDIA-H200", "h200", None, None, id="gfd-h200"),
    pytest.param("NVIDIA-B200", "b200", None, None, id="gfd-b200"),
    pytest.param("Tesla-T4", "t4", None, None, id="gfd-t4"),
    pytest.param("NVIDIA-A10G", "a10g", None, None, id="gfd-a10g"),
    pytest.param("NVIDIA-A10", "a10", None, None, id="gfd-a10"),
    pytest.param("Tesla-V100-SXM2-16GB", "v100-16gb", "sxm2", None, id="gfd-v100-sxm2"),
    pytest.param("Tesla-V100S-PCIE-32GB", "v100s-32gb", "pcie", None, id="gfd-v100s"),
    pytest.param("NVIDIA-RTX-6000-Ada-Generation", "rtx-6000-ada", None, None, id="gfd-6000-ada"),
    pytest.param("NVIDIA-RTX-4000-SFF-Ada-Generation", "rtx-4000-sff-ada", None, None, id="gfd-4000-sff-ada"),
    pytest.param("Tesla-T4-SHARED", "t4", None, None, id="gfd-time-sliced"),
    # MIG, as GPU feature discovery writes it
    pytest.param("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", "a100-40gb-mig-1g.5gb", "sxm4", "1g.5gb", id="mig-1g"),
    pytest.param(
        "NVIDIA-A100-SXM4-80GB-MIG-3g.40gb", "a100-80gb-mig-3g.40gb", "sxm4", "3g.40gb", id="mig-3g"
    ),
    pytest.param(
        "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb+me", "h100-80gb-mig-1g.10gb+me", None, "1g.10gb+me", id="mig-media"
    ),
    pytest.param(
        "A100-SXM4-40GB-MIG-1c.2g.10gb", "a100-40gb-mig-1c.2g.10gb", "sxm4", "1c.2g.10gb", id="mig-ci"
    ),
    # nvidia-smi --query-gpu=name
    pytest.param("NVIDIA A100-SXM4-80GB", "a100-80gb", "sxm4", None, id="smi-a100-sxm4"),
    pytest.param("NVIDIA A100 80GB PCIe", "a100-80gb", "pcie", None, id="smi-a100-pcie"),
    pytest.param("NVIDIA H100 80GB HBM3", "h100-80gb", None, None, id="smi-h100"),
    pytest.param("NVIDIA GH200 480GB", "gh200-480gb", None, None, id="smi-gh200"),
    pytest.param("NVIDIA GH200 144G HBM3e", "gh200-144gb", None, None, id="smi-gh200-144g"),
    pytest.param("Tesla V100-SXM2-32GB", "v100-32gb", "sxm2", None, id="smi-v100"),
    pytest.param("NVIDIA RTX 6000 Ada Generation", "rtx-6000-ada", None, None, id="smi-6000-ada"),
    pytest.param("NVIDIA RTX 2000E Ada Generation", "rtx-2000e-ada", None, None, id="smi-2000e-ada"),
    pytest.param(
        "NVIDIA RTX PRO 6000 Blackwell Server Edition",
        "rtx-pro-6000-blackwell",
        "server",
        None,
        id="smi-rtx-pro",
    ),
    pytest.param("NVIDIA GeForce RTX 3080 Ti Laptop GPU", "rtx-3080-ti", "laptop", None, id="smi-laptop"),
    pytest.param("NVIDIA GeForce RTX 4090 D", "rtx-4090-d", None, None, id="smi-4090-d"),
    pytest.param("Quadro RTX 6000", "rtx-6000", None, None, id="smi-quadro-rtx"),
    pytest.param("Quadro P4000", "p4000", None, None, id="smi-quadro-p"),
    pytest.param("NVIDIA TITAN RTX", "titan-rtx", None, None, id="smi-titan"),
    pytest.param("Tesla K80", "k80", None, None, id="smi-k80"),
    # Akash model tokens
    pytest.param("rtx3090", "rtx-3090", None, None, id="akash-3090"),
    pytest.param("rtx3090ti", "rtx-3090-ti", None, None, id="akash-3090ti"),
    pytest.param("rtxa6000", "rtx-a6000", None, None, id="akash-a6000"),
    pytest.param("rtx4000sffada", "rtx-4000-sff-ada", None, None, id="akash-4000sffada"),
]


@pytest.mark.parametrize(("text", "slug", "form_factor", "mig"), PARSE_CASES)
def test_parse(text: str, slug: str, form_factor: str | None, mig: str | None) -> None:
    gpu = parse_gpu_name(text)
    assert gpu.slug == slug
    assert normalize_gpu_name(text) == slug
    assert gpu.form_factor == form_factor
    assert gpu.mig == mig


@pytest.mark.parametrize(("text", "slug", "form_factor", "mig"), PARSE_CASES)
def test_slug_round_trips(text: str, slug: str, form_factor: str | None, mig: str | None) -> None:
    assert normalize_gpu_name(slug) == slug
    assert normalize_gpu_name(display_name(text)) == slug


def test_parsed_fields() -> None:
    assert parse_gpu_name("NVIDIA-A100-SXM4-80GB") == GpuName(
        family="a100", memory="80gb", form_factor="sxm4"
    )
    assert parse_gpu_name("Tesla-T4-SHARED") == GpuName(family="t4", shared=True)
    assert parse_gpu_name("A100-80GB").memory_gb == 80
    assert GpuName.parse("L40S").family == "l40s"
    assert str(parse_gpu_name("RTX 3090")) == "rtx-3090"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param("L40S", "L40", id="l40s-is-not-l40"),
        pytest.param("RTX 3090 Ti", "RTX 3090", id="ti-is-not-base"),
        pytest.param("RTX 6000 Ada", "Quadro RTX 6000", id="ada-is-not-turing"),
        pytest.param("RTX A6000", "RTX 6000 Ada", id="a6000-is-not-6000-ada"),
        pytest.param("A10", "A10G", id="a10-is-not-a10g"),
        pytest.param("H100", "GH200", id="h100-is-not-gh200"),
        pytest.param("A100-40GB", "A100-80GB", id="memory-variants"),
    ],
)
def test_distinct_cards(first: str, second: str) -> None:
    assert normalize_gpu_name(first) != normalize_gpu_name(second)


@pytest.mark.parametrize(
    ("requested", "node_label", "expected"),
    [
        pytest.param("A100", "NVIDIA-A100-SXM4-80GB", True, id="family-any-memory-80"),
        pytest.param("A100", "NVIDIA-A100-PCIE-40GB", True, id="family-any-memory-40"),
        pytest.param("a100", "NVIDIA-A100-80GB-PCIe", True, id="case-insensitive"),
        pytest.param("A100-80GB", "NVIDIA-A100-SXM4-80GB", True, id="memory-match"),
        pytest.param("A100-80GB", "NVIDIA-A100-80GB-PCIe", True, id="memory-match-pcie"),
        pytest.param("A100-80GB", "NVIDIA-A100-PCIE-40GB", False, id="memory-mismatch"),
        pytest.param("A100-80GB", "NVIDIA-A100", False, id="memory-unknown-on-node"),
        pytest.param("A100", "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", False, id="whole-gpu-not-mig-slice"),
        pytest.param("A100-MIG-1g.5gb", "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", True, id="mig-profile-match"),
        pytest.param(
            "A100-MIG-2g.10gb", "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", False, id="mig-profile-mismatch"
        ),
        pytest.param("A100-MIG-1g.5gb", "NVIDIA-A100-SXM4-40GB", False, id="mig-request-whole-node"),
        pytest.param("L40", "NVIDIA-L40S", False, id="l40-not-l40s"),
        pytest.param("L40S", "NVIDIA-L40", False, id="l40s-not-l40"),
        pytest.param("L40S", "NVIDIA-L40S", True, id="l40s"),
        pytest.param("L40S-48GB", "NVIDIA-L40S", True, id="single-memory-family"),
        pytest.param("RTX-3090", "NVIDIA-GeForce-RTX-3090", True, id="geforce"),
        pytest.param("RTX-3090", "NVIDIA-GeForce-RTX-3090-Ti", False, id="3090-not-ti"),
        pytest.param("RTX 3090 Ti", "NVIDIA-GeForce-RTX-3090-Ti", True, id="ti"),
        pytest.param("A6000", "NVIDIA-RTX-A6000", True, id="a6000-is-rtx-a6000"),
        pytest.param("RTX 6000 Ada", "NVIDIA-RTX-6000-Ada-Generation", True, id="ada"),
        pytest.param("T4", "Tesla-T4-SHARED", True, id="time-sliced"),
        pytest.param("H100-SXM", "NVIDIA-H100-SXM5-80GB", True, id="sxm-covers-sxm5"),
        pytest.param("H100-PCIe", "NVIDIA-H100-SXM5-80GB", False, id="form-factor-mismatch"),
        pytest.param("H100-PCIe", "NVIDIA-H100-80GB-HBM3", False, id="form-factor-unknown-on-node"),
        pytest.param("A100", "not a gpu", False, id="garbage-node-label"),
        pytest.param("A100", "", False, id="empty-node-label"),
    ],
)
def test_matches(requested: str, node_label: str, expected: bool) -> None:
    assert gpu_matches(requested, node_label) is expected


def test_matches_method() -> None:
    wanted = parse_gpu_name("A100-80GB")
    assert wanted.matches(parse_gpu_name("NVIDIA-A100-SXM4-80GB"))
    assert not wanted.matches(parse_gpu_name("NVIDIA-A100-SXM4-40GB"))


def test_bad_request_raises() -> None:
    with pytest.raises(ValueError, match="'banana'"):
        gpu_matches("banana", "NVIDIA-A100-SXM4-80GB")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("", "empty", id="empty"),
        pytest.param("   ", "empty", id="blank"),
        pytest.param("banana", "not a known NVIDIA GPU model", id="garbage"),
        pytest.param("MI300X", "not a known NVIDIA GPU model", id="amd-bare"),
        pytest.param("AMD Instinct MI300X", "not an NVIDIA GPU", id="amd"),
        pytest.param("Intel Arc A770", "not an NVIDIA GPU", id="intel"),
        pytest.param("NVIDIA", "names no GPU model", id="vendor-only"),
        pytest.param("GeForce", "names no GPU model", id="brand-only"),
        pytest.param("RTX", "model number after RTX", id="rtx-no-number"),
        pytest.param("A100 banana", "unexpected word 'banana'", id="trailing-garbage"),
        pytest.param("RTX 3090 Ultra", "unexpected word 'ultra'", id="unknown-suffix"),
        pytest.param("A100-MIG", "MIG must be followed by a profile", id="mig-without-profile"),
        pytest.param("A100-40GB-80GB", "two memory sizes", id="two-memory-sizes"),
        pytest.param("1g.5gb", "names no GPU model", id="mig-profile-only"),
        pytest.param("TITAN", "TITAN RTX", id="titan-without-variant"),
    ],
)
def test_bad_names(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_gpu_name(text)
    message = str(caught.value)
    assert repr(text) in message  # the input is named
    assert reason in message


def test_non_string_rejected() -> None:
    with pytest.raises(ValueError, match="expected a string"):
        parse_gpu_name(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "label"),
    [
        pytest.param("a100-80gb", "A100 80GB", id="a100-80gb"),
        pytest.param("NVIDIA-GeForce-RTX-3090", "RTX 3090", id="rtx-3090"),
        pytest.param("rtx-3090-ti", "RTX 3090 Ti", id="ti"),
        pytest.param("rtx-a6000", "RTX A6000", id="rtx-a6000"),
        pytest.param("NVIDIA-RTX-6000-Ada-Generation", "RTX 6000 Ada", id="ada"),
        pytest.param("rtx-4080-super", "RTX 4080 SUPER", id="super"),
        pytest.param("l40s", "L40S", id="l40s"),
        pytest.param("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", "A100 40GB MIG 1g.5gb", id="mig"),
    ],
)
def test_display_name(text: str, label: str) -> None:
    assert display_name(text) == label


@pytest.mark.parametrize(
    ("text", "model"),
    [
        pytest.param("A100", "a100", id="a100"),
        pytest.param("NVIDIA-A100-SXM4-80GB", "a100", id="a100-80gb"),
        pytest.param("H100", "h100", id="h100"),
        pytest.param("L40S", "l40s", id="l40s"),
        pytest.param("T4", "t4", id="t4"),
        pytest.param("RTX-3090", "rtx3090", id="rtx3090"),
        pytest.param("RTX 3090 Ti", "rtx3090ti", id="rtx3090ti"),
        pytest.param("NVIDIA-GeForce-RTX-4090", "rtx4090", id="rtx4090"),
        pytest.param("RTX A6000", "rtxa6000", id="rtxa6000"),
        pytest.param("NVIDIA RTX 4000 SFF Ada Generation", "rtx4000sffada", id="rtx4000sffada"),
    ],
)
def test_akash_model_name(text: str, model: str) -> None:
    assert akash_model_name(text) == model


def test_akash_labels() -> None:
    assert akash_labels("RTX-3090") == {AKASH + "rtx3090": "true"}
    assert akash_labels("A100-80GB") == {AKASH + "a100": "true", AKASH + "a100.ram.80Gi": "true"}
    assert akash_labels("NVIDIA-A100-SXM4-80GB") == {
        AKASH + "a100": "true",
        AKASH + "a100.ram.80Gi": "true",
        AKASH + "a100.interface.sxm": "true",
    }
    assert akash_labels("NVIDIA-H100-PCIe") == {AKASH + "h100": "true", AKASH + "h100.interface.pcie": "true"}


def test_akash_labels_reject_mig() -> None:
    with pytest.raises(ValueError, match="MIG"):
        akash_labels("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb")
