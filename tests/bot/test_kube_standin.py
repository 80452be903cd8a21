"""The Kubernetes stand-in held against the API concepts doc (kubernetes.io/docs/reference/using-api/
api-concepts/) and the CRD status subresource rules, through the real client where it can be."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bot.kube import flux
from bot.kube.client import ClusterConnection, ClusterError, Expired, FluxCluster, RetryPolicy
from tests.standins.kubernetes import KubernetesStandIn

KS = flux.KUSTOMIZATIONS
BASE = "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations"


def cluster(kube: KubernetesStandIn, tmp_path: Path) -> FluxCluster:
    path = kube.kubeconfig(tmp_path / "kubeconfig")
    return FluxCluster("c", ClusterConnection(kubeconfig=str(path), context="standin"),
                       retry=RetryPolicy(attempts=3, initial=0.01, longest=0.05), page_size=2)


def request(kube: KubernetesStandIn, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(kube.url + path, data=data, method=method,
                                 headers={"Content-Type": "application/merge-patch+json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def ks(name: str, **labels: str) -> dict:
    return {"metadata": {"name": name, "namespace": "flux-system", "labels": labels}, "spec": {"interval": "5m"}}


def test_generation_observed_generation_and_the_status_subresource(kube) -> None:
    kube.apply(KS, ks("a"))
    assert kube.get(KS, "a")["metadata"]["generation"] == 1
    request(kube, "PATCH", f"{BASE}/a", {"metadata": {"annotations": {"x": "1"}}, "status": {"observedGeneration": 9}})
    obj = kube.get(KS, "a")
    assert obj["metadata"]["generation"] == 1 and "status" not in obj  # metadata: no bump; status: ignored
    request(kube, "PATCH", f"{BASE}/a", {"spec": {"interval": "1m"}})
    assert kube.get(KS, "a")["metadata"]["generation"] == 2
    status, answer = request(kube, "PATCH", f"{BASE}/a/status", {"status": {"observedGeneration": 2}, "spec": {"x": 1}})
    assert status == 200 and answer["status"] == {"observedGeneration": 2} and "x" not in answer["spec"]
    assert answer["metadata"]["generation"] == 2


def test_label_selectors_paging_and_expired_continue_tokens(kube, tmp_path) -> None:
    for i in range(5):
        kube.apply(KS, ks(f"k{i}", **({flux.OWNER_NAME_LABEL: "infrastructure"} if i % 2 else {})))
    client = cluster(kube, tmp_path)
    items, version = client.list(KS)
    assert [o["metadata"]["name"] for o in items] == ["k0", "k1", "k2", "k3", "k4"] and version
    assert len(kube.list_requests(KS)) == 3  # pages of two
    owned, _ = client.list(KS, label_selector=f"{flux.OWNER_NAME_LABEL}=infrastructure")
    assert [o["metadata"]["name"] for o in owned] == ["k1", "k3"]
    assert [o["metadata"]["name"] for o in client.list(KS, label_selector=f"!{flux.OWNER_NAME_LABEL}")[0]] == [
        "k0", "k2", "k4"]
    status, first = request(kube, "GET", f"{BASE}?limit=2")
    kube.compact()
    status, answer = request(kube, "GET", f"{BASE}?limit=2&continue={first['metadata']['continue']}")
    assert (status, answer["reason"]) == (410, "Expired")


def test_watch_from_zero_bookmarks_deletes_and_410(kube, tmp_path) -> None:
    kube.apply(KS, ks("a"))
    client = cluster(kube, tmp_path)
    events = client.watch(KS, "0", timeout=2)
    kind, obj = next(events)
    assert (kind, obj["metadata"]["name"]) == ("ADDED", "a")  # resourceVersion=0: current state first
    kube.delete(KS, "a")
    assert next(events)[0] == "DELETED"
    kind, obj = next(events)  # nothing else happens: a bookmark says how far the stream got
    assert kind == "BOOKMARK" and int(obj["metadata"]["resourceVersion"]) == kube.version
    events.close()
    old = str(kube.version)
    kube.apply(KS, ks("b"))
    kube.compact()
    with pytest.raises(Expired):
        next(client.watch(KS, old, timeout=2))


def test_discovery_serves_the_installed_versions(tmp_path) -> None:
    for versions, expected in ((("v2beta2",), "v2beta2"), ((), None)):
        kube = KubernetesStandIn(helm_versions=versions)
        try:
            client = cluster(kube, tmp_path)
            assert client.version(flux.HELMRELEASES) == expected
            assert client.version(KS) == "v1"
            if expected is None:
                with pytest.raises(ClusterError, match="serves no HelmRelease API"):
                    client.list(flux.HELMRELEASES)
        finally:
            kube.stop()


def test_errors_on_demand(kube, tmp_path) -> None:
    kube.apply(KS, ks("a"))
    client = cluster(kube, tmp_path)
    kube.fail(429, times=1)
    kube.fail(503, times=1)
    assert client.get(KS, "a")["metadata"]["name"] == "a"  # retried
    kube.fail(429)
    status, answer = request(kube, "GET", BASE)
    assert (status, answer["reason"]) == (429, "TooManyRequests")
    for code in (401, 403):
        kube.fail(code)
        with pytest.raises(ClusterError, match=f"refused fluxbot \\({code}"):
            client.get(KS, "a")


def test_a_silent_watch_ends_at_the_client_side_timeout_and_the_informer_goes_on(kube, tmp_path) -> None:
    from bot.kube.informers import Informer

    kube.apply(KS, ks("a"))
    path = kube.kubeconfig(tmp_path / "kubeconfig")
    client = FluxCluster("c", ClusterConnection(kubeconfig=str(path), context="standin"),
                         retry=RetryPolicy(attempts=2, initial=0.01, longest=0.05), watch_grace=0.3)
    informer = Informer(client, KS, lambda: None, watch_timeout=1, backoff=0.01, longest=0.05).start()
    try:
        assert informer.synced.wait(5)
        kube.stall_watches()  # the peer goes silent: no events, no end of stream
        kube.apply(KS, ks("b"))
        deadline = time.monotonic() + 10
        while "unreachable" not in informer.error and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "unreachable" in informer.error  # the read timeout ended the silent stream
        kube.stall_watches(False)
        while ("flux-system", "b") not in informer.items() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ("flux-system", "b") in informer.items()
    finally:
        informer.stop()
        kube.stall_watches(False)


def test_an_error_event_ends_the_watch_with_its_status(kube, tmp_path) -> None:
    kube.apply(KS, ks("a"))
    client = cluster(kube, tmp_path)
    events = client.watch(KS, "0", timeout=5)
    assert next(events)[0] == "ADDED"
    kube.watch_error(500, "etcdserver: request timed out")
    with pytest.raises(ClusterError) as raised:
        next(events)
    assert raised.value.status == 500 and raised.value.transient


def test_stopping_an_informer_ends_its_thread_at_once_even_inside_a_long_watch(kube, tmp_path) -> None:
    """A stopped informer used to sit in its watch until the server's timeout (60 s in production):
    threads outlived their bot, kept polling, and wrote to a closed stderr at interpreter exit."""
    from bot.kube.informers import Informer

    kube.apply(KS, ks("a"))
    client = cluster(kube, tmp_path)
    informer = Informer(client, KS, lambda: None, watch_timeout=60).start()
    assert informer.synced.wait(5)
    kube.flux.wait_until(lambda: kube.open_watches >= 1, timeout=5)
    kube.stall_watches()  # not even a bookmark arrives that would let the loop notice the stop
    try:
        informer.stop()
        assert informer.join(2.0), "the informer is still inside its watch"
    finally:
        kube.stall_watches(False)


def test_a_closed_cluster_cuts_the_retry_waits_of_a_failing_call(kube, tmp_path) -> None:
    import threading

    path = kube.kubeconfig(tmp_path / "kubeconfig")
    client = FluxCluster("c", ClusterConnection(kubeconfig=str(path), context="standin"),
                         retry=RetryPolicy(attempts=10, initial=5.0, longest=5.0))
    client.version(KS)  # discovery answered before the outage
    kube.fail(503, times=100)
    outcome: list[Exception] = []

    def listing() -> None:
        try:
            client.list(KS)
        except ClusterError as error:
            outcome.append(error)

    call = threading.Thread(target=listing)
    call.start()
    time.sleep(0.3)  # inside its first 5 s backoff
    client.close()
    call.join(2.0)
    assert not call.is_alive(), "the retry wait was not cut"
    assert outcome and "stopping" in str(outcome[0])
