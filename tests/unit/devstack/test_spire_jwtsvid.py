"""JWT-SVID validation as SPIRE's pkg/common/jwtsvid/validate.go (used by the agent and HPCS stand-ins)."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from devstack.spire.common import JwtSvidError, validate_jwt_svid

KEY = ec.generate_private_key(ec.SECP256R1())
STORE = {"td.local": {"k1": KEY.public_key()}}


def svid(kid: str | None = "k1", key=KEY, **claims) -> str:
    now = int(time.time())
    body = {"sub": "spiffe://td.local/w", "aud": ["vault"], "exp": now + 300, "iat": now, **claims}
    headers = {"kid": kid} if kid else {}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm="ES256", headers=headers)


def test_valid():
    assert validate_jwt_svid(svid(), STORE, "vault")[0] == "spiffe://td.local/w"
    assert validate_jwt_svid(svid(aud="vault"), STORE, ["x", "vault"])[1]["aud"] == "vault"


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (lambda: svid(kid=None), "missing key id"),
        (lambda: svid(sub=None), "missing subject"),
        (lambda: svid(exp=None), "missing exp"),
        (lambda: svid(sub="https://td.local/w"), "invalid subject"),
        (lambda: svid(sub="spiffe://other.local/w"), 'no keys found for trust domain "other.local"'),
        (lambda: svid(kid="k2"), 'public key "k2" not found'),
        (lambda: svid(key=ec.generate_private_key(ec.SECP256R1())), "cryptographic"),
        (lambda: svid(exp=int(time.time()) - 61), "expired"),
        (lambda: svid(aud=["other"]), "expected audience"),
        (lambda: "garbage", "unable to parse"),
    ],
)
def test_refusals(token, why):
    with pytest.raises(JwtSvidError, match=why):
        validate_jwt_svid(token(), STORE, "vault")
