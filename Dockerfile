# syntax=docker/dockerfile:1
#
# The gateway's container image: `docker build -t url-signing-gateway .`
#
# Two stages. "build" has the compilers and pip and builds one virtualenv under /opt/venv; "runtime"
# copies only that virtualenv onto a fresh slim base, so no compiler, header or build cache ships.
# The runtime runs as UID 10001, writes nothing but /tmp (read-only root filesystems work), and the
# gateway is PID 1 through an exec-form ENTRYPOINT, so SIGTERM reaches uvicorn, which drains open
# requests (up to 10 s) before it exits.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# Every dependency ships wheels for linux amd64 and arm64 today; the compilers are here so that a
# dependency without a wheel on some platform still builds. This stage is thrown away.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Only what the package needs (.dockerignore lets nothing else into the context).
COPY pyproject.toml README.md ./
COPY gateway ./gateway
# A regular (non-editable) install; pip compiles the .pyc files now, so nothing is written later.
RUN pip install --upgrade pip \
 && pip install . \
 && pip check

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="url-signing-gateway" \
      org.opencontainers.image.description="Self-hosted URL-signing gateway: short-lived S3, GCS and local-disk URLs behind OIDC, vendor HMAC and network policy" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.documentation="docs/deploy.md" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"

# The official image strips the standard library's .pyc files; compile them once here, because a
# read-only root filesystem means Python could never cache them at run time (and must not try:
# PYTHONDONTWRITEBYTECODE). This only runs the interpreter; no build tool is installed.
RUN python -m compileall -q -j 0 /usr/local/lib/python3.11 \
 && groupadd --gid 10001 gateway \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
            --no-log-init gateway \
 && mkdir -p /srv/data /etc/gateway/policy

COPY --from=build /opt/venv /opt/venv

# HOME and TMPDIR point at /tmp, the one writable path (an emptyDir or tmpfs in production).
# GATEWAY_HOST=0.0.0.0: inside a container the gateway must listen beyond loopback; the embedded
# default policy (no GATEWAY_CONFIG) still only lets loopback clients in, so this stays safe.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8080 \
    GATEWAY_WORKERS=1 \
    GATEWAY_LOCAL_DIR=/srv/data

WORKDIR /srv
USER 10001:10001
EXPOSE 8080

# No curl in the slim image: the interpreter does the probe. Any non-2xx or connection error exits 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('GATEWAY_PORT', '8080') + '/healthz', timeout=4)"]

# Exec form: `gateway` (uvicorn) is PID 1 and receives SIGTERM directly; GATEWAY_WORKERS > 1 makes
# uvicorn supervise worker processes, and it forwards the signal to them.
ENTRYPOINT ["gateway"]
CMD ["serve"]
