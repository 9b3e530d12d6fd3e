# syntax=docker/dockerfile:1
# edgecl for linux/arm64 (Raspberry Pi 4/5) and linux/amd64, CPU only:
#   docker buildx bake                      (both platforms, see docker-bake.hcl)
#   docker build -t edgecl .                (this machine's platform)
# The Python environment is built by scripts/image-build-env.sh, the same script that
# scripts/image_env_check.sh runs in CI, so the image cannot drift from the code.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
# Dependencies first: this layer is rebuilt only when requirements change.
COPY requirements/ requirements/
COPY scripts/image-build-env.sh scripts/
RUN --mount=type=cache,target=/root/.cache/pip \
    sh scripts/image-build-env.sh deps /opt/venv
COPY pyproject.toml README.md ./
COPY edgecl/ edgecl/
COPY service/ service/
# Installs edgecl, runs `pip check` and copies the int8 backbone that ships in the package
# into /opt/edgecl/backbone: no torch in the image, no network or build at first boot.
RUN --mount=type=cache,target=/root/.cache/pip \
    sh scripts/image-build-env.sh project /opt/venv /opt/edgecl

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="edgecl" \
      org.opencontainers.image.description="Streaming edge continual-learning daemon" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed uid/gid so that a bind-mounted /data can be chowned to it on the host.
RUN groupadd --system --gid 10001 edgecl \
    && useradd --system --uid 10001 --gid edgecl --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin edgecl \
    && mkdir /data \
    && chown edgecl:edgecl /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/edgecl /opt/edgecl
COPY --chmod=0755 scripts/docker-entrypoint.sh /usr/local/bin/edgecl-entrypoint
# The root filesystem may be read-only (compose: read_only: true): bytecode was compiled at
# build time, state goes to /data, scratch to a tmpfs /tmp.
# MALLOC_ARENA_MAX=2: with glibc's default (up to 8 malloc arenas per core) the daemon's RSS
# grew 13 to 17% from 100k to 1M learned samples, with 2 arenas under 5% (BENCHMARKS.md,
# Memory soak).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    EDGECL_HOST=0.0.0.0 \
    EDGECL_PORT=8080 \
    EDGECL_DATA_DIR=/data \
    MALLOC_ARENA_MAX=2
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
# The daemon drains its queue and checkpoints on SIGTERM (EDGECL_SHUTDOWN_TIMEOUT_S); give it
# a longer grace period than that (compose: stop_grace_period: 30s).
STOPSIGNAL SIGTERM
# slim has no curl: ask through Python. Ready means backbone loaded and state restored.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:' + os.environ.get('EDGECL_PORT', '8080') + '/health/ready', timeout=4)"]
# The entrypoint copies the image's backbone into a new /data volume, then runs `edgecl`.
ENTRYPOINT ["edgecl-entrypoint"]
CMD ["serve"]
