"""Vault ACL policies: parsing (HCL or JSON) and path matching with Vault's priority rules.

Matching follows Vault's ``acl.go``:

* an exact path rule wins outright (for LIST, the path without its trailing ``/`` too);
* otherwise every matching non-exact rule is a candidate: the longest ``*`` prefix rule and each
  ``+`` segment-wildcard rule (which may also end in ``*``); the highest priority one applies,
  where a rule has *lower* priority when (in order) its first ``+``/``*`` comes earlier, it ends in
  ``*`` and the other does not, it has more ``+`` segments, it is shorter, it sorts lower;
* rules for the same path in several policies of one token are merged (union), and ``deny``
  overrides everything on that path.
"""

from __future__ import annotations

from dataclasses import dataclass

from devstack.hcl import Block, HCLError, loads

CAPABILITIES = frozenset(
    {"create", "read", "update", "patch", "delete", "list", "sudo", "deny", "subscribe", "recover"}
)
_LEGACY = {
    "deny": {"deny"},
    "read": {"read", "list"},
    "write": {"create", "read", "update", "delete", "list"},
    "sudo": {"create", "read", "update", "delete", "list", "sudo"},
}


class PolicyError(ValueError):
    """The policy text is invalid (Vault answers 400 ``failed to parse policy``)."""


def parse_policy(text: str) -> dict[str, frozenset[str]]:
    """``{path: capabilities}`` of a policy document (HCL or JSON)."""
    try:
        doc = loads(text)
    except HCLError as exc:
        raise PolicyError(f"failed to parse policy: {exc}") from exc
    rules: dict[str, set[str]] = {}
    raw = doc.get("path", [])
    entries: list[tuple[str, dict]] = []
    if isinstance(raw, dict):  # JSON form: {"path": {"a/*": {"capabilities": [...]}}}
        entries = [(k, v) for k, v in raw.items()]
    elif isinstance(raw, list):
        for block in raw:
            if not isinstance(block, Block) or len(block.labels) != 1:
                raise PolicyError("failed to parse policy: a path block needs exactly one label")
            entries.append((block.labels[0], block.body))
    else:
        raise PolicyError("failed to parse policy: 'path' must be blocks")
    unknown = [k for k in doc if k not in ("path", "name")]
    if unknown:
        raise PolicyError(f"failed to parse policy: invalid key {unknown[0]!r}")
    for path, body in entries:
        if not isinstance(body, dict):
            raise PolicyError(f"failed to parse policy: path {path!r} has no body")
        caps: set[str] = set()
        if "policy" in body:
            legacy = body["policy"]
            if legacy not in _LEGACY:
                raise PolicyError(f"failed to parse policy: path {path!r}: invalid policy {legacy!r}")
            caps |= _LEGACY[legacy]
        listed = body.get("capabilities", [])
        if not isinstance(listed, list):
            raise PolicyError(f"failed to parse policy: path {path!r}: capabilities must be a list")
        for cap in listed:
            if cap not in CAPABILITIES:
                raise PolicyError(f"failed to parse policy: path {path!r}: invalid capability {cap!r}")
            caps.add(cap)
        key = path.lstrip("/")
        rules.setdefault(key, set()).update(caps)
    return {k: frozenset(v) for k, v in rules.items()}


def _normalise(caps: set[str]) -> frozenset[str]:
    return frozenset({"deny"}) if "deny" in caps else frozenset(caps)


@dataclass(frozen=True)
class _Candidate:
    path: str
    first_wc: int
    is_prefix: bool
    wildcards: int
    caps: frozenset[str]

    def key(self) -> tuple:
        # Higher tuple = higher priority (see the module docstring).
        return (self.first_wc, not self.is_prefix, -self.wildcards, len(self.path), self.path)


class ACL:
    """The merged rules of a token's policies."""

    def __init__(self, policies: list[dict[str, frozenset[str]]], *, root: bool = False):
        self.root = root
        merged: dict[str, set[str]] = {}
        for policy in policies:
            for path, caps in policy.items():
                merged.setdefault(path, set()).update(caps)
        self.exact: dict[str, frozenset[str]] = {}
        self.prefix: dict[str, frozenset[str]] = {}
        self.segment: dict[str, frozenset[str]] = {}
        for path, caps in merged.items():
            norm = _normalise(caps)
            if "+" in path.split("/"):
                self.segment[path] = norm
            elif path.endswith("*"):
                self.prefix[path[:-1]] = norm
            else:
                self.exact[path] = norm

    def capabilities(self, path: str, *, list_op: bool = False) -> frozenset[str]:
        """The capabilities that apply to ``path`` (a request path without ``/v1/``)."""
        if self.root:
            return CAPABILITIES - {"deny"}
        path = path.lstrip("/")
        if path in self.exact:
            return self.exact[path]
        if list_op and path.endswith("/") and path.rstrip("/") in self.exact:
            return self.exact[path.rstrip("/")]
        candidates: list[_Candidate] = []
        best_prefix = max((p for p in self.prefix if path.startswith(p)), key=len, default=None)
        if best_prefix is not None:
            candidates.append(_Candidate(best_prefix, len(best_prefix), True, 0, self.prefix[best_prefix]))
        for rule, caps in self.segment.items():
            if segment_match(rule, path):
                first = min(i for i in (rule.find("+"), rule.find("*")) if i >= 0)
                candidates.append(
                    _Candidate(rule, first, rule.endswith("*"), rule.split("/").count("+"), caps)
                )
        if not candidates:
            return frozenset()
        return max(candidates, key=_Candidate.key).caps

    def allows(self, path: str, capability: str, *, sudo: bool = False, list_op: bool = False) -> bool:
        caps = self.capabilities(path, list_op=list_op)
        if "deny" in caps or capability not in caps:
            return False
        return not sudo or "sudo" in caps


def segment_match(rule: str, path: str) -> bool:
    """Whether ``rule`` (with ``+`` segments, maybe ending in ``*``) matches ``path``."""
    rule_parts = rule.split("/")
    path_parts = path.split("/")
    glob = rule.endswith("*")
    if glob:
        if len(path_parts) < len(rule_parts):
            return False
    elif len(path_parts) != len(rule_parts):
        return False
    for i, seg in enumerate(rule_parts):
        last = i == len(rule_parts) - 1
        if last and glob:
            return path_parts[i].startswith(seg[:-1])
        if seg == "+":
            continue
        if seg != path_parts[i]:
            return False
    return True


def prefix_match(rule: str, path: str) -> bool:
    """Whether a plain rule (exact or ending in ``*``) matches ``path``."""
    if rule.endswith("*"):
        return path.startswith(rule[:-1])
    return path == rule


DEFAULT_POLICY = """
# Built into Vault: every token gets it unless created with no_default_policy.
path "auth/token/lookup-self" {
    capabilities = ["read"]
}
path "auth/token/renew-self" {
    capabilities = ["update"]
}
path "auth/token/revoke-self" {
    capabilities = ["update"]
}
path "sys/capabilities-self" {
    capabilities = ["update"]
}
path "sys/internal/ui/resultant-acl" {
    capabilities = ["read"]
}
"""
