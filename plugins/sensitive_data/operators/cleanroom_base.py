"""What the clean room's operators share: local directories, hook factories, the contract as accepted.

Errors are translated by the shared ``sensitive_data.common.errors.translate_errors``."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from include.cleanroom.errors import CleanroomUserError

# the connection of an owner's automation identity: fixed by the owner's id in the contract, never
# chosen by whoever triggers a DAG (governance refuses it unless the owner registered a policy)
AUTOMATION_CONN_ID = "cleanroom_automation_{owner}"


def local_dir(configured: str, name: str) -> Path:
    """A configured directory, else ``$SDP_LOCAL/cleanroom/<name>`` (or the temp dir's)."""
    if configured:
        return Path(configured)
    local = os.environ.get("SDP_LOCAL")
    return (Path(local) if local else Path(tempfile.gettempdir()) / "sdp") / "cleanroom" / name


def governance(conn_id: str):
    from sensitive_data.hooks.cleanroom_governance import CleanroomGovernanceHook

    return CleanroomGovernanceHook(conn_id)


def automation(owner: str):
    """The governance hook of ``owner``'s automation identity."""
    from include.cleanroom.names import validate_member

    return governance(AUTOMATION_CONN_ID.format(owner=validate_member(owner)))


def spark(conn_id: str):
    from sensitive_data.hooks.cleanroom_k8s import CleanroomSparkHook

    return CleanroomSparkHook(conn_id)


def as_list(value: Any, what: str) -> list:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise CleanroomUserError(f"{what} must be a list, not {value[:80]!r}") from None
    if not isinstance(value, list | tuple):
        raise CleanroomUserError(f"{what} must be a list")
    return list(value)


def accepted_contract(hook, contract_id: str):
    """The contract as governance accepted it (``include.cleanroom.contract.Contract``)."""
    from include.cleanroom.contract import Contract
    from include.cleanroom.errors import CleanroomRefused
    from include.cleanroom.governance import ItemState, Tally, item_state, pending_reason

    view = hook.get_contract(contract_id)
    state = item_state(view)
    if state is ItemState.MISSING:
        raise CleanroomUserError(f"contract {contract_id} does not exist in governance: run cleanroom_create first")
    if state is not ItemState.ACCEPTED:
        tally = Tally.of(hook.get_proposal(view["proposalId"])) if view.get("proposalId") else None
        raise CleanroomRefused(f"contract {contract_id} is not accepted: {pending_reason(state, tally)}")
    return Contract.from_data(contract_id, view.get("data") or {})


def owners_rules(hook, contract) -> dict:
    """dataset -> the owner's ``AnalysisRules`` as kept in governance (datasets without rules are
    left out: no query may read them)."""
    from include.cleanroom.rules import AnalysisRules

    out = {}
    for d in contract.datasets:
        view = hook.get_rules(contract.contract_id, d.name)
        if view is None:
            continue
        if view.get("ownerId") != d.owner:
            raise CleanroomUserError(f"the rules of dataset {d.name} are not kept by its owner {d.owner}")
        out[d.name] = AnalysisRules.from_data(view.get("rules") or {}).validate(contract.min_group_size)
    return out


def runtime_setup(k8s, gov, contract_id: str, governance_key: str, run: dict | None) -> dict:
    """The SparkApplication of a run (``run``; named by its ``runId``) or its template (``None``:
    what the contract measures)."""
    from include.cleanroom.manifest import build_spark_application, runtime_package

    package = runtime_package(local_dir(str(k8s.setting("runtime_dir", "")), "runtime"))
    return build_spark_application(
        name=run["runId"] if run else "cr-template",
        namespace=k8s.cleanroom_namespace,
        main_application_file=k8s.main_application_file,
        runtime_package_file=f"local://{package.resolve()}",
        cgs_url=gov.runtime_url,
        governance_key=governance_key,
        contract_id=contract_id,
        run=run,
        image=str(k8s.setting("image", "apache/spark:4.0.1-python3")),
        spark_version=str(k8s.setting("spark_version", "4.0.1")),
        service_account=str(k8s.setting("service_account", "spark-cleanroom")),
    )
