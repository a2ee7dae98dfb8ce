# syntax=docker/dockerfile:1
#
# The gateway's container image: `docker build -t url-signing-gateway .`
#
# Two stages. "build" installs the gateway into one virtualenv under /opt/venv exactly as uv.lock pins it
# (scripts/install-image: the lock's runtime set, wheels only, every sha256 checked, no resolver run;
# then the gateway's own wheel and a dependency check) and writes the CycloneDX SBOM of that virtualenv;
# "runtime" copies only the virtualenv and the SBOM onto a fresh slim base, so no build tool or cache
# ships. The runtime runs as UID 10001, writes nothing but /tmp (read-only root filesystems work), and
# the gateway is PID 1 through an exec-form ENTRYPOINT, so SIGTERM reaches uvicorn, which drains open
# requests (up to 10 s) before it exits.
#
# `make image` builds it with the version and the git revision (`gateway --version` prints both).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_NO_CACHE=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the install needs (.dockerignore lets nothing else into the context).
COPY scripts/uv scripts/uv-requirements.txt scripts/install-image scripts/sbom ./scripts/
COPY pyproject.toml uv.lock README.md ./
COPY gateway ./gateway
ARG REVISION=unknown
# uv itself comes from scripts/uv-requirements.txt (pip --require-hashes); everything else from uv.lock.
RUN scripts/install-image /opt/venv "${REVISION}" \
 && scripts/sbom /opt/venv /src/sbom.cdx.json

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
# What is inside, for reviewers and scanners: docs/dependencies.md.
COPY --from=build /src/sbom.cdx.json /usr/share/doc/url-signing-gateway/sbom.cdx.json

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
