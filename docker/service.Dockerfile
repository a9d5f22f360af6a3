# syntax=docker/dockerfile:1
#
# The gateway and operator image: `sdxlpool gateway` and `sdxlpool operator`, no torch.
#
#   docker build -f docker/service.Dockerfile -t sdxlpool:0.1.0 .
#   docker run --read-only --tmpfs /tmp -v $PWD/backends.yaml:/etc/sdxlpool/backends.yaml:ro \
#     -p 8080:8080 sdxlpool:0.1.0 gateway --backends /etc/sdxlpool/backends.yaml --host 0.0.0.0
#   (in a cluster) sdxlpool operator | sdxlpool gateway --kubernetes --namespace NS --pool NAME ...
#
# pyproject.toml makes torch, diffusers and the rest of the worker's stack hard dependencies of
# the one distribution, so `pip install sdxlpool` would pull GBs these commands never import
# (cli.py imports each sub-command lazily). Hence: the wheel with --no-deps, plus only
# docker/service-requirements.txt (a subset of pyproject's dependencies; tests check it).

# 1. Build the sdxlpool wheel (pure Python).
FROM python:3.11.13-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sdxlpool ./sdxlpool
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# 2. A virtual environment with the service requirements and the wheel.
FROM python:3.11.13-slim-bookworm AS venv
COPY docker/service-requirements.txt /tmp/service-requirements.txt
RUN python -m venv /opt/sdxlpool \
 && /opt/sdxlpool/bin/pip install --no-cache-dir --disable-pip-version-check -r /tmp/service-requirements.txt
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    /opt/sdxlpool/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps /wheels/sdxlpool-*.whl \
 && /opt/sdxlpool/bin/sdxlpool gateway --help > /dev/null \
 && /opt/sdxlpool/bin/sdxlpool operator --help > /dev/null

# 3. The runtime: the same slim Python, the venv, a non-root user.
FROM python:3.11.13-slim-bookworm

LABEL org.opencontainers.image.title="sdxlpool" \
      org.opencontainers.image.description="sdxlpool gateway and operator (no torch)" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.13-slim-bookworm"

RUN groupadd --gid 10001 sdxlpool \
 && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin sdxlpool

COPY --from=venv /opt/sdxlpool /opt/sdxlpool

# Pods run with a read-only root filesystem and an emptyDir at /tmp.
ENV PATH=/opt/sdxlpool/bin:$PATH \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    PYTHONUNBUFFERED=1

WORKDIR /tmp
USER 10001:10001
# The gateway's port (the operator's kopf liveness endpoint is configured by --liveness).
EXPOSE 8080

# No HEALTHCHECK: Kubernetes probes /healthz and /readyz itself.
ENTRYPOINT ["sdxlpool"]
CMD ["--help"]
