"""Clean room operator that drives the parties' storage and their keys in governance: seal each
dataset and publish its key, as its owner's automation identity (see docs/cleanroom.md)."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from include.cleanroom.errors import CleanroomRefused, CleanroomUserError
from sensitive_data.common.errors import SensitiveDataOperatorMixin, translate_errors
from sensitive_data.operators.cleanroom_base import (
    accepted_contract,
    as_list,
    automation,
    governance,
    local_dir,
)


class CleanroomPublishDatasetsOperator(SensitiveDataOperatorMixin, BaseOperator):
    """Seal each dataset and publish its key, as its owner's automation identity, only for the
    datasets whose owner registered that automation to publish them (governance refuses it
    otherwise); owners without such a policy publish themselves.

    :param contract_id: the accepted contract
    :param sources: ``[{dataset, source}]``: each source inside ``<staging>/<owner>/``
    :param storage_dir: where sealed datasets go (default ``$SDP_LOCAL/cleanroom/storage``)
    :param staging_dir: where relative sources are found (default ``$SDP_LOCAL/cleanroom/staging``)
    """

    template_fields: Sequence[str] = (
        "contract_id",
        "sources",
        "storage_dir",
        "staging_dir",
        "cleanroom_governance_conn_id",
    )
    ui_color = "#fdf3e8"

    def __init__(
        self,
        *,
        contract_id: str,
        sources: Any,
        storage_dir: str = "",
        staging_dir: str = "",
        cleanroom_governance_conn_id: str = "cleanroom_governance",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.contract_id = contract_id
        self.sources = sources
        self.storage_dir = storage_dir
        self.staging_dir = staging_dir
        self.cleanroom_governance_conn_id = cleanroom_governance_conn_id

    def execute(self, context) -> dict[str, Any]:
        from include.cleanroom import datasets as sealing
        from include.cleanroom.governance import publishers
        from include.cleanroom.names import party_source, secret_id, secret_name

        out: dict[str, Any] = {}
        with translate_errors():
            hook = governance(self.cleanroom_governance_conn_id)
            contract = accepted_contract(hook, self.contract_id)
            policies = hook.autoapproval_policies(self.contract_id)
            storage = local_dir(self.storage_dir, "storage")
            staging = local_dir(self.staging_dir, "staging")
            items = as_list(self.sources, "sources")
            if not items:
                raise CleanroomUserError("no source given: list {dataset, source} for each dataset")
            for item in items:
                if not isinstance(item, dict) or set(item) != {"dataset", "source"}:
                    raise CleanroomUserError(f"each source is {{dataset, source}}, not {item!r}")
                dataset = contract.dataset(item["dataset"])
                if dataset.name not in publishers(policies, dataset.owner):
                    raise CleanroomRefused(
                        f"{dataset.owner} has not registered automation to publish dataset {dataset.name}: "
                        "it publishes it itself"
                    )
                owner = automation(dataset.owner)
                if owner.member_id() != dataset.owner:
                    raise CleanroomUserError(f"the automation connection of {dataset.owner} is another member's")
                source = party_source(staging, dataset.owner, item["source"])
                sid = secret_id(dataset.owner, dataset.name)
                done = sealing.completed(storage, self.contract_id, dataset, source) if source.is_file() else None
                if done is not None and sid in hook.list_secrets(self.contract_id):
                    self.log.info("dataset %s: already sealed from this source, key in governance", dataset.name)
                    out[dataset.name] = {**done.as_dict(), "secret_id": sid, "reused": True}
                    continue
                sealing.forget(storage, self.contract_id, dataset)
                key = os.urandom(32)
                started = time.monotonic()
                info, tmp = sealing.seal_dataset(source, storage, self.contract_id, dataset, key)
                stored = owner.put_secret(self.contract_id, secret_name(dataset.name), base64.b64encode(key).decode())
                del key
                sealing.commit(info, tmp)
                self.log.info(
                    "dataset %s (owner %s): %d bytes sealed in %.1fs; key stored in governance as %s",
                    dataset.name,
                    dataset.owner,
                    info.size,
                    time.monotonic() - started,
                    stored,
                )
                out[dataset.name] = {**info.as_dict(), "secret_id": stored, "reused": False}
        return {"contract_id": self.contract_id, "datasets": out}
