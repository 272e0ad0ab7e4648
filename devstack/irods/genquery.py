"""GenQuery over the stand-in catalog: the columns python-irodsclient's models use, joined as iRODS joins them.

Column numbers: lib/core/include/irods/rodsGenQuery.h. Semantics from
plugins/database/src/general_query.cpp:

* strict ACLs, as iRODS ships them (4.3: ``acAclPolicy {msiAclPolicy("STRICT"); }`` in
  packaging/core.re.template; 5.x: always, ``control_flag{2}`` in server/api/src/rsGenQuery.cpp):
  ``genqAppendAccessCheck`` keeps, for anyone but a rodsadmin, only the data objects and the
  collections on which the user (or a group of the user) has ``read_object`` or more, whenever the
  query touches R_DATA_MAIN / R_COLL_MAIN; a rodsadmin sees every row;
* ``UPPER_CASE_WHERE`` wraps the *column* in ``upper(...)``; the value is compared as given
  (python-irodsclient's ``case_sensitive=False`` sends it unchanged), and only then narrows;
* ``select distinct`` unless ``NO_DISTINCT``.

The joins follow the tables a query names: data objects (with their collection, access rows and
AVUs), collections (with access rows and AVUs), users (with group membership and AVUs), the one
resource, the zone.
"""

from __future__ import annotations

import re

from devstack.irods.catalog import ACCESS_NAMES, READ, Catalog, Coll, DataObj

ZONE = range(101, 104)
USER = range(201, 210)
RESC = range(301, 319)
DATA = range(401, 425)
COLL = range(500, 510)
DATA_META = range(600, 606)
COLL_META = range(610, 616)
RESC_META = range(630, 636)
USER_META = range(640, 646)
DATA_ACCESS = range(700, 705)
COLL_ACCESS = range(710, 715)
GROUP = range(900, 902)
COLL_USER = range(1300, 1302)
RESC_ID = "10014"


def _in(cols, rng) -> bool:
    return any(c in rng for c in cols)


def coll_values(c: Coll) -> dict[int, str]:
    return {500: str(c.id), 501: c.name, 502: c.name.rsplit("/", 1)[0] or "/", 503: c.owner, 504: c.zone,
            505: "0", 506: "1" if c.inherit else "", 507: c.comments, 508: c.ctime, 509: c.mtime}


def data_values(o: DataObj, cat: Catalog) -> dict[int, str]:
    return {401: str(o.id), 402: str(cat.colls[o.coll].id), 403: o.name, 404: "0", 405: "", 406: o.data_type,
            407: str(o.size), 409: "demoResc", 410: str(cat.physical(o)), 411: o.owner, 412: o.zone,
            413: "2" if cat.is_intermediate(o) else "1", 414: "", 415: o.checksum, 416: o.expiry, 417: "0",
            418: o.comments, 419: o.ctime, 420: o.mtime, 422: "demoResc", 423: RESC_ID, 424: o.mtime}


def meta_values(m: dict, base: int) -> dict[int, str]:
    return {base: m["a"], base + 1: m["v"], base + 2: m["u"], base + 3: str(m["id"]), base + 4: m["ctime"],
            base + 5: m["mtime"]}


def user_values(name: str, info: dict) -> dict[int, str]:
    return {201: str(info["id"]), 202: name, 203: info["type"], 204: info["zone"], 206: info.get("info", ""),
            207: info.get("comment", ""), 208: info["ctime"], 209: info["mtime"]}


def resc_values(cat: Catalog) -> dict[int, str]:
    return {301: RESC_ID, 302: "demoResc", 303: cat.zone, 304: "unixfilesystem", 305: "cache", 306: "localhost",
            307: str(cat.vault), 308: "", 314: "", 310: "", 311: "01700000000", 312: "01700000000", 313: "",
            315: "", 316: "", 317: "", 318: ""}


def access_values(cat: Catalog, who: str, level: int, obj_id: int, base: int) -> dict[int, str]:
    info = cat.users.get(who)
    uid = str(info["id"]) if info else "0"
    row = {base: str(level), base + 1: ACCESS_NAMES.get(level, str(level)), base + 2: "access_type",
           base + 3: uid, base + 4: str(obj_id)}
    if info:
        row.update(user_values(who, info))
        if base == 710:
            row.update({1300: who, 1301: info["zone"]})
    return row


def _expand(rows: list[dict], options: list[dict]) -> list[dict]:
    return [{**r, **o} for r in rows for o in options]


