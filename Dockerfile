# syntax=docker/dockerfile:1
# fluxbot: multi-stage build; the final image has the virtualenv, git and kubectl, no build tools.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY commands ./commands
RUN pip install --no-compile .

FROM ${PYTHON_IMAGE} AS kubectl
ARG KUBECTL_VERSION=v1.32.4
ARG TARGETARCH=amd64
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl=7.88.* ca-certificates=20230311* \
 && curl -fsSLo /kubectl "https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/${TARGETARCH}/kubectl" \
 && echo "$(curl -fsSL "https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/${TARGETARCH}/kubectl.sha256")  /kubectl" \
    | sha256sum -c - \
 && chmod 0755 /kubectl \
 && rm -rf /var/lib/apt/lists/*

FROM ${PYTHON_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends git=1:2.39.* \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --home-dir /var/lib/fluxbot --no-create-home fluxbot \
 && install -d -o 10001 -g 10001 /var/lib/fluxbot
COPY --from=build /opt/venv /opt/venv
COPY --from=kubectl /kubectl /usr/local/bin/kubectl
# State (SQLite, git mirror) lives on a volume, so the root filesystem can be read-only.
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    HOME=/var/lib/fluxbot XDG_STATE_HOME=/var/lib/fluxbot
VOLUME ["/var/lib/fluxbot"]
USER 10001:10001
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/healthz', timeout=4)"]
ENTRYPOINT ["fluxbot"]
CMD ["serve", "--port", "3000", "--config", "/etc/fluxbot/fluxbot.yaml"]
