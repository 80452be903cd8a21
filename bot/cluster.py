"""Flux objects on a cluster through the official `kubernetes` client (CustomObjectsApi).

Reads GitRepository, Kustomization and HelmRelease objects, watches them, and asks Flux to
reconcile now the way `flux reconcile ks --with-source` does: the `reconcile.fluxcd.io/requestedAt`
annotation on the source and the Kustomization. Every failure becomes a `ClusterError` whose
message says what is wrong (unreachable, CRD missing, object missing).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

KINDS = {
    "gitrepositories": ("source.toolkit.fluxcd.io", "v1", "GitRepository"),
    "kustomizations": ("kustomize.toolkit.fluxcd.io", "v1", "Kustomization"),
    "helmreleases": ("helm.toolkit.fluxcd.io", "v2", "HelmRelease"),
}
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"


class ClusterError(Exception):
    """A cluster could not be read or asked; the message is safe to show."""


@dataclass(frozen=True)
class ClusterConnection:
    """How to reach one cluster: a kubeconfig context, or the cluster fluxbot runs in."""

    context: str = ""
    kubeconfig: str = ""
    in_cluster: bool = False
    namespace: str = "flux-system"


class FluxCluster:
    def __init__(self, name: str, connection: ClusterConnection) -> None:
        self.name = name
        self.namespace = connection.namespace
        self._connection = connection
        self._api: client.CustomObjectsApi | None = None

    @property
    def api(self) -> client.CustomObjectsApi:
        if self._api is None:
            try:
                if self._connection.in_cluster:
                    configuration = client.Configuration()
                    config.load_incluster_config(client_configuration=configuration)
                    api_client = client.ApiClient(configuration)
                else:
                    api_client = config.new_client_from_config(config_file=self._connection.kubeconfig or None,
                                                               context=self._connection.context or None)
            except (config.ConfigException, OSError) as error:
                raise ClusterError(f"cannot load the connection to cluster `{self.name}`: {error}") from None
            self._api = client.CustomObjectsApi(api_client)
        return self._api

    def get(self, plural: str, name: str) -> dict[str, Any] | None:
        group, version, _ = KINDS[plural]
        try:
            return self._call(self.api.get_namespaced_custom_object, group, version, self.namespace, plural, name)
        except ClusterError as error:
            if "not found" in str(error):
                return None
            raise

    def list(self, plural: str, all_namespaces: bool = False) -> tuple[list[dict[str, Any]], str]:
        group, version, _ = KINDS[plural]
        if all_namespaces:
            answer = self._call(self.api.list_cluster_custom_object, group, version, plural)
        else:
            answer = self._call(self.api.list_namespaced_custom_object, group, version, self.namespace, plural)
        return answer.get("items", []), str((answer.get("metadata") or {}).get("resourceVersion", ""))

    def watch(self, plural: str, resource_version: str, timeout: int = 30, all_namespaces: bool = False
              ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event type, object) as the API server streams them, for at most `timeout` seconds."""
        group, version, _ = KINDS[plural]
        stream = watch.Watch()
        if all_namespaces:
            call, args = self.api.list_cluster_custom_object, (group, version, plural)
        else:
            call, args = self.api.list_namespaced_custom_object, (group, version, self.namespace, plural)
        try:
            for event in stream.stream(call, *args, resource_version=resource_version, timeout_seconds=timeout):
                yield event["type"], event["object"]
        except (ApiException, urllib3.exceptions.HTTPError) as error:
            raise ClusterError(self._explain(error, plural)) from None
        finally:
            stream.stop()

    def request_reconcile(self, source: str, kustomization: str) -> str:
        """Annotate the source and the Kustomization so Flux reconciles them now; the timestamp."""
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        patch = {"metadata": {"annotations": {REQUESTED_AT: stamp}}}
        for plural, name in (("gitrepositories", source), ("kustomizations", kustomization)):
            group, version, _ = KINDS[plural]
            self._call(self.api.patch_namespaced_custom_object, group, version, self.namespace, plural, name, patch)
        return stamp

    def _call(self, method: Any, *args: Any) -> Any:
        try:
            return method(*args, _request_timeout=15)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as error:
            raise ClusterError(self._explain(error, args[-2] if len(args) >= 2 else "")) from None

    def _explain(self, error: Exception, plural: str) -> str:
        if isinstance(error, ApiException):
            if error.status == 404:
                what = KINDS.get(plural, ("", "", str(plural)))[2] if plural in KINDS else "object"
                if "could not find the requested resource" in (error.body or ""):
                    return f"cluster `{self.name}` has no {what} CRD (is Flux installed there?)"
                return f"{what} not found on cluster `{self.name}`"
            if error.status in (401, 403):
                return f"cluster `{self.name}` refused fluxbot ({error.status}): check its RBAC (see the Helm chart's ClusterRole)"
            return f"cluster `{self.name}` answered {error.status} {error.reason}"
        return f"cluster `{self.name}` is unreachable ({error.__class__.__name__})"