def parse_condition(text: str):
    """``= 'x'``, ``like 'x%'``, ``in ('a','b')``, ``between 'a' 'b'``... -> [(op, [values])] (``||`` ORs)."""
    alternatives = []
    for part in re.split(r"\s*\|\|\s*", text.strip()):
        m = re.match(r"(?i)^(not like|like|not in|in|not between|between|<>|!=|>=|<=|=|>|<)\s*(.*)$", part, re.S)
        if not m:
            raise ValueError(f"unsupported condition {part!r}")
        op, rest = m.group(1).lower(), m.group(2).strip()
        if op in ("in", "not in", "between", "not between"):
            values = re.findall(r"'((?:[^']|'')*)'", rest)
            values = [v.replace("''", "'") for v in values]
        else:
            if not (rest.startswith("'") and rest.endswith("'") and len(rest) >= 2):
                raise ValueError(f"unsupported condition value {rest!r}")
            values = [rest[1:-1].replace("''", "'")]
        alternatives.append((op, values))
    return alternatives


def like_regex(pattern: str) -> re.Pattern:
    out = []
    escape = False
    for ch in pattern:
        if escape:
            out.append(re.escape(ch))
            escape = False
        elif ch == "\\":
            escape = True
        else:
            out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    return re.compile("^" + "".join(out) + "$", re.S)


def _num(x: str):
    try:
        return float(x)
    except ValueError:
        return x


def _cmp(a: str, b: str):
    x, y = _num(a), _num(b)
    if type(x) is not type(y):
        return str(a), str(b)
    return x, y


