"""``spire-certs`` job: the x509pop CA and the compose agent's certificate, into ``$SPIRE_CERT_DIR``.

Writes ``agent-ca.pem`` (trusted by the server), ``agent.crt.pem`` and ``agent.key.pem`` (subject CN
``$SPIRE_AGENT_CN``, default ``spire-agent``; register.sh aliases the node by that CN). Existing
files are kept. Uses only ``cryptography`` (in the Airflow image).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def main() -> None:
    out = Path(os.environ.get("SPIRE_CERT_DIR", "/run/spire/certs"))
    cn = os.environ.get("SPIRE_AGENT_CN", "spire-agent")
    out.mkdir(parents=True, exist_ok=True)
    if all((out / n).exists() for n in ("agent-ca.pem", "agent.crt.pem", "agent.key.pem")):
        print(f"spire-certs: {out} already has the agent CA and certificate")
        return
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sdp compose agent CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (out / "agent-ca.pem").write_bytes(ca.public_bytes(pem))
    (out / "agent.crt.pem").write_bytes(cert.public_bytes(pem))
    key_path = out / "agent.key.pem"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    print(f"spire-certs: wrote the agent CA and certificate (CN={cn}) to {out}")


if __name__ == "__main__":
    main()
