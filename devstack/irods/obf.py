"""Decoding of an obfuscated new password (``iadmin moduser <u> password``, ``ipasswd``).

Written from lib/core/src/obf.cpp (``obfDecodeByKey``, ``obfDecodeByKeyV2``, ``obfGetMD5Hash``) and
``decodePw`` in plugins/database/src/db_plugin.cpp: the client scrambles the new password with
an MD5 of (the acting user's password, the session signature: the hex of the first 16 bytes of the
authentication challenge), chained character by character over a wheel of 77 printable characters;
a random first character and the prefix ``.ObfV2`` precede it, and padding from a fixed string
follows short passwords.
"""

from __future__ import annotations

import hashlib

WHEEL = ([chr(ord("0") + i) for i in range(10)] + [chr(ord("A") + i) for i in range(26)]
         + [chr(ord("a") + i) for i in range(26)] + [chr(ord("!") + i) for i in range(15)])
V2_PREFIX = "A.ObfV2"
PADDING_MARK = "1gCBizHWbwIYyWLo"  # decodePw: "must match clients"
MAX_PASSWORD_LEN = 50


def _key_bytes(key: str) -> bytes:
    buf = key.encode()[:100].ljust(100, b"\0")
    h0 = hashlib.md5(buf).digest()  # noqa: S324 - the protocol's own obfuscation
    h1 = hashlib.md5(h0).digest()  # noqa: S324
    h2 = hashlib.md5(h0 + h1).digest()  # noqa: S324
    h3 = hashlib.md5(h0 + h1).digest()  # noqa: S324
    return (h0 + h1 + h2 + h3)[:61]  # cpKey wraps after buffer + 60


def decode_by_key(text: str, key: str, chaining: bool) -> str:
    ring = _key_bytes(key)
    out, pc = [], 0
    for n, ch in enumerate(text):
        k = ring[n % len(ring)]
        if ch in WHEEL:
            out.append(WHEEL[(WHEEL.index(ch) - k - pc) % len(WHEEL)])
            if chaining:
                pc = ord(ch) & 0xFF
        else:
            out.append(ch)
    return "".join(out)


def decode_new_password(scrambled: str, password: str, signature: str) -> str:
    """``decodePw``: the new password the acting user (``password``) sent in this session."""
    key = (password[:90] + signature[:100])
    hashed = hashlib.md5(key.encode()[:100].ljust(100, b"\0")).hexdigest()  # noqa: S324
    plain = decode_by_key(scrambled, hashed, chaining=True)
    if plain[1:len(V2_PREFIX)] != V2_PREFIX[1:]:
        plain = decode_by_key(scrambled, password, chaining=False)
    else:
        plain = plain[len(V2_PREFIX):]
    plain = plain[:MAX_PASSWORD_LEN]
    cut = plain.find(PADDING_MARK)
    return plain[:cut] if cut >= 0 else plain
