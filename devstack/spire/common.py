"""SPIFFE IDs and selectors, as SPIRE validates and compares them."""

from __future__ import annotations

import re
import time
from typing import Any

import jwt as pyjwt

_TD = re.compile(r"^[a-z0-9._-]+$")
_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")


class SpiffeIdError(ValueError):
    pass


def parse_spiffe_id(value: str) -> tuple[str, str]:
    """``(trust_domain, path)`` of a SPIFFE ID, with the spec's character rules."""
    if not isinstance(value, str) or not value.startswith("spiffe://"):
        raise SpiffeIdError(f"invalid SPIFFE ID {value!r}: scheme is missing or invalid")
    rest = value[len("spiffe://") :]
    td, sep, path = rest.partition("/")
    if not td or not _TD.match(td):
        raise SpiffeIdError(
            f"invalid SPIFFE ID {value!r}: trust domain characters are limited to "
            "lowercase letters, numbers, dots, dashes, and underscores"
        )
    if sep:
        for seg in path.split("/"):
            if seg in ("", ".", ".."):
                raise SpiffeIdError(f"invalid SPIFFE ID {value!r}: path cannot contain empty, dot or dot-dot segments")
            if not _SEGMENT.match(seg):
                raise SpiffeIdError(
                    f"invalid SPIFFE ID {value!r}: path segment characters are limited "
                    "to letters, numbers, dots, dashes, and underscores"
                )
    return td, ("/" + path) if sep else ""


def parse_selector(value: str | dict) -> dict[str, str]:
    """``unix:uid:1000`` (or ``{"type": "unix", "value": "uid:1000"}``) as SPIRE's {type, value}."""
    if isinstance(value, dict):
        stype, svalue = value.get("type"), value.get("value")
    else:
        stype, _, svalue = str(value).partition(":")
    if not stype or not svalue:
        raise ValueError(f"selector {value!r} must be in the form type:value")
    return {"type": stype, "value": svalue}


def selector_str(sel: dict[str, str]) -> str:
    return f"{sel['type']}:{sel['value']}"


def agent_id_for_join_token(trust_domain: str, token: str) -> str:
    return f"spiffe://{trust_domain}/spire/agent/join_token/{token}"


class JwtSvidError(ValueError):
    pass


# pkg/common/jwtsvid/validate.go AllowedSignatureAlgorithms
JWT_SVID_ALGS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"]


def validate_jwt_svid(token: str, key_store: dict[str, dict[str, Any]], audience: list[str] | str) -> tuple[str, dict]:
    """pkg/common/jwtsvid/validate.go ``ValidateToken``: the subject must be a SPIFFE ID, the key
    is looked up by the subject's trust domain AND the header's ``kid``, then the signature, exp
    (with go-jose's 1 minute leeway) and audience (any of ``audience``) are checked.
    ``key_store`` is ``{trust_domain: {kid: public key}}``. Returns ``(spiffe_id, claims)``."""
    audience = [audience] if isinstance(audience, str) else list(audience)
    try:
        header = pyjwt.get_unverified_header(token)
        unverified = pyjwt.decode(token, options={"verify_signature": False})
    except pyjwt.PyJWTError as exc:
        raise JwtSvidError(f"unable to parse JWT token: {exc}") from exc
    if header.get("alg") not in JWT_SVID_ALGS:
        raise JwtSvidError(f"unable to parse JWT token: unexpected signature algorithm {header.get('alg')!r}")
    kid = header.get("kid")
    if not kid:
        raise JwtSvidError("token header missing key id")
    subject = unverified.get("sub")
    if not subject:
        raise JwtSvidError("token missing subject claim")
    if unverified.get("exp") is None:
        raise JwtSvidError("token missing exp claim")
    try:
        trust_domain, _ = parse_spiffe_id(subject)
    except SpiffeIdError as exc:
        raise JwtSvidError(f"token has in invalid subject claim: {exc}") from exc
    keys = key_store.get(trust_domain)
    if keys is None:
        raise JwtSvidError(f'no keys found for trust domain "{trust_domain}"')
    key = keys.get(kid)
    if key is None:
        raise JwtSvidError(f'public key "{kid}" not found in trust domain "{trust_domain}"')
    try:
        claims = pyjwt.decode(
            token,
            key,
            algorithms=[header["alg"]],
            options={"verify_aud": False, "verify_exp": False, "verify_nbf": False, "verify_iat": False},
        )
    except pyjwt.PyJWTError as exc:
        raise JwtSvidError(f"go-jose/go-jose: error in cryptographic primitive ({exc})") from exc
    # go-jose jwt Claims.Validate (DefaultLeeway 1 minute): exp, nbf, iat and the audience
    now, leeway = time.time(), 60
    if now - leeway > float(claims["exp"]):
        raise JwtSvidError("token has expired")
    if claims.get("nbf") is not None and now + leeway < float(claims["nbf"]):
        raise JwtSvidError("go-jose/go-jose/jwt: validation failed, token not valid yet (nbf)")
    if claims.get("iat") is not None and now + leeway < float(claims["iat"]):
        raise JwtSvidError("go-jose/go-jose/jwt: validation field, token issued in the future (iat)")
    aud = claims.get("aud")
    auds = [aud] if isinstance(aud, str) else list(aud or [])
    if not set(auds) & set(audience):
        raise JwtSvidError(f"expected audience in {audience!r} (audience={auds!r})")
    return subject, claims
