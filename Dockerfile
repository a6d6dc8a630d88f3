# The lora-controller image: `lora-controller run` as a non-root user, made for a read-only root
# filesystem (it writes only to /tmp and to the adapter store, both volumes in the Helm chart).
#
#   docker build -t REGISTRY/lora-controller:0.1.0 .
#   docker run --read-only --tmpfs /tmp -v ~/.kube:/kube:ro REGISTRY/lora-controller:0.1.0 --kubeconfig /kube/config
#
# The base image is pinned by tag; pin it by digest for reproducible builds:
#   docker build --build-arg PYTHON_IMAGE=python:3.12.11-slim-bookworm@sha256:... .
ARG PYTHON_IMAGE=python:3.12.11-slim-bookworm

# -- build: a virtualenv holding the package and its dependencies (wheels only, no compiler).
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/lora-controller
COPY pyproject.toml README.md ./
COPY lora_controller ./lora_controller
# Build the wheel (setuptools may come from source), then install it from binary wheels only. The
# wheel leaves out the vLLM simulator and the dev environment (pyproject.toml): the last check
# fails the build if either reached the virtualenv.
RUN /opt/lora-controller/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && /opt/lora-controller/bin/pip install --no-cache-dir --only-binary=:all: /wheels/*.whl \
    && /opt/lora-controller/bin/python -m compileall -q /opt/lora-controller/lib \
    && /opt/lora-controller/bin/lora-controller --version \
    && /opt/lora-controller/bin/python -I -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in ('lora_controller.simulator', 'lora_controller.devenv', 'numpy')))"

# -- runtime: the virtualenv on the same base, nothing else.
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="lora-controller" \
      org.opencontainers.image.description="Places, loads and keeps LoRA adapters on vLLM pods, from LoraAdapter resources." \
      org.opencontainers.image.source="https://github.com/lora-controller/lora-controller" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 65532 lora \
    && useradd --system --no-log-init --uid 65532 --gid 65532 --home-dir /nonexistent \
       --shell /usr/sbin/nologin lora
COPY --from=build /opt/lora-controller /opt/lora-controller
# HOME and HF_HOME point at /tmp: the only writable place besides the adapter store.
ENV PATH=/opt/lora-controller/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    HF_HOME=/tmp/huggingface \
    LORA_CONTROLLER_LOG_FORMAT=json
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["lora-controller", "run"]
