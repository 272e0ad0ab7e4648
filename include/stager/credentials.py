"""The repository password of a job, RSA-encrypted with the stager's public key and base64-encoded.

Two kinds of ciphertext, two places that accept them:

- **Bound** (what runs carry): RSA-OAEP with SHA-256 and a label naming drUser, stagerUser and the
  job id (:func:`job_label`). OAEP checks the label, so a ciphertext copied from one job into
  any other fails to decrypt. Tasks accept this kind only (:func:`decrypt_bound`).
- **Client** (what DCCN clients send to the stager API): PKCS#1 v1.5 like the DCCN stager, or
  OAEP-SHA256/SHA-1 without a label. Only the API accepts it (:func:`decrypt_client`), then checks
  the credential against the repository and re-encrypts it bound to the new job.

PKCS#1 v1.5 gives no reliable "wrong ciphertext" answer: OpenSSL >= 3.2 implements implicit
rejection and returns a random-looking plaintext for bad padding, so whether the result is
"printable" proves nothing. The API therefore never trusts a v1.5 result by its look: the
repository's credential check (PROPFIND) is the proof, and a failed check is the refusal.

A plaintext or undecryptable value is refused as a user error. The decrypted password is
returned to the caller only and never logged.
"""

from __future__ import annotations

import base64
import binascii
import json

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from include.stager.errors import UserError

NOT_ENCRYPTED = ("drPass must be RSA-encrypted with the stager's public key and base64-encoded; "
                 "a plaintext or undecryptable password is refused")
NOT_BOUND = ("drPass is not encrypted for this job (RSA-OAEP bound to its drUser, stagerUser and job id): "
             "a password encrypted for another job, or by a client, is refused here; submit the job "
             "through the stager API (/stager/v1/job), which encrypts it for the job")
LABEL_CONTEXT = "dccn-stager/drPass/v1"


def load_private_key(pem: bytes | str, password: bytes | None = None) -> rsa.RSAPrivateKey:
    data = pem.encode() if isinstance(pem, str) else pem
    key = serialization.load_pem_private_key(data, password=password)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the stager key must be an RSA private key")
    return key


def _public(key) -> rsa.RSAPublicKey:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.public_key()
    if isinstance(key, bytes | str):
        loaded = serialization.load_pem_public_key(key.encode() if isinstance(key, str) else key)
        assert isinstance(loaded, rsa.RSAPublicKey)
        return loaded
    return key


def job_label(dr_user: str, stager_user: str, job_id: str) -> bytes:
    """The OAEP label binding a ciphertext to one job."""
    if not (dr_user and stager_user and job_id):
        raise ValueError("a bound drPass needs drUser, stagerUser and the job id")
    return (LABEL_CONTEXT + "\n" + json.dumps([dr_user, stager_user, job_id], ensure_ascii=True)).encode()


def _oaep(label: bytes | None, hash_cls=hashes.SHA256) -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(hash_cls()), algorithm=hash_cls(), label=label)


def encrypt_bound(password: str, key, *, dr_user: str, stager_user: str, job_id: str) -> str:
    """Encrypt ``password`` for one job: RSA-OAEP-SHA256 with :func:`job_label`, base64."""
    label = job_label(dr_user, stager_user, job_id)
    return base64.b64encode(_public(key).encrypt(password.encode(), _oaep(label))).decode()


def _raw(value, key: rsa.RSAPrivateKey) -> bytes:
    if not isinstance(value, str) or not value:
        raise UserError(NOT_ENCRYPTED)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise UserError(NOT_ENCRYPTED) from None
    if len(raw) != key.key_size // 8:
        raise UserError(NOT_ENCRYPTED)
    return raw


def looks_encrypted(value, key: rsa.RSAPrivateKey) -> bool:
    """Whether ``value`` has the shape of a ciphertext for ``key`` (base64 of the key's size)."""
    try:
        _raw(value, key)
    except UserError:
        return False
    return True


def decrypt_bound(value: str, key: rsa.RSAPrivateKey, *, dr_user: str, stager_user: str, job_id: str) -> str:
    """Decrypt a job's ``drPass``: OAEP-SHA256 with this job's label only; :class:`UserError` otherwise."""
    raw = _raw(value, key)
    try:
        return key.decrypt(raw, _oaep(job_label(dr_user, stager_user, job_id))).decode()
    except (ValueError, UnicodeDecodeError):
        raise UserError(NOT_BOUND) from None


def encrypt_password(password: str, key, oaep: bool = False) -> str:
    """Encrypt like the DCCN stager's clients: PKCS#1 v1.5 (or OAEP-SHA256 without label), then base64.

    Only for clients and tests: what the stager stores is :func:`encrypt_bound`.
    """
    pad = _oaep(None) if oaep else padding.PKCS1v15()
    return base64.b64encode(_public(key).encrypt(password.encode(), pad)).decode()


def decrypt_client(value: str, key: rsa.RSAPrivateKey) -> str:
    """Decrypt a client's ``drPass`` (the stager API only): unlabelled OAEP (SHA-256, SHA-1), else PKCS#1 v1.5.

    A v1.5 result is NOT proof of a right ciphertext (implicit rejection, see the module doc): the
    caller must check the password against the repository before using it.
    """
    raw = _raw(value, key)
    for hash_cls in (hashes.SHA256, hashes.SHA1):
        try:
            return key.decrypt(raw, _oaep(None, hash_cls)).decode()
        except (ValueError, UnicodeDecodeError):
            pass
    try:
        # cryptography/OpenSSL may raise for bad padding, or (OpenSSL >= 3.2, implicit rejection)
        # return random bytes: both end as a refusal, the latter at the credential check.
        plain = key.decrypt(raw, padding.PKCS1v15()).decode()
    except (ValueError, UnicodeDecodeError):
        raise UserError(NOT_ENCRYPTED) from None
    if not plain:
        raise UserError(NOT_ENCRYPTED)
    return plain
