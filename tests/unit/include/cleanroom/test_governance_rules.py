"""The governance rules of include/cleanroom/governance.py, without any service."""

from __future__ import annotations

import pytest

from include.cleanroom.errors import CleanroomRefused
from include.cleanroom.governance import (
    ItemState,
    ProposalState,
    Tally,
    accepted_by,
    automated_owners,
    consent_problem,
    disabled_by,
    item_state,
    missing_approvals,
    pending_reason,
    publishers,
)

PROPOSAL = {
    "proposalState": "Open",
    "requiredVoters": ["analyst", "hospital_a", "hospital_b"],
    "votes": [{"memberId": "analyst", "vote": True}],
}


def test_states_are_read_as_enums():
    assert item_state(None) is ItemState.MISSING
    assert item_state({"state": "Proposed"}) is ItemState.PROPOSED
    with pytest.raises(CleanroomRefused, match="unknown state"):
        item_state({"state": "Bogus"})
    assert Tally.of(PROPOSAL).state is ProposalState.OPEN
    assert Tally.of({"state": "Open"}).state is None  # the real service names it proposalState


def test_tally_names_who_voted_and_who_is_waited_for():
    t = Tally.of(PROPOSAL)
    assert t.accepted == ("analyst",) and t.rejected == () and t.waiting == ("hospital_a", "hospital_b")
    assert not t.resolved
    assert pending_reason(ItemState.PROPOSED, t) == "hospital_a, hospital_b have not voted"
    one = Tally.of({**PROPOSAL, "votes": PROPOSAL["votes"] + [{"memberId": "hospital_a", "vote": True}]})
    assert pending_reason(ItemState.PROPOSED, one) == "hospital_b has not voted"
    rejected = Tally.of({**PROPOSAL, "proposalState": "Rejected", "votes": [{"memberId": "hospital_b", "vote": False}]})
    assert rejected.resolved and pending_reason(ItemState.PROPOSED, rejected) == "rejected by hospital_b"
    assert pending_reason(ItemState.ACCEPTED, None) == ""
    assert pending_reason(ItemState.DRAFT, None) == "it has not been proposed"
    assert pending_reason(ItemState.MISSING, None) == "it does not exist in governance"


def test_consent_names_the_members_who_revoked_it():
    reason = {"code": "ContractDisabled", "message": "Contract has been disabled by the following member(s): m[b,c]."}
    assert disabled_by(reason) == "b, c"
    assert consent_problem("contract c1", {"status": "enabled"}) == ""
    assert consent_problem("contract c1", {"status": "disabled", "reason": reason}) == (
        "consent revoked: execution of contract c1 is disabled by b, c (ContractDisabled)"
    )
    assert disabled_by({"code": "ContractNotAccepted", "message": ""}) == "ContractNotAccepted"


def test_every_owner_must_have_accepted_the_document():
    view = {
        "finalVotes": [{"approverId": "hospital_a", "ballot": "accepted"}, {"approverId": "x", "ballot": "rejected"}]
    }
    assert accepted_by(view) == {"hospital_a"}
    assert missing_approvals(view, ["hospital_b", "hospital_a"]) == ["hospital_b"]
    assert missing_approvals(view, ["hospital_a"]) == []


def test_automation_acts_only_for_owners_with_a_registered_policy():
    policies = [
        {"memberId": "hospital_a", "queries": "analysis-rules", "publish": ["visits_a"]},
        {"memberId": "hospital_b", "queries": None, "publish": ["visits_b"]},
        {"memberId": "analyst", "queries": "analysis-rules", "publish": []},
    ]
    approvers = ["hospital_a", "hospital_b"]
    assert automated_owners(policies, approvers, waiting=["hospital_a", "hospital_b"]) == ["hospital_a"]
    assert automated_owners(policies, approvers, waiting=["hospital_b"]) == []  # a has voted already
    assert automated_owners([], approvers, waiting=approvers) == []
    # the analyst's policy lets nobody vote on documents it does not approve
    assert automated_owners(policies, ["hospital_b"], waiting=["hospital_b", "analyst"]) == []
    assert publishers(policies, "hospital_b") == {"visits_b"}
    assert publishers(policies, "hospital_c") == set()
