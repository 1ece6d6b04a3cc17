"""TLS at the entrypoint with a self-signed certificate made here, on the three engines;
HTTP/2 via ALPN where the engine speaks it; bad files fail the start with a code."""

from __future__ import annotations

import datetime
import ssl

import httpx
import pytest
from support import APPS

from watt.errors import WattError
from watt.testing import RuntimeHandle

cryptography = pytest.importorskip("cryptography", reason="makes the test certificate")


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return folder


def config(folder, **server):
    return {"server": {"tls": {"cert": str(folder / "cert.pem"),
                                                "key": str(folder / "key.pem")},
                                        "securityHeaders": True, **server},
            "applications": [{"id": "api", "path": str(APPS / "edge_scope"),
                              "app": "main:app"}]}


@pytest.mark.parametrize("engine,version", [("watt", "HTTP/1.1"), ("granian", "HTTP/2"),
                                            ("hypercorn", "HTTP/2")])
def test_https_with_a_self_signed_certificate(cert, engine, version):
    verify = ssl.create_default_context(cafile=str(cert / "cert.pem"))
    with RuntimeHandle(config(cert), engine=engine) as rt:
        assert rt.url.startswith("https://")
        with httpx.Client(verify=verify, http2=True, timeout=30) as client:
            response = client.get(rt.url + "/x")
        # a client that does not trust the certificate is refused by the handshake
        with pytest.raises(httpx.ConnectError):
            httpx.get(rt.url + "/x", timeout=30)
    assert response.status_code == 200
    assert response.http_version == version  # ALPN: h2 where the engine speaks it
    assert response.json()["scheme"] == "https"
    assert dict(response.json()["headers"])["x-forwarded-proto"] == "https"
    assert response.headers["strict-transport-security"] == \
        "max-age=15552000; includeSubDomains"


def test_an_unusable_certificate_fails_the_start_with_a_code(cert, tmp_path):
    (tmp_path / "cert.pem").write_text("not a certificate")
    (tmp_path / "key.pem").write_bytes((cert / "key.pem").read_bytes())
    with pytest.raises(WattError) as info:
        RuntimeHandle(config(tmp_path))
    assert info.value.code == "WATT_TLS_INVALID"
    missing = config(cert)
    missing["server"]["tls"]["key"] = str(tmp_path / "nope.pem")
    with pytest.raises(WattError, match="does not exist") as info:
        RuntimeHandle(missing)
    assert info.value.code == "WATT_TLS_INVALID"
