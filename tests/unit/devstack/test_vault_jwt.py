"""The Vault stand-in's JWT rules (vault-plugin-auth-jwt claims.go, hashicorp/cap jwt.go)."""

from __future__ import annotations

import pytest

from devstack.vault.server import VaultError, VaultServer, glob_match, json_pointer, validate_bound_claims

NOW = 1_800_000_000


def times(role: dict | None = None, **claims) -> str | None:
    try:
        VaultServer.check_times(claims, role or {}, now=NOW)
    except VaultError as exc:
        return exc.errors[0]
    return None


def test_time_claims_get_only_the_clock_skew_leeway():
    assert times(exp=NOW - 60) is None and "expired" in times(exp=NOW - 61)
    assert times(nbf=NOW + 60) is None and "not yet valid" in times(nbf=NOW + 61)
    # a missing nbf is iat: a future iat alone fails as nbf (cap jwt.go), with an nbf as iat
    assert times(iat=NOW + 60) is None and "not yet valid" in times(iat=NOW + 61)
    assert "issued in the future" in times(iat=NOW + 61, nbf=NOW)
    assert "no issued at" in times()
    # a missing exp is iat + expiration_leeway (150 s default), still with the 60 s skew
    assert times(iat=NOW - 210) is None and "expired" in times(iat=NOW - 211)
    assert times({"expiration_leeway": 10}, iat=NOW - 70) is None
    assert "expired" in times({"expiration_leeway": 10}, iat=NOW - 71)
    # negative leeways mean none; a role's own clock skew replaces the default
    assert "expired" in times({"clock_skew_leeway": -1}, exp=NOW - 1)
    assert times({"clock_skew_leeway": 300}, exp=NOW - 299) is None
    with pytest.raises(VaultError):
        VaultServer.check_times({"exp": "soon"}, {}, now=NOW)


def test_glob_is_star_only_and_crosses_slashes():
    assert glob_match("spiffe://td/c/*/workload", "spiffe://td/c/abc/workload")
    assert glob_match("*", "") and glob_match("a*b*c", "a-b-b-c") and glob_match("x", "x")
    assert not glob_match("a*b", "ab-") and not glob_match("a?", "ab") and not glob_match("ab*ba", "aba")


def test_json_pointer():
    doc = {"a": {"b/c": [10, {"d~e": "x"}]}}
    assert json_pointer(doc, "/a/b~1c/1/d~0e") == "x" and json_pointer(doc, "/a/b~1c/0") == 10
    assert json_pointer(doc, "/a/missing") is None and json_pointer(doc, "/a/b~1c/7") is None


@pytest.mark.parametrize(
    ("kind", "bound", "claims", "ok"),
    [
        ("string", {"g": ["a", "b"]}, {"g": ["c", "b"]}, True),
        ("string", {"g": "a"}, {"g": "A"}, False),
        ("string", {"n": 5}, {"n": 5.0}, True),  # numbers compare as json.Number text
        ("string", {"n": "5"}, {"n": 5}, False),
        ("string", {"t": True}, {"t": True}, True),
        ("string", {"t": True}, {"t": "true"}, False),
        ("string", {"/x/y": "v"}, {"x": {"y": "v"}}, True),
        ("string", {"x": "v"}, {}, False),
        ("glob", {"sub": "spiffe://*/w"}, {"sub": "spiffe://td/c/w"}, True),
        ("glob", {"sub": ["no*", "spiffe*"]}, {"sub": "spiffe://td"}, True),
        ("glob", {"sub": "a*"}, {"sub": 1}, False),
    ],
)
def test_bound_claims(kind, bound, claims, ok):
    if ok:
        validate_bound_claims(kind, bound, claims)
    else:
        with pytest.raises(ValueError):
            validate_bound_claims(kind, bound, claims)
