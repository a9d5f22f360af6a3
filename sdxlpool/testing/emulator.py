"""kmock's KubernetesEmulator with the gaps filled that a kopf operator runs into.

kmock 0.8 keeps objects as plain JSON and merges patches into them, which is most of what an
operator needs. What it leaves out, and this subclass adds (CONTRIBUTING.md, "How the tests are organised"):

* metadata a real API server stamps: a name from generateName, uid, resourceVersion (bumped on every write),
  creationTimestamp, generation (bumped when a write touches `spec`), namespace;
* garbage collection: deleting an object deletes, transitively, every object whose
  ownerReferences name its uid, and an object created with only dead owners is deleted at once,
  as the real controller-manager does (in the background);
* discovery of the resources used by sdxlpool, with the SDXLPool CRD declared;
* the bare `/api/v1/namespaces` collection, which kmock cannot parse;
* watches that miss nothing: kmock subscribes a watch to changes only after sending it the
  existing objects, and loses what happens in between; and a watch started from a list's
  resourceVersion hears of the objects deleted since (a real server replays them);
* `kind` and `apiVersion` on list responses;
* the scale subresource (`.../deployments/NAME/scale`) as a real server serves it: an
  `autoscaling/v1` Scale in and out; a patch sets only `spec.replicas` (and bumps the
  generation, as any spec change does), whatever else it carries.

Left as it is, on purpose: label and field selectors are ignored (code must filter client-side),
PUT is unsupported (code patches), and there is no admission, defaulting or scheduling.

`EmulatorThread` runs it on 127.0.0.1 in a background thread with its own event loop and writes a
kubeconfig pointing at it, so the operator under test logs in exactly as it would in a cluster.
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import kmock
import yaml
from kmock._internal import enums  # kmock's action enum; not re-exported at the top level

RESOURCES: dict[str, dict[str, Any]] = {
    # "group/version/plural": discovery info
    "sdxlpool.dev/v1alpha1/sdxlpools": {"kind": "SDXLPool", "namespaced": True, "singular": "sdxlpool",
                                        "shortnames": {"sdxl"}, "subresources": {"status"}},
    "apps/v1/deployments": {"kind": "Deployment", "namespaced": True, "singular": "deployment",
                            "subresources": {"status", "scale"}},
    "v1/services": {"kind": "Service", "namespaced": True, "singular": "service"},
    "v1/serviceaccounts": {"kind": "ServiceAccount", "namespaced": True, "singular": "serviceaccount"},
    "v1/pods": {"kind": "Pod", "namespaced": True, "singular": "pod", "subresources": {"status"}},
    "v1/nodes": {"kind": "Node", "namespaced": False, "singular": "node"},
    "v1/namespaces": {"kind": "Namespace", "namespaced": False, "singular": "namespace"},
    "v1/events": {"kind": "Event", "namespaced": True, "singular": "event"},
    "events.k8s.io/v1/events": {"kind": "Event", "namespaced": True, "singular": "event"},
    "rbac.authorization.k8s.io/v1/roles": {"kind": "Role", "namespaced": True, "singular": "role"},
    "rbac.authorization.k8s.io/v1/rolebindings": {"kind": "RoleBinding", "namespaced": True,
                                                  "singular": "rolebinding"},
    "networking.k8s.io/v1/networkpolicies": {"kind": "NetworkPolicy", "namespaced": True,
                                             "singular": "networkpolicy"},
    "policy/v1/poddisruptionbudgets": {"kind": "PodDisruptionBudget", "namespaced": True,
                                       "singular": "poddisruptionbudget", "subresources": {"status"}},
    "coordination.k8s.io/v1/leases": {"kind": "Lease", "namespaced": True, "singular": "lease"},
    "kopf.dev/v1/clusterkopfpeerings": {"kind": "ClusterKopfPeering", "namespaced": False,
                                        "singular": "clusterkopfpeering"},
    "kopf.dev/v1/kopfpeerings": {"kind": "KopfPeering", "namespaced": True, "singular": "kopfpeering"},
}
_VERBS = {"get", "list", "watch", "create", "patch", "delete"}


class GapFillingEmulator(kmock.KubernetesEmulator):
    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._versions = itertools.count(1)
        self._latest = 0  # the newest resourceVersion handed out
        # (resource, namespace, name) -> (resourceVersion of the deletion, last body): what a watch
        # started from an older resourceVersion must still hear about.
        self._tombstones: dict[tuple[Any, Any, Any], tuple[int, dict[str, Any]]] = {}
        self._extra_namespaces: set[str] = {"default"}
        for key, info in RESOURCES.items():
            self.resources[key] = kmock.ResourceInfo(verbs=_VERBS, **info)

    async def __call__(self, raw_request: Any) -> Any:
        # kmock cannot parse the bare namespaces collection URL (it reads "namespaces" as the start
        # of a namespaced path): answer it here, from the namespaces its objects live in.
        if raw_request.path.rstrip("/") == "/api/v1/namespaces":
            return await self._namespaces(raw_request)
        return await super().__call__(raw_request)

    async def _namespaces(self, raw_request: Any) -> Any:
        import aiohttp.web

        if raw_request.method == "POST":
            body = await raw_request.json()
            name = body.get("metadata", {}).get("name", "")
            self._extra_namespaces.add(name)
            return aiohttp.web.json_response({**body, "kind": "Namespace", "apiVersion": "v1"}, status=201)
        names = self._extra_namespaces | {ns for (_r, ns, _n), obj in self.objects.items() if ns and not obj.deleted}
        items = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in sorted(names)]
        return aiohttp.web.json_response({"apiVersion": "v1", "kind": "NamespaceList",
                                          "metadata": {"resourceVersion": "1"}, "items": items})

    async def _serve_list(self, request: Any) -> Any:
        # Real list responses say what they list; typed and dynamic clients rely on it.
        payload = await super()._serve_list(request)
        assert isinstance(payload, dict)  # kmock answers a list with the JSON object it builds
        payload["metadata"] = {"resourceVersion": str(self._latest)}  # where a watch goes on from
        resource = request.resource
        group_version = f"{resource.group}/{resource.version}" if resource.group else resource.version
        info = RESOURCES.get(f"{group_version}/{resource.plural}", {})
        return {"apiVersion": group_version, "kind": f"{info.get('kind', 'Object')}List", **payload}

    # kmock's own filters for a list or watch, private (name-mangled, hence invisible to type checkers):
    # a watch that replays objects must match them exactly as kmock's list does.
    def _kmock_check(self, *args: Any, **kwargs: Any) -> bool:
        return self._KubernetesEmulator__check(*args, **kwargs)  # type: ignore[attr-defined]

    def _kmock_objects(self, *args: Any, **kwargs: Any) -> Any:
        return self._KubernetesEmulator__get_objs(*args, **kwargs)  # type: ignore[attr-defined]

    async def _serve_watch(self, request: Any) -> Any:
        # kmock sends a new watch the existing objects first and subscribes it to changes only
        # afterwards: a change in between (a child the operator deletes while its other watches
        # start) is lost for good, and the client's cache keeps a deleted object forever. A real
        # API server replays it (watch from the list's resourceVersion). Subscribe first, under
        # the lock every write takes, then take the snapshot.
        # Objects deleted since the resourceVersion the watch starts from (a list's) are told as
        # DELETED first, or the client would keep them.
        yield b""
        bus = self._buses[request.resource]
        since = str(request.params.get("resourceVersion") or "")
        async with self._lock:
            marker = await bus.mark()
            events = [{"type": "DELETED", "object": raw}
                      for (resource, namespace, name), (version, raw) in sorted(self._tombstones.items(),
                                                                                 key=lambda item: item[1][0])
                      if since.isdigit() and version > int(since) and resource == request.resource
                      and self._kmock_check(request, resource, namespace, name, strict=False)]
            existing = [obj for obj in self._kmock_objects(request, strict=False) if not obj.deleted]
            events += [{"type": "ADDED", "object": obj.raw} for obj in existing]
        try:
            for event in events:
                yield event
            async for event in bus.stream(since=marker):
                meta = event.get("object", {}).get("metadata", {})
                if self._kmock_check(request, request.resource, meta.get("namespace"),
                                                   meta.get("name"), strict=False):
                    yield event
        finally:
            await bus.unmark(marker)

    async def _handle(self, request: Any) -> Any:
        if (request.resource is not None and request.action == enums.action.UPDATE
                and isinstance(request.data, list) and not self._patch_tests_pass(request)):
            # kmock answers a failed JSON-patch "test" with 500, which a client retries as it is
            # (kopf: 9 times, over a minute); a real API server says 422, and kopf patches again
            # from a fresher body.
            import aiohttp.web

            return aiohttp.web.json_response({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                                              "reason": "Invalid", "code": 422,
                                              "message": "the JSON patch's test operation failed"}, status=422)
        scale = request.resource is not None and request.subresource == "scale" and request.name is not None
        if scale and request.action == enums.action.UPDATE and isinstance(request.data, dict):
            replicas = (request.data.get("spec") or {}).get("replicas")
            request.data.clear()  # a Scale carries nothing else of the object
            if replicas is not None:
                request.data["spec"] = {"replicas": replicas}
        deleted_uid = None
        deleted_raw: dict[str, Any] | None = None
        if request.resource is not None:
            if request.action == enums.action.CREATE and isinstance(request.data, dict):
                self._stamp_new(request)
            elif request.action == enums.action.UPDATE and isinstance(request.data, dict):
                self._stamp_update(request)
            elif request.action == enums.action.DELETE and request.name is not None:
                stored = self._find(request)
                deleted_uid = stored.get("metadata", {}).get("uid") if stored is not None else None
                deleted_raw = stored.raw if stored is not None else None
        response = await super()._handle(request)
        if deleted_uid is not None and response.status < 300:
            if self._find(request) is None and deleted_raw is not None:  # gone, not just marked (finalizers)
                self._bury((request.resource, request.namespace, request.name), deleted_raw)
            await self._collect_garbage(deleted_uid)
        if request.action == enums.action.CREATE and response.status < 300 and isinstance(request.data, dict):
            await self._collect_orphan(request.data)
        if scale and response.status < 300 and (stored := self._find(request)) is not None:
            import aiohttp.web

            return aiohttp.web.json_response(_scale_of(stored.raw))
        return response

    async def _collect_orphan(self, created: dict[str, Any]) -> None:
        """An object created with an owner that no longer exists is garbage at once, as in a cluster."""
        owners = {ref.get("uid") for ref in created.get("metadata", {}).get("ownerReferences", [])}
        if not owners:
            return
        async with self._lock:
            alive = {obj.get("metadata", {}).get("uid") for obj in self.objects.values() if not obj.deleted}
        if not owners & alive:
            await self._collect_garbage_of(created["metadata"]["uid"], only_self=True)

    def _find(self, request: Any) -> Any:
        key = (request.resource, request.namespace, request.name)
        obj = self.objects.get(key) if hasattr(self.objects, "get") else None
        if obj is None:
            for (resource, namespace, name), candidate in self.objects.items():
                if (resource, namespace, name) == key:
                    obj = candidate
                    break
        return None if obj is None or obj.deleted else obj

    def _patch_tests_pass(self, request: Any) -> bool:
        stored = self._find(request)
        if stored is None:
            return True  # kmock says 404
        for op in request.data:
            if isinstance(op, dict) and op.get("op") == "test":
                value: Any = stored.raw
                for token in str(op.get("path", "")).split("/")[1:]:
                    token = token.replace("~1", "/").replace("~0", "~")
                    value = value.get(token) if isinstance(value, dict) else None
                if value != op.get("value"):
                    return False
        return True

    def _next_version(self) -> str:
        self._latest = next(self._versions)
        return str(self._latest)

    def _bury(self, key: tuple[Any, Any, Any], raw: dict[str, Any]) -> None:
        self._tombstones[key] = (int(self._next_version()), raw)

    def _stamp_new(self, request: Any) -> None:
        meta = request.data.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):  # kopf's Events: a fresh name each
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:8]}"
        meta.setdefault("uid", str(uuid.uuid4()))
        meta["resourceVersion"] = self._next_version()
        meta.setdefault("creationTimestamp", _now())
        meta.setdefault("generation", 1)
        if request.namespace and not meta.get("namespace"):
            meta["namespace"] = request.namespace

    def _stamp_update(self, request: Any) -> None:
        meta = request.data.setdefault("metadata", {})
        if not isinstance(meta, dict):
            return
        meta["resourceVersion"] = self._next_version()
        stored = self._find(request)
        if stored is not None and "spec" in request.data and request.subresource in (None, "scale"):
            # As a real API server: only a patch that changes the spec makes a new generation.
            before = stored.raw.get("spec")
            if _merge_patched(before, request.data["spec"]) != before:
                meta["generation"] = int(stored.get("metadata", {}).get("generation", 1)) + 1

    async def _collect_garbage_of(self, uid: str, *, only_self: bool) -> None:
        async with self._lock:
            for (resource, _namespace, _name), obj in self.objects.items():
                if not obj.deleted and obj.get("metadata", {}).get("uid") == uid:
                    raw = obj.raw
                    obj.delete()
                    self._bury((resource, _namespace, _name), raw)
                    await self._buses[resource].put({"type": "DELETED", "object": raw})
        if not only_self:
            await self._collect_garbage(uid)

    async def _collect_garbage(self, owner_uid: str) -> None:
        """Delete every dependant of `owner_uid`, then theirs (foreground order does not matter here)."""
        pending = [owner_uid]
        while pending:
            uid = pending.pop()
            async with self._lock:
                victims = [
                    (key, obj) for key, obj in self.objects.items()
                    if not obj.deleted and any(ref.get("uid") == uid
                                               for ref in obj.get("metadata", {}).get("ownerReferences", []))
                ]
                for (resource, namespace, name), obj in victims:
                    raw = obj.raw
                    obj.delete()
                    self._bury((resource, namespace, name), raw)
                    pending.append(raw.get("metadata", {}).get("uid"))
                    await self._buses[resource].put({"type": "DELETED", "object": raw})


def _scale_of(raw: dict[str, Any]) -> dict[str, Any]:
    """The autoscaling/v1 Scale a real API server answers for an object's scale subresource."""
    meta = raw.get("metadata", {})
    spec = raw.get("spec") or {}
    labels = (spec.get("selector") or {}).get("matchLabels") or {}
    return {"apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {key: meta[key] for key in ("name", "namespace", "uid", "resourceVersion",
                                                     "creationTimestamp") if key in meta},
            "spec": {"replicas": int(spec.get("replicas", 1))},
            "status": {"replicas": int((raw.get("status") or {}).get("replicas") or 0),
                       "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items()))}}


def _merge_patched(target: Any, patch: Any) -> Any:
    """`target` with a JSON merge patch (RFC 7386) applied; neither is changed."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patched(result.get(key), value)
    return result


def _now() -> str:
    return datetime.datetime.now(tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class InterceptingEmulator(GapFillingEmulator):
    """The emulator, handing each write (create, patch, delete) made with bearer `token` to
    `on_write` first: an answer it returns is sent instead and the write is not applied (a fault,
    or a kill in the middle of it); None lets the write through. `last_write` is when such a write
    last came (time.monotonic()): the operator under test is at rest once it is long enough ago."""

    token = "operator-under-test"  # log the operator in with `EmulatorThread.kubeconfig_as(token)`
    last_write = 0.0

    def on_write(self, request: Any, method: str) -> Any | None:
        return None

    async def _handle(self, request: Any) -> Any:
        method = str(getattr(request.method, "value", request.method)).upper()
        if (method in ("POST", "PATCH", "DELETE") and request.resource is not None
                and self.token in str(request.headers.get("Authorization", ""))):
            self.last_write = time.monotonic()
            answer = self.on_write(request, method)
            if answer is not None:
                return answer
        return await super()._handle(request)


def unavailable(message: str) -> Any:
    """A 503 answer with a Kubernetes Status body: what a client sees of an API server in trouble."""
    import aiohttp.web

    return aiohttp.web.json_response({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 503,
                                      "message": message}, status=503)


class EmulatorThread:
    """The emulator on 127.0.0.1 in a background thread; `kubeconfig` points a client at it."""

    emulator_class: type[GapFillingEmulator] = GapFillingEmulator  # a subclass may inject faults

    def __init__(self, workdir: Path, emulator_class: type[GapFillingEmulator] | None = None) -> None:
        if emulator_class is not None:
            self.emulator_class = emulator_class
        self.workdir = workdir
        self.kubeconfig = workdir / "kubeconfig"
        self.url = ""
        self.emulator: GapFillingEmulator | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True,
                                        name="kube-emulator")

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self.emulator_class() as emulator, kmock.Server(emulator) as server:
            self.emulator = emulator
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()
            # Watch streams never end by themselves: cancel their handlers, or shutting the
            # server down would wait for clients that may still hold them open.
            current = asyncio.current_task()
            for task in asyncio.all_tasks():
                if task is not current:
                    task.cancel()

    def __enter__(self) -> EmulatorThread:
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError("the Kubernetes emulator did not start")
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "emulator-token"}}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester",
                                                           "namespace": "default"}}],
            "current-context": "emulator",
        }))
        return self

    def api_calls(self) -> int:
        """Requests served so far, not counting watch streams (kopf keeps one open per watched kind)."""
        assert self.emulator is not None
        return sum(1 for request in list(self.emulator) if request.action != enums.action.WATCH)

    def kubeconfig_as(self, token: str) -> Path:
        """A second kubeconfig, beside `kubeconfig`, that logs in with another bearer token: the
        emulator accepts any, and a fault injector tells the operator's requests from a test's by it."""
        config = yaml.safe_load(self.kubeconfig.read_text())
        config["users"][0]["user"]["token"] = token
        path = self.workdir / f"kubeconfig-{token}"
        path.write_text(yaml.safe_dump(config))
        return path

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
