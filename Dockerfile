# syntax=docker/dockerfile:1
# fluxbot: multi-stage build; the final image has the virtualenv, git, ssh and kubectl, no build tools.
# Pin the base by digest for reproducible builds (docker buildx imagetools inspect python:3.11-slim-bookworm):
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY commands ./commands
# Bytecode is compiled here, checked by hash not mtime: on a read-only root nothing can write it,
# and imports without it took 5-9 s at every start.
RUN pip install . \
 && python -m compileall -q --invalidation-mode unchecked-hash /opt/venv/lib

FROM ${PYTHON_IMAGE} AS kubectl
ARG KUBECTL_VERSION=v1.32.4
ARG TARGETARCH=amd64
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The python base already carries ca-certificates (a pin here would downgrade it, which apt refuses).
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl=7.88.* \
 && curl -fsSLo /kubectl "https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/${TARGETARCH}/kubectl" \
 && echo "$(curl -fsSL "https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/${TARGETARCH}/kubectl.sha256")  /kubectl" \
    | sha256sum -c - \
 && chmod 0755 /kubectl \
 && rm -rf /var/lib/apt/lists/*

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="fluxbot" \
      org.opencontainers.image.description="Slack ChatOps for Flux GitOps mono-repos" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/example/fluxbot"
# openssh-client: for ssh:// and git@ clone URLs (forge.git_url).
RUN apt-get update \
 && apt-get install -y --no-install-recommends git=1:2.39.* openssh-client=1:9.2* \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --home-dir /var/lib/fluxbot --no-create-home fluxbot \
 && install -d -o 10001 -g 10001 /var/lib/fluxbot
COPY --from=build /opt/venv /opt/venv
COPY --from=kubectl /kubectl /usr/local/bin/kubectl
# State (SQLite, git mirror) lives on a volume, so the root filesystem can be read-only. fluxbot
# handles SIGTERM itself (it runs as PID 1): it stops listening, drains acked work, then exits.
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    HOME=/var/lib/fluxbot XDG_STATE_HOME=/var/lib/fluxbot
VOLUME ["/var/lib/fluxbot"]
USER 10001:10001
EXPOSE 3000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/healthz', timeout=4)"]
ENTRYPOINT ["fluxbot"]
CMD ["serve", "--port", "3000", "--config", "/etc/fluxbot/fluxbot.yaml"]
