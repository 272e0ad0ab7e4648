"""A small HCL reader: enough for Vault ACL policies and SPIRE agent/server configuration files.

Supported: attributes ``key = value`` (or ``key: value``), blocks ``type "label" ... { body }``,
strings with escapes, heredocs (``<<EOF`` / ``<<-EOF``), numbers, booleans, ``null``, lists and
objects, and the three comment styles (``#``, ``//``, ``/* */``). Not supported: expressions,
interpolation, functions (neither Vault policies nor SPIRE configuration use them).

``loads(text)`` returns a dict: an attribute maps to its value; a block type maps to a list of
:class:`Block` (labels and body), in file order. A document starting with ``{`` is read as JSON
(Vault accepts policies in JSON).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any


class HCLError(ValueError):
    """The text is not valid HCL (message names the line)."""


@dataclass
class Block:
    labels: tuple[str, ...]
    body: dict[str, Any] = field(default_factory=dict)


_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\n]+)
  | (?P<comment>\#[^\n]*|//[^\n]*|/\*.*?\*/)
  | (?P<heredoc><<-?(?P<tag>[A-Za-z_][A-Za-z0-9_]*)[ \t]*\n)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.\-]*)
  | (?P<punct>[{}\[\],=:])
    """,
    re.VERBOSE | re.DOTALL,
)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "/": "/"}


def _unquote(raw: str, line: int) -> str:
    out = []
    i = 0
    body = raw[1:-1]
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            i += 1
            if i >= len(body):
                raise HCLError(f"line {line}: dangling escape in string")
            esc = body[i]
            if esc in _ESCAPES:
                out.append(_ESCAPES[esc])
            elif esc == "u" and i + 4 < len(body) + 1:
                out.append(chr(int(body[i + 1 : i + 5], 16)))
                i += 4
            else:
                raise HCLError(f"line {line}: unknown escape \\{esc}")
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _tokenize(text: str) -> list[tuple[str, Any, int]]:
    tokens: list[tuple[str, Any, int]] = []
    pos = 0
    line = 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise HCLError(f"line {line}: unexpected character {text[pos]!r}")
        kind = m.lastgroup if m.lastgroup != "tag" else "heredoc"
        value = m.group(0)
        if m.group("heredoc"):
            tag = m.group("tag")
            indent = value.startswith("<<-")
            end = re.compile(rf"^[ \t]*{re.escape(tag)}[ \t]*$", re.MULTILINE)
            em = end.search(text, m.end())
            if not em:
                raise HCLError(f"line {line}: heredoc {tag} is not terminated")
            content = text[m.end() : em.start()]
            if indent:
                lines = content.split("\n")
                widths = [len(ln) - len(ln.lstrip()) for ln in lines if ln.strip()]
                cut = min(widths) if widths else 0
                content = "\n".join(ln[cut:] for ln in lines)
            tokens.append(("string", content, line))
            line += text.count("\n", pos, em.end())
            pos = em.end()
            continue
        if kind == "string":
            tokens.append(("string", _unquote(value, line), line))
        elif kind == "number":
            tokens.append(("number", float(value) if any(c in value for c in ".eE") else int(value), line))
        elif kind == "ident":
            tokens.append(("ident", value, line))
        elif kind == "punct":
            tokens.append(("punct", value, line))
        line += value.count("\n")
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, Any, int]]):
        self.tokens = tokens
        self.i = 0

    def peek(self) -> tuple[str, Any, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def next(self) -> tuple[str, Any, int]:
        tok = self.peek()
        if tok is None:
            last = self.tokens[-1][2] if self.tokens else 1
            raise HCLError(f"line {last}: unexpected end of input")
        self.i += 1
        return tok

    def expect(self, value: str) -> None:
        kind, val, line = self.next()
        if kind != "punct" or val != value:
            raise HCLError(f"line {line}: expected {value!r}, found {val!r}")

    def body(self, closing: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        while True:
            tok = self.peek()
            if tok is None:
                if closing is not None:
                    raise HCLError("unexpected end of input: missing '}'")
                return out
            kind, val, line = tok
            if kind == "punct" and val == closing:
                self.i += 1
                return out
            if kind == "punct" and val == ",":
                self.i += 1
                continue
            if kind not in ("ident", "string"):
                raise HCLError(f"line {line}: expected a name, found {val!r}")
            self.i += 1
            name = val
            nxt = self.peek()
            if nxt is None:
                raise HCLError(f"line {line}: {name} has no value")
            if nxt[0] == "punct" and nxt[1] in ("=", ":"):
                self.i += 1
                out[name] = self.value()
                continue
            labels = []
            while (tok := self.peek()) is not None and tok[0] in ("string", "ident"):
                labels.append(tok[1])
                self.i += 1
            self.expect("{")
            block = Block(tuple(labels), self.body("}"))
            existing = out.setdefault(name, [])
            if not isinstance(existing, list) or (existing and not isinstance(existing[0], Block)):
                raise HCLError(f"line {line}: {name} is both an attribute and a block")
            existing.append(block)

    def value(self) -> Any:
        kind, val, line = self.next()
        if kind in ("string", "number"):
            return val
        if kind == "ident":
            if val == "true":
                return True
            if val == "false":
                return False
            if val == "null":
                return None
            raise HCLError(f"line {line}: unsupported expression {val!r}")
        if val == "[":
            items = []
            while True:
                tok = self.peek()
                if tok is None:
                    raise HCLError(f"line {line}: list is not closed")
                if tok[0] == "punct" and tok[1] == "]":
                    self.i += 1
                    return items
                items.append(self.value())
                tok = self.peek()
                if tok is not None and tok[0] == "punct" and tok[1] == ",":
                    self.i += 1
        if val == "{":
            obj = self.body("}")
            return {
                k: (v[0].body if isinstance(v, list) and v and isinstance(v[0], Block) else v)
                for k, v in obj.items()
            }
        raise HCLError(f"line {line}: unexpected {val!r}")


def loads(text: str) -> dict[str, Any]:
    """Parse an HCL (or JSON) document into attributes and blocks."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise HCLError(f"invalid JSON: {exc}") from exc
    return _Parser(_tokenize(text)).body(None)


def blocks(body: dict[str, Any], name: str) -> list[Block]:
    """The blocks of type ``name`` in ``body`` (empty when there are none)."""
    found = body.get(name, [])
    return [b for b in found if isinstance(b, Block)] if isinstance(found, list) else []