def matches(value: str | None, op: str, values: list[str], upper: bool) -> bool:
    if value is None:
        return False
    v = value.upper() if upper else value  # upper(column) op 'value as given'
    if op == "=":
        return v == values[0]
    if op in ("<>", "!="):
        return v != values[0]
    if op == "like":
        return bool(like_regex(values[0]).match(v))
    if op == "not like":
        return not like_regex(values[0]).match(v)
    if op == "in":
        return v in values
    if op == "not in":
        return v not in values
    if op in ("between", "not between"):
        lo, x = _cmp(values[0], v)
        hi, x2 = _cmp(values[1], v)
        inside = lo <= x and x2 <= hi
        return inside if op == "between" else not inside
    a, b = _cmp(v, values[0])
    return {">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b}[op]


def candidate_rows(cat: Catalog, cols: list[int], early=lambda row: True) -> list[dict[int, str]]:
    """Rows of the tables the columns name; ``early`` filters a base row before it is joined further."""
    rows: list[dict[int, str]] = []
    if _in(cols, DATA) or _in(cols, DATA_META) or _in(cols, DATA_ACCESS):
        for o in cat.objs.values():
            if not early({501: o.coll, 403: o.name}):
                continue
            coll = cat.colls[o.coll]
            base = [{**coll_values(coll), **data_values(o, cat)}]
            if _in(cols, DATA_META):
                base = _expand(base, [meta_values(m, 600) for m in o.meta])
            if _in(cols, COLL_META):
                base = _expand(base, [meta_values(m, 610) for m in coll.meta])
            if _in(cols, DATA_ACCESS):
                base = _expand(base, [access_values(cat, w, lvl, o.id, 700) for w, lvl in o.acl.items()])
            elif _in(cols, USER):  # DataObject with User: the owner
                base = _expand(base, [user_values(o.owner, cat.users[o.owner])] if o.owner in cat.users else [])
            if _in(cols, RESC):
                base = _expand(base, [resc_values(cat)])
            rows += base
        return rows
    if _in(cols, COLL) or _in(cols, COLL_META) or _in(cols, COLL_ACCESS) or _in(cols, COLL_USER):
        for c in cat.colls.values():
            if not early({501: c.name}):
                continue
            base = [coll_values(c)]
            if _in(cols, COLL_META):
                base = _expand(base, [meta_values(m, 610) for m in c.meta])
            if _in(cols, COLL_ACCESS) or _in(cols, COLL_USER) or _in(cols, USER):
                base = _expand(base, [access_values(cat, w, lvl, c.id, 710) for w, lvl in c.acl.items()])
            rows += base
        return rows
    if _in(cols, USER) or _in(cols, GROUP) or _in(cols, USER_META):
        for name, info in cat.users.items():
            base = [user_values(name, info)]
            if _in(cols, GROUP):  # R_USER_GROUP: every user is in its own group, and in the groups it joined
                groups = [name] + [g for g, gi in cat.users.items()
                                   if gi["type"] == "rodsgroup" and name in gi.get("members", [])]
                base = _expand(base, [{900: str(cat.users[g]["id"]), 901: g} for g in groups])
            if _in(cols, USER_META):
                base = _expand(base, [meta_values(m, 640) for m in info.get("meta", [])])
            rows += base
        return rows
    if _in(cols, RESC) or _in(cols, RESC_META):
        base = [resc_values(cat)]
        return _expand(base, [meta_values(m, 630) for m in cat.resc_meta]) if _in(cols, RESC_META) else base
    if _in(cols, ZONE):
        return [{101: "9000", 102: cat.zone, 103: "local"}]
    return []


def run_query(cat: Catalog, user: str, selects: list[int], conds: list[tuple[int, str]], upper: bool,
              distinct: bool = True) -> list[list[str]]:
    parsed = [(col, parse_condition(text)) for col, text in conds]
    cols = list(selects) + [c for c, _ in parsed]
    unknown = [c for c in cols if c not in KNOWN]
    if unknown:
        raise ValueError(f"GenQuery column(s) {unknown} are not supported by the stand-in")
    # Several conditions on an AVU's attribute name: each starts a join of its own ("When there are
    # multiple AVU conditions, need to adjust the SQL" in general_query.cpp): the item must have an
    # AVU matching each group; the first group also narrows the AVU rows returned.
    extra_groups: list[tuple[int, list]] = []
    for base in (600, 610, 640):
        names = [i for i, (col, _) in enumerate(parsed) if col == base]
        if len(names) < 2:
            continue
        groups, current = [], None
        for cond in parsed:
            if base <= cond[0] < base + 6:
                if cond[0] == base:
                    current = []
                    groups.append(current)
                if current is not None:
                    current.append(cond)
        first = {id(x) for x in groups[0]}
        in_groups = {id(x) for g in groups for x in g}
        parsed = [p for p in parsed if id(p) not in in_groups or id(p) in first]
        extra_groups += [(base, g) for g in groups[1:]]
    meta_of = {}
    if extra_groups:
        meta_of = {401: {str(o.id): o.meta for o in cat.objs.values()},
                   500: {str(c.id): c.meta for c in cat.colls.values()},
                   201: {str(u["id"]): u.get("meta", []) for u in cat.users.values()}}

    def has_avus(row: dict[int, str]) -> bool:
        for base, group in extra_groups:
            key = {600: 401, 610: 500, 640: 201}[base]
            avus = meta_of[key].get(row.get(key, ""), [])
            if not any(all(any(matches(meta_values(m, base)[col], op, vals, upper) for op, vals in alts)
                           for col, alts in group) for m in avus):
                return False
        return True

    def early(partial: dict[int, str]) -> bool:  # the same conditions, on the columns known early
        return all(any(matches(partial[col], op, vals, upper) for op, vals in alts)
                   for col, alts in parsed if col in partial)

    strict = not cat.is_admin(user)
    who = cat.principals(user)
    check_data = strict and (_in(cols, DATA) or _in(cols, DATA_META) or _in(cols, DATA_ACCESS))
    check_coll = strict and (_in(cols, COLL) or check_data)  # a data query joins R_COLL_MAIN on coll_id

    def readable(row: dict[int, str]) -> bool:
        if check_data and not _reads(by_data_id.get(row.get(401, "")), who):
            return False
        return not check_coll or _reads(by_coll_id.get(row.get(500, "")), who)

    with cat.lock:
        by_data_id = {str(o.id): o for o in cat.objs.values()} if check_data else {}
        by_coll_id = {str(c.id): c for c in cat.colls.values()} if check_coll else {}
        rows = []
        for row in candidate_rows(cat, cols, early):
            if all(any(matches(row.get(col), op, vals, upper) for op, vals in alts)
                   for col, alts in parsed) and has_avus(row) and readable(row):
                rows.append([row.get(col, "") for col in selects])
    if distinct:
        rows = [list(r) for r in dict.fromkeys(tuple(r) for r in rows)]
    return rows


def _reads(item, who: set[str]) -> bool:
    return item is not None and any(level >= READ for name, level in item.acl.items() if name in who)


KNOWN = {c for rng in (ZONE, USER, RESC, DATA, COLL, DATA_META, COLL_META, RESC_META, USER_META, DATA_ACCESS,
                       COLL_ACCESS, GROUP, COLL_USER) for c in rng}
