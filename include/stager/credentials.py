"""The repository password of a job, RSA-encrypted with the stager's public key and base64-encoded.

The DCCN stager encrypts with PKCS#1 v1.5; OAEP (SHA-256 or SHA-1) is accepted as well.
A plaintext or undecryptable value is refused as a user error. The decrypted password is
returned to the caller only and never logged.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from include.stager.errors import UserError

NOT_ENCRYPTED = ("drPass must be RSA-encrypted with the stager's public key and base64-encoded; "
                 "a plaintext or undecryptable password is refused")


def load_private_key(pem: bytes | str, password: bytes | None = None) -> rsa.RSAPrivateKey:
    data = pem.encode() if isinstance(pem, str) else pem
    key = serialization.load_pem_private_key(data, password=password)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the stager key must be an RSA private key")
    return key


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def _public(key) -> rsa.RSAPublicKey:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.public_key()
    if isinstance(key, bytes | str):
        loaded = serialization.load_pem_public_key(key.encode() if isinstance(key, str) else key)
        assert isinstance(loaded, rsa.RSAPublicKey)
        return loaded
    return key


def encrypt_password(password: str, key, oaep: bool = False) -> str:
    """Encrypt like the DCCN stager's clients: PKCS#1 v1.5 (or OAEP-SHA256), then base64."""
    pad = (padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
           if oaep else padding.PKCS1v15())
    return base64.b64encode(_public(key).encrypt(password.encode(), pad)).decode()


def decrypt_password(value: str, key: rsa.RSAPrivateKey) -> str:
    """Decrypt ``drPass``; :class:`UserError` when it is not a ciphertext made with our public key."""
    if not isinstance(value, str) or not value:
        raise UserError(NOT_ENCRYPTED)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise UserError(NOT_ENCRYPTED) from None
    if len(raw) != key.key_size // 8:
        raise UserError(NOT_ENCRYPTED)
    for hash_cls in (hashes.SHA256, hashes.SHA1):
        try:
            oaep = padding.OAEP(mgf=padding.MGF1(hash_cls()), algorithm=hash_cls(), label=None)
            return key.decrypt(raw, oaep).decode()
        except (ValueError, UnicodeDecodeError):
            pass
    try:
        # PKCS#1 v1.5 decryption in cryptography >= 45 rejects bad padding with ValueError
        # OpenSSL >= 3.2 answers bad PKCS#1 v1.5 padding with a synthetic random message
        # (implicit rejection) instead of an error: such bytes are not a printable UTF-8 password.
        plain = key.decrypt(raw, padding.PKCS1v15()).decode()
    except (ValueError, UnicodeDecodeError):
        raise UserError(NOT_ENCRYPTED) from None
    if not plain or not plain.isprintable():
        raise UserError(NOT_ENCRYPTED)
    return plain


def is_encrypted(value: str, key: rsa.RSAPrivateKey) -> bool:
    try:
        decrypt_password(value, key)
    except UserError:
        return False
    return True
