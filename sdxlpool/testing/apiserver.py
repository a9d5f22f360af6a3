"""A real Kubernetes API server component on 127.0.0.1, for testing CRDs: etcd and the
apiextensions-apiserver (the code that serves CRDs and custom resources inside kube-apiserver).

Both binaries come from scripts/fetch-apiextensions.sh (Debian's packaged sources, built in GOPATH
mode; etcd from Debian's etcd-server). `ApiExtensionsServer` makes a CA, a server certificate for
127.0.0.1/localhost and a client certificate in system:masters with openssl, starts etcd on free
loopback ports (no fsync, data in a temporary folder), then the server: TLS with that server
certificate, x509 client authentication against the CA, delegated authentication/authorization
pointing back at itself with the system:masters certificate (which the delegating authorizer allows
without asking: the server has no SubjectAccessReview API), and the admission plugins that need the
core API (NamespaceLifecycle, the webhooks, admission policies) switched off. It serves
apiextensions.k8s.io and the custom resources only: no core API, so no Namespace objects, and a
custom object can be created in any namespace name.

    with ApiExtensionsServer(apiserver_bin, etcd_bin, workdir) as server:
        server.apply_crd(yaml.safe_load(Path("crds/sdxlpools.sdxlpool.dev.yaml").read_text()))
        server.create({"apiVersion": "sdxlpool.dev/v1alpha1", "kind": "SDXLPool", ...})
        subprocess.run(["kubectl", "--kubeconfig", server.kubeconfig, "get", "sdxlpools", "-A"])

Pure parts (`etcd_args`, `apiserver_args`, `kubeconfig_document`, the certificate subjects) are
functions; the class is the I/O around them. Every wait is on a condition with a deadline; a
timeout's error carries the tail of the server's (or etcd's) log.
"""

from __future__ import annotations

import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

from sdxlpool.testing.ports import free_port
from sdxlpool.testing.processes import spawn, stop

__all__ = [
    "ADMISSION_PLUGINS_OFF",
    "CLIENT_SUBJECT",
    "SERVER_ALT_NAMES",
    "ApiExtensionsServer",
    "apiserver_args",
    "etcd_args",
    "kubeconfig_document",
    "log_tail",
    "make_certificates",
]

CA_SUBJECT = "/CN=sdxlpool-test-ca"
SERVER_SUBJECT = "/CN=localhost"
SERVER_ALT_NAMES = "IP:127.0.0.1,DNS:localhost"
CLIENT_SUBJECT = "/O=system:masters/CN=admin"  # system:masters: allowed everything, without a SubjectAccessReview
# Admission plugins that watch core or admissionregistration objects, which this server does not serve:
# left on, they never sync and the server never becomes ready (`--help` lists the defaults).
ADMISSION_PLUGINS_OFF = ("NamespaceLifecycle", "MutatingAdmissionWebhook", "ValidatingAdmissionWebhook",
                         "ValidatingAdmissionPolicy", "MutatingAdmissionPolicy")
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
# Ready but for one check: informer-sync waits for an informer on core v1 Services (the conversion
# webhooks' service resolver), which never syncs without a core API; every other check must pass.
READY_PATH = "/readyz?exclude=informer-sync&verbose"


def etcd_args(data_dir: Path, client_port: int, peer_port: int) -> list[str]:
    """etcd on loopback only, one member, no fsync (test data: speed over durability)."""
    client, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    return ["--name", "test", "--data-dir", str(data_dir), "--listen-client-urls", client,
            "--advertise-client-urls", client, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"test={peer}", "--unsafe-no-fsync", "--log-level", "warn"]


def apiserver_args(*, etcd_url: str, port: int, certs: Path, kubeconfig: Path) -> list[str]:
    """The apiextensions-apiserver's flags: TLS on 127.0.0.1:`port`, client certificates from the CA in
    `certs`, delegated authn/authz through `kubeconfig` (itself), no admission plugin needing the core API."""
    return ["--etcd-servers", etcd_url, "--bind-address", "127.0.0.1", "--secure-port", str(port),
            "--tls-cert-file", str(certs / "server.crt"), "--tls-private-key-file", str(certs / "server.key"),
            "--client-ca-file", str(certs / "ca.crt"),
            # The "core" server it delegates to (and takes informers from) is itself: without --kubeconfig it
            # looks for an in-cluster config and exits.
            "--kubeconfig", str(kubeconfig),
            "--authentication-kubeconfig", str(kubeconfig), "--authorization-kubeconfig", str(kubeconfig),
            "--authentication-skip-lookup", "--enable-priority-and-fairness=false",
            "--disable-admission-plugins", ",".join(ADMISSION_PLUGINS_OFF)]


