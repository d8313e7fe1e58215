# syntax=docker/dockerfile:1
# The rotator image: `rotator rotate --log-json`, as a non-root user, from a venv built with hashed pins.
#
#   docker build -t rotator:$(git rev-parse --short HEAD) .
#
# Pin the base by digest for reproducible builds, e.g.
#   docker buildx imagetools inspect python:3.11-slim   # -> sha256:...
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim@sha256:<digest> .
# requirements.lock holds hashes for CPython 3.11 wheels on linux x86_64 and aarch64 (Fargate X86_64 and ARM64).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --require-hashes --only-binary=:all: --no-deps -r requirements.lock
COPY pyproject.toml README.md* ./
COPY rotator/ rotator/
# templates/ goes into the wheel as the package data rotator/templates (pyproject.toml's package-dir).
COPY templates/ templates/
# The project itself, without dependencies (all of them come from requirements.lock above); then drop the
# installers, which the runtime never needs.
RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /tmp/dist . \
    && /opt/venv/bin/pip install --no-deps /tmp/dist/*.whl \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/pip uninstall --yes pip setuptools \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="rotator" \
      org.opencontainers.image.description="Zero-downtime blue/green rotation of database credentials"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 rotator \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin rotator
COPY --from=build /opt/venv /opt/venv
# The templates are in the package (--template sqlconf.php); /app/templates/<name>.j2 stays a valid path, as a
# link to them. The build fails if the installed package has none.
RUN builtin="$(python -c 'from rotator import templates_builtin as t; print(t.directory() or "")')" \
    && test -n "$builtin" \
    && mkdir -p /app \
    && ln -s "$builtin" /app/templates
WORKDIR /app
# Non-root by default. --fix-permissions (chown) needs root or the app's uid: run the task with user "0" or
# that uid (ContainerUser in deploy/cloudformation/rotation.yaml), see docs/running.md.
USER 10001:10001
ENTRYPOINT ["rotator", "rotate", "--log-json"]
