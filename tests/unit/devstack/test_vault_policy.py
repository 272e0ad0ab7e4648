"""Vault ACL policies in the stand-in: parsing and Vault's path matching and priority rules."""

from __future__ import annotations

import pytest

from devstack.vault.policy import ACL, DEFAULT_POLICY, PolicyError, parse_policy, segment_match


def acl(*texts: str) -> ACL:
    return ACL([parse_policy(t) for t in texts])


def test_parse_capabilities_legacy_and_json():
    rules = parse_policy("""
        path "kv/data/client_x/*" { capabilities = ["create", "update"] }
        path "/secret/*" { policy = "read" }
    """)
    assert rules == {"kv/data/client_x/*": {"create", "update"}, "secret/*": {"read", "list"}}
    assert parse_policy('{"path": {"a": {"capabilities": ["deny"]}}}') == {"a": {"deny"}}
    assert "auth/token/lookup-self" in parse_policy(DEFAULT_POLICY)


@pytest.mark.parametrize(
    "text",
    [
        'path "a" { capabilities = ["fly"] }',
        'path "a" { policy = "everything" }',
        'path { capabilities = ["read"] }',
        'paths "a" { capabilities = ["read"] }',
        'path "a" { capabilities = "read" }',
        'path "a" {',
    ],
)
def test_invalid_policies(text):
    with pytest.raises(PolicyError):
        parse_policy(text)


def test_exact_and_prefix_glob():
    a = acl(
        'path "kv/data/client_x/*" { capabilities = ["create", "update"] }\n'
        'path "kv/data/client_x/s1" { capabilities = ["read"] }'
    )
    assert a.capabilities("kv/data/client_x/s1") == {"read"}  # exact wins outright
    assert a.capabilities("kv/data/client_x/s10") == {"create", "update"}
    assert a.capabilities("kv/data/client_x/a/b") == {"create", "update"}
    assert a.capabilities("kv/data/client_x") == frozenset()  # the glob needs the slash
    assert a.capabilities("kv/data/client_y/s1") == frozenset()
    assert a.allows("kv/data/client_x/s2", "create") and not a.allows("kv/data/client_x/s2", "read")


def test_longest_prefix_wins():
    a = acl('path "kv/*" { capabilities = ["read"] }\npath "kv/data/*" { capabilities = ["list"] }')
    assert a.capabilities("kv/data/x") == {"list"}
    assert a.capabilities("kv/metadata/x") == {"read"}


def test_segment_wildcard():
    assert segment_match("kv/data/+/shared", "kv/data/team/shared")
    assert not segment_match("kv/data/+/shared", "kv/data/a/b/shared")
    assert not segment_match("kv/data/+/shared", "kv/data/team/shared/x")
    assert segment_match("kv/+/team/*", "kv/data/team/x/y")
    assert segment_match("kv/+/team/ab*", "kv/data/team/abc")
    assert not segment_match("kv/+/team/ab*", "kv/data/team/xbc")
    a = acl('path "kv/data/+/shared" { capabilities = ["read"] }')
    assert a.capabilities("kv/data/anyone/shared") == {"read"}
    assert a.capabilities("kv/data/anyone/private") == frozenset()


def test_priority_rules_between_glob_and_segment_wildcards():
    # 1. the rule whose first wildcard comes later wins
    a = acl(
        'path "kv/data/team/*" { capabilities = ["read"] }\n'
        'path "kv/data/+/shared" { capabilities = ["update"] }'
    )
    assert a.capabilities("kv/data/team/shared") == {"read"}
    assert a.capabilities("kv/data/other/shared") == {"update"}
    # 2. same first wildcard position: not ending in * beats ending in *
    a = acl('path "kv/+/x/*" { capabilities = ["read"] }\npath "kv/+/x/y" { capabilities = ["list"] }')
    assert a.capabilities("kv/data/x/y") == {"list"}
    # 3. fewer + segments wins
    a = acl('path "kv/+/+/y" { capabilities = ["read"] }\npath "kv/+/x/y" { capabilities = ["list"] }')
    assert a.capabilities("kv/data/x/y") == {"list"}
    # 4. longer wins
    a = acl('path "kv/+/x*" { capabilities = ["read"] }\npath "kv/+/xy*" { capabilities = ["list"] }')
    assert a.capabilities("kv/data/xyz") == {"list"}


def test_merge_across_policies_and_deny():
    a = acl(
        'path "kv/data/a/*" { capabilities = ["read"] }', 'path "kv/data/a/*" { capabilities = ["list"] }'
    )
    assert a.capabilities("kv/data/a/x") == {"read", "list"}
    a = acl(
        'path "kv/data/a/*" { capabilities = ["read"] }', 'path "kv/data/a/*" { capabilities = ["deny"] }'
    )
    assert a.capabilities("kv/data/a/x") == {"deny"}
    assert not a.allows("kv/data/a/x", "read")


def test_list_matches_exact_rule_without_trailing_slash_and_sudo():
    a = acl(
        'path "kv/metadata/team" { capabilities = ["list"] }\npath "sys/auth/*" { capabilities = ["update"] }'
    )
    assert a.allows("kv/metadata/team/", "list", list_op=True)
    assert not a.allows("kv/metadata/team/", "list")
    assert a.allows("sys/auth/jwt", "update") and not a.allows("sys/auth/jwt", "update", sudo=True)
    assert ACL([], root=True).allows("sys/auth/jwt", "update", sudo=True)
