"""Label and field selectors as kube-apiserver parses and matches them (no code copied).

Label selectors follow ``staging/src/k8s.io/apimachinery/pkg/labels/selector.go`` (``Parse``: the
lexer's special symbols ``= ! ( ) , < >``, requirements ``key``, ``!key``, ``key=v``, ``key==v``,
``key!=v``, ``key in (a,b)``, ``key notin (a,b)``, ``key>n``, ``key<n``; keys must be qualified names
and values label values (``staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go``);
``notin`` and ``!=`` match objects without the label). Field selectors follow
``staging/src/k8s.io/apimachinery/pkg/fields/selector.go`` (``ParseSelector``: ``,``-separated
``f=v``, ``f==v``, ``f!=v``, backslash escapes) and, for custom resources, only ``metadata.name``
and ``metadata.namespace`` are known (``crConverter.ConvertFieldLabel`` in
``staging/src/k8s.io/apiextensions-apiserver/pkg/apiserver/conversion/converter.go``; the CRD
declares no ``selectableFields``). Any error is the caller's 400 BadRequest (``ListResource`` in
``staging/src/k8s.io/apiserver/pkg/endpoints/handlers/get.go``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

SPECIAL = set("=!(),<>")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
CR_FIELDS = ("metadata.name", "metadata.namespace")


class SelectorError(ValueError):
    """A selector the API server refuses (400 BadRequest with this message)."""


def label_key_errors(key: str) -> list[str]:
    """``IsQualifiedName``: an optional DNS-subdomain prefix (<= 253) and '/', then a name (<= 63)."""
    errs = []
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
        errs.append("prefix part must be a lowercase RFC 1123 subdomain")
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    elif not QUALIFIED_NAME.match(name):
        errs.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with "
            "an alphanumeric character"
        )
    return errs


def label_value_errors(value: str) -> list[str]:
    if len(value) > 63:
        return ["must be no more than 63 characters"]
    if not LABEL_VALUE.match(value):
        return [
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character"
        ]
    return []


def _tokens(text: str) -> list[tuple[str, str]]:
    """The lexer of selector.go: identifiers, the operators and parentheses, commas."""
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c in SPECIAL:
            two = text[i : i + 2]
            if two in ("==", "!="):
                out.append(("op", two))
                i += 2
                continue
            out.append(("op" if c in "=!<>" else c, c))
            i += 1
            continue
        j = i
        while j < len(text) and not text[j].isspace() and text[j] not in SPECIAL:
            j += 1
        word = text[i:j]
        out.append(("op", word) if word in ("in", "notin") else ("id", word))
        i = j
    return out


LabelRequirement = tuple[str, str, tuple[str, ...]]  # key, operator, values


def parse_labels(text: str) -> list[LabelRequirement]:
    toks = _tokens(text)
    reqs: list[LabelRequirement] = []
    i = 0

    def peek(k: int = 0) -> tuple[str, str]:
        return toks[i + k] if i + k < len(toks) else ("end", "")

    while i < len(toks):
        kind, val = peek()
        negate = False
        if (kind, val) == ("op", "!"):
            negate, i = True, i + 1
            kind, val = peek()
        if kind != "id":
            raise SelectorError(f"found '{val or 'EOS'}', expected: !, identifier, or 'end of string'")
        key = val
        i += 1
        errs = label_key_errors(key)
        if errs:
            raise SelectorError(f'unable to parse requirement: key: Invalid value: "{key}": {"; ".join(errs)}')
        kind, val = peek()
        if negate:
            if kind not in ("end", ","):
                raise SelectorError(f"found '{val}', expected: ',' or 'end of string'")
            reqs.append((key, "!", ()))
        elif kind in ("end", ","):
            reqs.append((key, "exists", ()))
        elif kind == "op" and val in ("=", "==", "!=", ">", "<"):
            i += 1
            vkind, value = peek()
            if vkind == "id":
                i += 1
            elif vkind in ("end", ","):
                value = ""
            else:
                raise SelectorError(f"found '{value}', expected: identifier")
            if val in (">", "<"):
                if not re.fullmatch(r"[+-]?[0-9]+", value):
                    raise SelectorError(
                        f"unable to parse requirement: values[0]: Invalid value: \"{value}\": for 'Gt', 'Lt' "
                        "operators, the value must be an integer"
                    )
            elif label_value_errors(value):
                raise SelectorError(
                    f'unable to parse requirement: values[0][{key}]: Invalid value: "{value}": '
                    + "; ".join(label_value_errors(value))
                )
            reqs.append((key, "=" if val == "==" else val, (value,)))
        elif kind == "op" and val in ("in", "notin"):
            i += 1
            if peek()[0] != "(":
                raise SelectorError(f"found '{peek()[1] or 'EOS'}', expected: '('")
            i += 1
            values: list[str] = []
            while True:
                vkind, value = peek()
                if vkind == "id":
                    values.append(value)
                    i += 1
                    vkind, value = peek()
                    if vkind == ",":
                        i += 1
                        continue
                if vkind == ")":
                    i += 1
                    break
                if vkind == "," and not values:  # "(,a)": an empty value first
                    values.append("")
                    i += 1
                    continue
                raise SelectorError(f"found '{value or 'EOS'}', expected: ',', ')' or identifier")
            values = values or [""]  # "()" is one empty value, as parseValues answers
            for v in values:
                if label_value_errors(v):
                    raise SelectorError(
                        f'unable to parse requirement: values[0][{key}]: Invalid value: "{v}": '
                        + "; ".join(label_value_errors(v))
                    )
            reqs.append((key, val, tuple(values)))
        else:
            raise SelectorError(f"found '{val}', expected: in, notin, =, ==, !=, gt, lt")
        kind, val = peek()
        if kind == ",":
            i += 1
            if peek()[0] == "end":
                raise SelectorError("found '', expected: identifier after ','")
        elif kind != "end":
            raise SelectorError(f"found '{val}', expected: ',' or 'end of string'")
    return reqs


def labels_match(reqs: list[LabelRequirement], labels: Mapping[str, str] | None) -> bool:
    labels = labels or {}
    for key, op, values in reqs:
        has = key in labels
        value = labels.get(key)
        if op == "exists" and not has:
            return False
        if op == "!" and has:
            return False
        if op in ("=", "in") and (not has or value not in values):
            return False
        if op in ("!=", "notin") and has and value in values:
            return False
        if op in (">", "<"):
            try:
                actual = int(str(value))
            except ValueError:
                return False
            if not has or not (actual > int(values[0]) if op == ">" else actual < int(values[0])):
                return False
    return True


FieldRequirement = tuple[str, str, str]


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, i = [], "", 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            cur += text[i : i + 2]
            i += 2
            continue
        if text[i] == sep:
            parts.append(cur)
            cur = ""
        else:
            cur += text[i]
        i += 1
    parts.append(cur)
    return parts


def _unescape(value: str, whole: str) -> str:
    out, i = "", 0
    while i < len(value):
        if value[i] == "\\":
            if i + 1 >= len(value) or value[i + 1] not in "\\,=":
                raise SelectorError(f"invalid field selector: '{whole}'; invalid escape sequence")
            out += value[i + 1]
            i += 2
            continue
        if value[i] in ",=":
            raise SelectorError(f"invalid field selector: '{whole}'; unescaped {value[i]!r}")
        out += value[i]
        i += 1
    return out


def parse_fields(text: str, known: tuple[str, ...] = CR_FIELDS) -> list[FieldRequirement]:
    reqs: list[FieldRequirement] = []
    if not text.strip():
        return reqs
    for term in _split_unescaped(text, ","):
        for op in ("!=", "==", "="):
            field, found, value = term.partition(op)
            if found and "=" not in field and "!" not in field:
                break
        else:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        field = field.strip()
        if field not in known:
            raise SelectorError(f"field label not supported: {field}")
        reqs.append((field, "!=" if op == "!=" else "=", _unescape(value, text)))
    return reqs


def fields_match(reqs: list[FieldRequirement], get: Callable[[str], str]) -> bool:
    return all((get(f) == v) == (op == "=") for f, op, v in reqs)
