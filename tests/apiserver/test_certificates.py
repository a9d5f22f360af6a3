"""The certificates ApiExtensionsServer makes with openssl (no server needed): a server certificate
valid for 127.0.0.1 and localhost, and a client certificate in system:masters, both from the CA."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sdxlpool.testing.apiserver import make_certificates


def openssl(*args: str | Path) -> str:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, check=True, timeout=30).stdout


def test_server_and_client_certificates(tmp_path: Path) -> None:
    make_certificates(tmp_path)
    for name in ("server", "client"):
        assert openssl("verify", "-CAfile", tmp_path / "ca.crt", tmp_path / f"{name}.crt").strip().endswith(": OK")
    server = openssl("x509", "-in", tmp_path / "server.crt", "-noout", "-text")
    assert "IP Address:127.0.0.1" in server and "DNS:localhost" in server and "TLS Web Server Authentication" in server
    client = openssl("x509", "-in", tmp_path / "client.crt", "-noout", "-subject", "-ext", "extendedKeyUsage")
    # Kubernetes reads the user from CN and the groups from O: admin in system:masters.
    assert "O = system:masters, CN = admin" in client and "TLS Web Client Authentication" in client, client
