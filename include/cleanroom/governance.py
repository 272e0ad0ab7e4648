"""The clean room's governance rules, as plain functions over what governance answers.

States are enums (CGS's own spellings); the rules say whether a contract or query document is in
force, who still has to vote, why execution is disabled, and which data owners may be acted for by
automation. No I/O here: the governance hook fetches, these functions decide, so they are
unit-tested without any service.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from include.cleanroom.errors import CleanroomRefused


class ItemState(StrEnum):
    """A contract's or user document's ``state`` in CGS."""

    DRAFT = "Draft"
    PROPOSED = "Proposed"
    ACCEPTED = "Accepted"
    MISSING = "Missing"  # not in governance (our own marker, never served)


class ProposalState(StrEnum):
    """A proposal's ``proposalState`` (CCF's governance API)."""

    OPEN = "Open"
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    DROPPED = "Dropped"
    WITHDRAWN = "Withdrawn"
    FAILED = "Failed"


class Ballot(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"


QUERY_POLICY = "analysis-rules"  # "accept queries that satisfy my analysis rules"


def item_state(view: Mapping[str, Any] | None) -> ItemState:
    if view is None:
        return ItemState.MISSING
    try:
        return ItemState(str(view.get("state")))
    except ValueError:
        raise CleanroomRefused(f"governance reports an unknown state {view.get('state')!r}") from None


def proposal_state(proposal: Mapping[str, Any] | None) -> ProposalState | None:
    if not proposal:
        return None
    try:
        return ProposalState(str(proposal.get("proposalState")))
    except ValueError:
        return None


@dataclass(frozen=True)
class Tally:
    """Who voted what on a proposal, and who has not voted yet."""

    accepted: tuple[str, ...]
    rejected: tuple[str, ...]
    waiting: tuple[str, ...]
    state: ProposalState | None

    @classmethod
    def of(cls, proposal: Mapping[str, Any] | None) -> Tally:
        proposal = proposal or {}
        votes = {str(v["memberId"]): bool(v["vote"]) for v in proposal.get("votes") or []}
        required = [str(m) for m in proposal.get("requiredVoters") or []]
        return cls(
            accepted=tuple(sorted(m for m, v in votes.items() if v)),
            rejected=tuple(sorted(m for m, v in votes.items() if not v)),
            waiting=tuple(sorted(m for m in required if m not in votes)),
            state=proposal_state(proposal),
        )

    @property
    def resolved(self) -> bool:
        return self.state not in (None, ProposalState.OPEN)


def pending_reason(state: ItemState, tally: Tally | None) -> str:
    """Why a contract or document is not (yet) accepted, naming members: '' when accepted."""
    if state is ItemState.ACCEPTED:
        return ""
    if state is ItemState.MISSING:
        return "it does not exist in governance"
    if state is ItemState.DRAFT or tally is None:
        return "it has not been proposed"
    if tally.rejected:
        return f"rejected by {', '.join(tally.rejected)}"
    if tally.waiting:
        verb = "has" if len(tally.waiting) == 1 else "have"
        return f"{', '.join(tally.waiting)} {verb} not voted"
    return f"its proposal is {tally.state or 'unknown'}"


def disabled_by(reason: Mapping[str, Any] | None) -> str:
    """The members named in CGS's 'disabled by the following member(s): m[a,b].' message."""
    message = str((reason or {}).get("message") or "")
    match = re.search(r"m\[([^\]]*)\]", message)
    if match:
        return ", ".join(m.strip() for m in match.group(1).split(",") if m.strip())
    return message or str((reason or {}).get("code") or "unknown")


def consent_problem(what: str, status: Mapping[str, Any]) -> str:
    """'' when execution is enabled; otherwise why not, naming who revoked consent."""
    if status.get("status") == "enabled":
        return ""
    reason = status.get("reason") or {}
    return (
        f"consent revoked: execution of {what} is disabled by {disabled_by(reason)} ({reason.get('code', 'disabled')})"
    )


def accepted_by(view: Mapping[str, Any]) -> set[str]:
    """The approvers whose final ballot on an accepted document is 'accepted'."""
    return {str(v.get("approverId")) for v in view.get("finalVotes") or [] if v.get("ballot") == Ballot.ACCEPTED.value}


def missing_approvals(view: Mapping[str, Any], owners: Iterable[str]) -> list[str]:
    """Owners of the datasets a document reads who have not accepted it (sorted)."""
    return sorted(set(owners) - accepted_by(view))


def automated_owners(
    policies: Iterable[Mapping[str, Any]], approvers: Iterable[str], waiting: Iterable[str]
) -> list[str]:
    """Approvers still to vote whose registered policy lets their own automation accept queries
    that satisfy their analysis rules (everyone else votes themselves)."""
    with_policy = {str(p.get("memberId")) for p in policies if p.get("queries") == QUERY_POLICY}
    return sorted(set(approvers) & set(waiting) & with_policy)


def publishers(policies: Iterable[Mapping[str, Any]], owner: str) -> set[str]:
    """The datasets an owner registered its automation to seal and publish."""
    return {str(d) for p in policies if p.get("memberId") == owner for d in p.get("publish") or []}
