"""Who a transfer may run as, and whom an Airflow user may act as.

Two rules, both checked where the work runs (the transfer task) and, for an early answer, by the
stager API:

- :func:`check_stager_user`: a transfer never runs as root, as a system account (uid below
  ``min_uid``, default 1000), as an overflow account such as ``nobody`` (uid above ``max_uid``,
  default 60000 as in login.defs), nor as a user outside the configured allow-list
  (``allowed_users``, or membership of one of ``allowed_groups``). Numeric names are refused: a
  stagerUser is a user name. Nothing configured means nobody is allowed.
- :func:`may_act_as`: an Airflow user acts as the POSIX user and the repository user of the same
  name, unless the ``identities`` setting lists theirs explicitly
  (``{"<airflow user>": {"stagerUser": [...], "drUser": [...]}}``); a listed user gets exactly
  the listed identities and no longer the same-name default.
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from include.stager.errors import UserError


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str


def _groups_of(pw) -> set[str]:
    names = set()
    for gid in _grouplist(pw):
        try:
            names.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return names


def _grouplist(pw) -> list[int]:
    try:
        return os.getgrouplist(pw.pw_name, pw.pw_gid)
    except OSError:
        return [pw.pw_gid]


def check_stager_user(name, *, min_uid: int = 1000, max_uid: int = 60000,
                      allowed_users: Iterable[str] = (), allowed_groups: Iterable[str] = ()) -> Account:
    """The POSIX account a transfer may run as; :class:`UserError` says why ``name`` may not be used."""
    if not isinstance(name, str) or not name.strip():
        raise UserError("stagerUser is empty; give the POSIX user name the transfer runs as")
    if name.strip().lstrip("+-").isdigit():
        raise UserError(f"stagerUser {name!r} is a number; give a user name, not a uid")
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise UserError(f"stagerUser {name!r} is not a user known to the stager's workers") from None
    if pw.pw_uid == 0:
        raise UserError(f"stagerUser {name!r} is root (uid 0): transfers never run as root")
    if pw.pw_uid < min_uid:
        raise UserError(f"stagerUser {name!r} is a system account (uid {pw.pw_uid} < {min_uid}): "
                        "transfers run only as researchers' own accounts")
    if pw.pw_uid > max_uid:
        raise UserError(f"stagerUser {name!r} has uid {pw.pw_uid} above {max_uid} (an overflow or "
                        "service id such as nobody): transfers run only as researchers' own accounts")
    users, groups = set(allowed_users or ()), set(allowed_groups or ())
    if name not in users and not (groups & _groups_of(pw)):
        if not users and not groups:
            raise UserError(f"stagerUser {name!r} may not run transfers: no stager users are configured "
                            "(stager settings allowed_users / allowed_groups)")
        raise UserError(f"stagerUser {name!r} may not run transfers: not in the stager's allowed_users "
                        f"nor a member of its allowed_groups ({', '.join(sorted(groups)) or 'none'})")
    return Account(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)


def identities_of(airflow_user: str, identities: Mapping[str, Mapping[str, Iterable[str]]] | None
                  ) -> tuple[set[str], set[str]]:
    """``(stagerUsers, drUsers)`` the Airflow user may act as."""
    entry = (identities or {}).get(airflow_user)
    if entry is None:
        return {airflow_user}, {airflow_user}

    def names(key: str) -> set[str]:
        value = entry.get(key) or []
        return {value} if isinstance(value, str) else {str(v) for v in value}

    return names("stagerUser"), names("drUser")


def may_act_as(airflow_user: str, stager_user: str, dr_user: str,
               identities: Mapping[str, Mapping[str, Iterable[str]]] | None) -> None:
    """:class:`UserError` unless ``airflow_user`` may act as ``stager_user`` and ``dr_user``."""
    stager_users, dr_users = identities_of(airflow_user, identities)
    if stager_user not in stager_users:
        raise UserError(f"you ({airflow_user}) may only submit jobs as stagerUser "
                        f"{' or '.join(repr(u) for u in sorted(stager_users)) or '(none configured)'}, "
                        f"not {stager_user!r}")
    if dr_user not in dr_users:
        raise UserError(f"you ({airflow_user}) may not use the repository account {dr_user!r}; "
                        f"yours: {', '.join(repr(u) for u in sorted(dr_users)) or '(none configured)'}")
