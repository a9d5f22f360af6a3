# syntax=docker/dockerfile:1
#
# The GPU worker image: `sdxlpool worker` on torch with CUDA. The operator runs it as
#   command: [sdxlpool]  args: [worker, --model /models/..., --device cuda, ...]
# and the same image runs the `hf download` init containers of a huggingFace model source.
#
#   docker build -f docker/worker.Dockerfile -t sdxlpool-worker:0.1.0 .
#   docker run --gpus all --read-only --tmpfs /tmp -v /srv/sdxl:/models:ro -p 7860:7860 \
#     sdxlpool-worker:0.1.0 --model /models/base --host 0.0.0.0 --device cuda
#
# No weights are baked in: the operator mounts them read-only at /models (a PVC, or a cache
# volume the init containers fill). The pod runs as uid/gid 10001 on a read-only root
# filesystem with an emptyDir at /tmp, so everything written at runtime goes under /tmp.

# 1. Build the sdxlpool wheel (pure Python; nothing of this stage reaches the image).
FROM python:3.11.13-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sdxlpool ./sdxlpool
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# 2. The runtime. The CUDA `base` flavour (cudart + driver compatibility) is enough: PyTorch's
#    CUDA wheels bring their own cuBLAS/cuDNN/NCCL, so a `runtime`/`cudnn` base would ship them
#    twice (~3 GB). Its CUDA version matches the torch index below (12.4: driver >= 550, or
#    >= 525 with minor-version compatibility).
FROM nvidia/cuda:12.4.1-base-ubuntu22.04

ARG TORCH_VERSION=2.6.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu124

LABEL org.opencontainers.image.title="sdxlpool-worker" \
      org.opencontainers.image.description="AUTOMATIC1111-compatible SDXL worker (diffusers, CUDA) for sdxlpool" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/nvidia/cuda:12.4.1-base-ubuntu22.04"

# Python 3.11 from Ubuntu's own archive (universe); no compilers, no docs, no apt lists left.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3.11 python3.11-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 sdxlpool \
 && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin sdxlpool \
 && python3.11 -m venv /opt/sdxlpool

ENV PATH=/opt/sdxlpool/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

# torch with CUDA in its own layer: by far the largest, and it changes only with TORCH_VERSION.
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"

# sdxlpool and the rest of its dependencies from PyPI; the constraint keeps the CUDA torch above.
# huggingface_hub >= 1.0 provides the `hf` command the download init containers run.
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    echo "torch==${TORCH_VERSION}" > /tmp/constraints.txt \
 && pip install --no-cache-dir --constraint /tmp/constraints.txt /wheels/sdxlpool-*.whl "huggingface_hub>=1.0" \
 && rm /tmp/constraints.txt \
 && sdxlpool worker --help > /dev/null

# Runtime writes go to /tmp (an emptyDir in Kubernetes; --tmpfs /tmp with docker --read-only).
# HF_HUB_OFFLINE is deliberately not set here: `sdxlpool worker` defaults it to 1 itself (and the
# operator sets it on the worker container), while the `hf download` init containers share this
# image and must reach the Hub.
ENV HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    SDXLPOOL_CACHE=/tmp/sdxlpool \
    HF_HUB_DISABLE_TELEMETRY=1

WORKDIR /tmp
USER 10001:10001
EXPOSE 7860

# No HEALTHCHECK: Kubernetes ignores it and probes /readyz and /healthz itself (see
# sdxlpool/operator/desired/workers.py); a first start may take many minutes to load weights.
ENTRYPOINT ["sdxlpool", "worker"]
CMD ["--help"]