def kubeconfig_document(url: str, certs: Path) -> dict[str, Any]:
    """A kubeconfig for `url` logging in with the system:masters client certificate in `certs`."""
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": url, "certificate-authority": str(certs / "ca.crt")}}],
        "users": [{"name": "admin", "user": {"client-certificate": str(certs / "client.crt"),
                                            "client-key": str(certs / "client.key")}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin", "namespace": "default"}}],
    }


def distinct_ports(count: int) -> list[int]:
    """`count` free ports on 127.0.0.1, no two the same (each is free when picked; not reserved)."""
    ports: list[int] = []
    while len(ports) < count:
        if (port := free_port()) not in ports:
            ports.append(port)
    return ports


def log_tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a log file ('' when it does not exist)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def make_certificates(folder: Path) -> None:
    """ca.crt, server.crt/key (127.0.0.1, localhost) and client.crt/key (admin, system:masters) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        done = subprocess.run(["openssl", *args], cwd=folder, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args)} failed: {done.stderr.strip()}")

    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", CA_SUBJECT,
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name, subject, extensions in (
        ("server", SERVER_SUBJECT, f"subjectAltName={SERVER_ALT_NAMES}\nextendedKeyUsage=serverAuth\n"),
        ("client", CLIENT_SUBJECT, "extendedKeyUsage=clientAuth\n"),
    ):
        (folder / f"{name}.ext").write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                                            + extensions)
        openssl("req", "-new", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-out", f"{name}.crt", "-extfile", f"{name}.ext")


class ApiExtensionsServer:
    """etcd and the apiextensions-apiserver as child processes on 127.0.0.1 (a context manager)."""

    def __init__(self, apiserver: Path, etcd: Path, workdir: Path | None = None, timeout: float = 60.0) -> None:
        self.apiserver_bin, self.etcd_bin, self.timeout = Path(apiserver), Path(etcd), timeout
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="apiextensions-")
            workdir = Path(self._tmp.name)
        self.workdir = Path(workdir)
        self.certs = self.workdir / "certs"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.etcd_log, self.log = self.workdir / "etcd.log", self.workdir / "apiserver.log"
        self.port = 0
        self.url = ""
        self._etcd: subprocess.Popen | None = None
        self._server: subprocess.Popen | None = None
        self._client: httpx.Client | None = None
        self._plurals: dict[tuple[str, str], str] = {}
        self._readyz = ""  # what the last readiness check said

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> ApiExtensionsServer:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        make_certificates(self.certs)
        client_port, peer_port, self.port = distinct_ports(3)
        etcd_url = f"http://127.0.0.1:{client_port}"
        self._etcd = spawn([str(self.etcd_bin), *etcd_args(self.workdir / "etcd", client_port, peer_port)],
                           self.etcd_log)
        self._wait("etcd", self._etcd, self.etcd_log, lambda: _etcd_healthy(etcd_url))

        self.url = f"https://127.0.0.1:{self.port}"
        self.kubeconfig.write_text(yaml.safe_dump(kubeconfig_document(self.url, self.certs), sort_keys=False))
        context = ssl.create_default_context(cafile=str(self.certs / "ca.crt"))
        context.load_cert_chain(str(self.certs / "client.crt"), str(self.certs / "client.key"))
        self._client = httpx.Client(base_url=self.url, verify=context, timeout=30)
        args = apiserver_args(etcd_url=etcd_url, port=self.port, certs=self.certs, kubeconfig=self.kubeconfig)
        self._server = spawn([str(self.apiserver_bin), *args], self.log)
        self._wait("apiextensions-apiserver", self._server, self.log, self._ready)

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        for process in (self._server, self._etcd):
            if process is not None:
                stop(process, timeout=10)
        self._server = self._etcd = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> ApiExtensionsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _ready(self) -> bool:
        try:
            answer = self.request("GET", READY_PATH)
        except httpx.TransportError as exc:
            self._readyz = f"{READY_PATH}: {exc!r}"
            return False
        self._readyz = f"{READY_PATH}: {answer.status_code}\n{answer.text.strip()}"
        return answer.status_code == 200

    def _wait(self, what: str, process: subprocess.Popen, log: Path, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.timeout
        while not ready():
            if process.poll() is not None:
                raise RuntimeError(f"{what} exited with {process.returncode}; its log ends:\n{log_tail(log)}")
            if time.monotonic() > deadline:
                said = f"; {self._readyz}" if log == self.log and self._readyz else ""
                raise TimeoutError(f"{what} not ready after {self.timeout}s{said}\nits log ends:\n{log_tail(log)}")
            time.sleep(0.1)

    # --- requests ----------------------------------------------------------------------------------

    def request(self, method: str, path: str, json: Any = None,
                headers: Mapping[str, str] | None = None) -> httpx.Response:
        """One request as system:masters (client certificate); `path` starts with /."""
        if self._client is None:
            raise RuntimeError("the server is not running (start() it, or use it as a context manager)")
        return self._client.request(method, path, json=json, headers=dict(headers or {}))

    def apply_crd(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace a CRD, then wait until it is Established (its API served); returns it as stored.
        Raises RuntimeError with the server's answer if it is refused, or its conditions when its names are
        not accepted; TimeoutError with its conditions when it is not Established in time."""
        name = manifest["metadata"]["name"]
        answer = self.request("POST", CRD_PATH, json=manifest)
        if answer.status_code == 409:
            current = self.request("GET", f"{CRD_PATH}/{name}").json()
            replacement = {**manifest, "metadata": {**manifest["metadata"],
                                                    "resourceVersion": current["metadata"]["resourceVersion"]}}
            answer = self.request("PUT", f"{CRD_PATH}/{name}", json=replacement)
        if answer.status_code not in (200, 201):
            raise RuntimeError(f"CRD {name} refused ({answer.status_code}): {answer.text}")
        deadline = time.monotonic() + self.timeout
        while True:
            crd = self.request("GET", f"{CRD_PATH}/{name}").json()
            conditions = {c["type"]: c for c in (crd.get("status") or {}).get("conditions") or []}
            if conditions.get("Established", {}).get("status") == "True":
                break
            if conditions.get("NamesAccepted", {}).get("status") == "False":
                raise RuntimeError(f"CRD {name} not accepted: {list(conditions.values())}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not Established after {self.timeout}s: {list(conditions.values())}")
            time.sleep(0.1)
        self._plurals.clear()
        # Established means the storage is up; discovery of the new group follows a moment later.
        group, versions = crd["spec"]["group"], [v["name"] for v in crd["spec"]["versions"] if v.get("served")]
        self._wait_until(lambda: all(self.request("GET", f"/apis/{group}/{v}").status_code == 200 for v in versions),
                         f"discovery of {group} {versions}")
        return crd

    def object_path(self, api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
        """The REST path of a custom resource's collection (or of one object), its plural from discovery."""
        key = (api_version, kind)
        if key not in self._plurals:
            resources = self.request("GET", f"/apis/{api_version}").raise_for_status().json()["resources"]
            self._plurals.update({(api_version, r["kind"]): r["name"] for r in resources if "/" not in r["name"]})
        if key not in self._plurals:
            raise KeyError(f"{kind} is not served under /apis/{api_version}")
        path = f"/apis/{api_version}/" + (f"namespaces/{namespace}/" if namespace else "") + self._plurals[key]
        return path + (f"/{name}" if name else "")

    def create(self, body: Mapping[str, Any], namespace: str | None = "default") -> httpx.Response:
        """POST a custom object (into metadata.namespace if set, else `namespace`); the server's answer as is."""
        namespace = body.get("metadata", {}).get("namespace") or namespace
        return self.request("POST", self.object_path(body["apiVersion"], body["kind"], namespace), json=body)

    def _wait_until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not after {self.timeout}s; the server's log ends:\n{log_tail(self.log)}")
            time.sleep(0.1)


def _etcd_healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=2).json().get("health") == "true"
    except (httpx.TransportError, ValueError):
        return False
