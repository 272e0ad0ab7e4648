"""GenQuery over the stand-in catalog: collection and data object columns, conditions, paging."""

from __future__ import annotations

import re

from devstack.irods.catalog import READ, Catalog, Coll, DataObj

# column numbers of the iRODS catalog (lib/core/include/rodsGenQuery.h)
COLL_COLUMNS = range(500, 520)
DATA_COLUMNS = range(400, 430)


def coll_value(col: int, c: Coll) -> str | None:
    return {
        500: str(c.id), 501: c.name, 502: c.name.rsplit("/", 1)[0] or "/", 503: c.owner, 504: c.zone,
        505: "0", 506: "", 507: "", 508: c.ctime, 509: c.mtime,
    }.get(col)


def data_value(col: int, o: DataObj, cat: Catalog) -> str | None:
    return {
        401: str(o.id), 402: str(cat.colls[o.coll].id), 403: o.name, 404: "0", 405: "", 406: "generic",
        407: str(o.size), 409: "demoResc", 410: str(cat.physical(o)), 411: o.owner, 412: o.zone,
        413: "2" if cat.is_intermediate(o) else "1", 414: "", 415: o.checksum, 416: "", 417: "0", 418: "",
        419: o.ctime, 420: o.mtime,
        422: "demoResc", 423: "10014", 424: o.mtime,
    }.get(col)


def parse_condition(text: str):
    """``= 'x'``, ``like 'x%'``, ``in ('a','b')`` ... -> (op, [values])."""
    text = text.strip()
    m = re.match(r"(?i)^(not like|like|not in|in|between|<>|!=|>=|<=|=|>|<)\s*(.*)$", text, re.S)
    if not m:
        raise ValueError(f"unsupported condition {text!r}")
    op, rest = m.group(1).lower(), m.group(2).strip()
    if op in ("in", "not in"):
        values = re.findall(r"'([^']*)'", rest)
    elif op == "between":
        values = re.findall(r"'([^']*)'", rest)
    else:
        if not (rest.startswith("'") and rest.endswith("'") and len(rest) >= 2):
            raise ValueError(f"unsupported condition value {rest!r}")
        values = [rest[1:-1]]
    return op, values


def like_regex(pattern: str, upper: bool) -> re.Pattern:
    out = []
    for ch in pattern:
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return re.compile("^" + "".join(out) + "$", re.S | (re.I if upper else 0))


def matches(value: str | None, op: str, values: list[str], upper: bool) -> bool:
    if value is None:
        return False
    v = value.upper() if upper else value
    vals = [x.upper() for x in values] if upper else values
    if op == "=":
        return v == vals[0]
    if op in ("<>", "!="):
        return v != vals[0]
    if op == "like":
        return bool(like_regex(values[0], upper).match(value))
    if op == "not like":
        return not like_regex(values[0], upper).match(value)
    if op == "in":
        return v in vals
    if op == "not in":
        return v not in vals

    def num(x):
        try:
            return float(x)
        except ValueError:
            return x
    a, b = num(v), num(vals[0])
    if type(a) is not type(b):
        a, b = str(a), str(b)
    if op == "between":
        c = num(vals[1])
        return b <= a <= (c if type(c) is type(a) else str(c))
    return {">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b}[op]


def run_query(cat: Catalog, user: str, selects: list[int], conds: list[tuple[int, str]], upper: bool,
              distinct: bool = True) -> list[list[str]]:
    parsed = [(col, *parse_condition(text)) for col, text in conds]
    cols = list(selects) + [c for c, _, _ in parsed]
    with cat.lock:
        if any(c in DATA_COLUMNS for c in cols):
            # narrow by an equality on the collection name when there is one
            coll_eq = [v[0] for c, op, v in parsed if c == 501 and op == "="]
            objs = [o for o in cat.objs.values() if not coll_eq or o.coll == coll_eq[0]]

            def value(col, o):
                if col in DATA_COLUMNS:
                    return data_value(col, o, cat)
                if col in COLL_COLUMNS:
                    return coll_value(col, cat.colls[o.coll])
                return ""
            candidates = [(o.path, o) for o in objs]
        else:
            def value(col, c):
                return coll_value(col, c) if col in COLL_COLUMNS else ""
            candidates = [(c.name, c) for c in cat.colls.values()]
        rows = []
        for path, item in candidates:
            if not all(matches(value(col, item), op, vals, upper) for col, op, vals in parsed):
                continue
            if cat.access(user, path) < READ:
                continue
            rows.append([value(col, item) or "" for col in selects])
    if distinct:
        rows = [list(r) for r in dict.fromkeys(tuple(r) for r in rows)]
    rows.sort()
    return rows
