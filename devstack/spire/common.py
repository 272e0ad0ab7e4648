"""SPIFFE IDs and selectors, as SPIRE validates and compares them."""

from __future__ import annotations

import re

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
                raise SpiffeIdError(
                    f"invalid SPIFFE ID {value!r}: path cannot contain empty, dot or dot-dot segments"
                )
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
