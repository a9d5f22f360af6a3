"""The one module that talks to the Kubernetes API (kopf's own watching aside).

A thin layer over the official client's `DynamicClient`: plain dict manifests in and out, any kind
by apiVersion + kind (discovered once, then cached), JSON merge patches (lists replaced whole, so a
patch makes a child *exactly* what the operator wants, and works the same on every API server and
on the test emulator). Errors keep their HTTP status so callers can tell "not there" (404), "try
again" (409, 429, 5xx, connection) and "my bug" (other 4xx) apart.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from sdxlpool.errors import UpstreamError

__all__ = ["KubeClient", "KubeError", "client_configuration", "connect"]

_MERGE_PATCH = "application/merge-patch+json"


class KubeError(UpstreamError):
    """An API call failed. `status` is the HTTP status (0 when no answer came back)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.status in (0, 409, 429) or self.status >= 500


class KubeClient:
    def __init__(self, api_client: Any) -> None:
        from kubernetes.dynamic import DynamicClient

        self._dynamic = DynamicClient(api_client)
        self._resources: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()  # discovery cache; the client itself is thread-safe

    def _resource(self, api_version: str, kind: str) -> Any:
        key = (api_version, kind)
        with self._lock:
            if key not in self._resources:
                self._resources[key] = self._call(self._dynamic.resources.get, raw=True,
                                                  api_version=api_version, kind=kind)
            return self._resources[key]

    def close(self) -> None:
        """Close the connections (a watch blocked in another thread then ends at once)."""
        self._dynamic.client.close()

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            return self._call(self._resource(api_version, kind).get, name=name, namespace=namespace)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, api_version: str, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every object of a kind (in a namespace). Filter labels yourself: not every server does."""
        return self._call(self._resource(api_version, kind).get, namespace=namespace).get("items", [])

    def watch(self, api_version: str, kind: str, namespace: str | None = None,
              timeout: int = 60) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event type, object) pairs: first every existing object as ADDED, then changes, for up
        to `timeout` seconds (the server ends the stream; call again to go on)."""
        resource = self._resource(api_version, kind)
        try:
            for event in self._dynamic.watch(resource, namespace=namespace, timeout=timeout):
                raw = event.get("raw_object") or event["object"].to_dict()
                yield event["type"], raw
        except Exception as exc:  # noqa: BLE001 - the client raises many kinds; callers retry on KubeError
            raise KubeError(getattr(exc, "status", 0) or 0, f"watch of {kind} failed: {exc}") from exc

    def create(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        resource = self._resource(manifest["apiVersion"], manifest["kind"])
        namespace = manifest.get("metadata", {}).get("namespace")
        return self._call(resource.create, body=dict(manifest), namespace=namespace)

    def patch(self, api_version: str, kind: str, name: str, patch: Mapping[str, Any],
              namespace: str | None = None, *, status: bool = False) -> dict[str, Any]:
        resource = self._resource(api_version, kind)
        if status:
            resource = resource.subresources["status"]
        return self._call(resource.patch, body=dict(patch), name=name, namespace=namespace, content_type=_MERGE_PATCH)

    def scale(self, api_version: str, kind: str, name: str, namespace: str | None, replicas: int) -> dict[str, Any]:
        """Set `replicas` through the object's scale subresource (what `kubectl scale` and the
        HorizontalPodAutoscaler write): a merge patch of the Scale's spec.replicas, nothing else of
        the object touched. Returns the Scale the server answers with."""
        resource = self._resource(api_version, kind).subresources["scale"]
        return self._call(resource.patch, body={"spec": {"replicas": int(replicas)}}, name=name, namespace=namespace,
                          content_type=_MERGE_PATCH)

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete (children go with it: background propagation). False if it was already gone."""
        try:
            self._call(self._resource(api_version, kind).delete, name=name, namespace=namespace,
                       body={"propagationPolicy": "Background"})
            return True
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise

    @staticmethod
    def _call(method: Any, *, raw: bool = False, **kwargs: Any) -> Any:
        from kubernetes.dynamic.exceptions import DynamicApiError, ResourceNotFoundError
        from urllib3.exceptions import HTTPError

        try:
            result = method(**kwargs)
        except ResourceNotFoundError as exc:  # discovery: the API server does not serve this kind
            raise KubeError(404, str(exc)) from exc
        except DynamicApiError as exc:
            raise KubeError(exc.status or 0, _reason(exc)) from exc
        except (HTTPError, OSError) as exc:
            raise KubeError(0, f"no answer from the API server: {exc}") from exc
        return result if raw else result.to_dict()


def _reason(exc: Any) -> str:
    try:
        return json.loads(exc.body).get("message") or exc.reason
    except (TypeError, ValueError, AttributeError):
        return str(getattr(exc, "reason", exc))


def connect(kubeconfig: str | None = None) -> KubeClient:
    """A client with `client_configuration(kubeconfig)`'s credentials."""
    import kubernetes

    return KubeClient(kubernetes.client.ApiClient(client_configuration(kubeconfig)))


def client_configuration(kubeconfig: str | None = None) -> Any:
    """The official client's Configuration: this kubeconfig file when given (the caller's settings
    read $KUBECONFIG and friends), else in-cluster credentials in a pod, else the library's default
    kubeconfig ($KUBECONFIG as the process started with, or ~/.kube/config)."""
    import kubernetes

    configuration = kubernetes.client.Configuration()
    try:
        if kubeconfig is not None:
            raise kubernetes.config.ConfigException("kubeconfig given")
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return configuration
