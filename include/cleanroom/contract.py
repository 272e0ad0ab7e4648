"""The collaboration as governance holds it: the contract and the query documents.

A **contract** (CGS ``/contracts/{id}``, its ``data``) names the members who must accept it, the
datasets (each owned by one member, with its columns), the smallest group a result may show
(``minGroupSize``, the floor under every owner's k), who receives results, and the clean room's
approved policy: the measurement of the whole Spark job that alone may receive the datasets' keys
(``include.cleanroom.manifest.job_measurement``) and governance's service identity, which that
job pins (``governanceKey``, base64 PEM).

A **query document** (CGS ``/userdocuments/{id}``, its ``data``) is one Spark SQL query against
an accepted contract, checked against the analysis rules of the datasets' owners
(``include.cleanroom.sql.check_query``). Its approvers are the owners of the datasets it reads:
it becomes runnable only when each of them (or the automation an owner registered under its
auto-approval policy) has voted to accept it. The runtime checks it against the rules again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from include.cleanroom.errors import CleanroomUserError
from include.cleanroom.names import (
    COLUMN_PATTERN,
    DATASET_PATTERN,
    MEMBER_PATTERN,
    validate_column,
    validate_dataset_name,
    validate_document_id,
    validate_member,
)

CONTRACT_KIND = "sdp.cleanroom.spark/v1"
QUERY_KIND = "sdp.cleanroom.spark-sql/v1"
COLUMN_TYPES = ("string", "int", "bigint", "double", "boolean", "date")
DATA_FORMATS = ("csv", "parquet")
MIN_GROUP_SIZE_FLOOR = 2

# One dataset of a contract as JSON Schema (the ``datasets`` Param of ``cleanroom_create``): the
# same rules as ``Dataset.from_data``, which checks them again where the work runs.
DATASET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "owner", "schema"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": DATASET_PATTERN},
        "owner": {"type": "string", "pattern": MEMBER_PATTERN},
        "format": {"type": "string", "enum": list(DATA_FORMATS)},
        "schema": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "type"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "pattern": COLUMN_PATTERN},
                    "type": {"type": "string", "enum": list(COLUMN_TYPES)},
                },
            },
        },
    },
}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def application_file() -> Path:
    """The clean room's Spark application (``include/cleanroom/spark_job.py``)."""
    return Path(__file__).with_name("spark_job.py")


def file_sha256(path: Path | str | None = None) -> str:
    """sha256 of a file (by default the Spark application's main file)."""
    return hashlib.sha256(Path(path or application_file()).read_bytes()).hexdigest()


@dataclass(frozen=True)
class Dataset:
    name: str
    owner: str
    columns: tuple[tuple[str, str], ...]
    format: str = "csv"

    def to_data(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "owner": self.owner,
            "format": self.format,
            "schema": [{"name": n, "type": t} for n, t in self.columns],
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Dataset:
        if not isinstance(data, Mapping):
            raise CleanroomUserError(f"a dataset must be an object with name, owner and schema, not {data!r}")
        name = validate_dataset_name(data.get("name"))
        owner = validate_member(data.get("owner"))
        fmt = data.get("format", "csv")
        if fmt not in DATA_FORMATS:
            raise CleanroomUserError(f"dataset {name}: format {fmt!r} is not one of {', '.join(DATA_FORMATS)}")
        schema = data.get("schema") or data.get("columns")
        if not isinstance(schema, list) or not schema:
            raise CleanroomUserError(f"dataset {name}: 'schema' must list its columns ({{name, type}})")
        columns: list[tuple[str, str]] = []
        for col in schema:
            if not isinstance(col, Mapping):
                raise CleanroomUserError(f"dataset {name}: each column is an object {{name, type}}, not {col!r}")
            cname = validate_column(col.get("name"))
            ctype = col.get("type", "string")
            if ctype not in COLUMN_TYPES:
                raise CleanroomUserError(
                    f"dataset {name}: column {cname} has type {ctype!r}; use one of {', '.join(COLUMN_TYPES)}"
                )
            if cname.lower() in {c.lower() for c, _ in columns}:
                raise CleanroomUserError(f"dataset {name}: column {cname} appears twice")
            columns.append((cname, ctype))
        return cls(name=name, owner=owner, columns=tuple(columns), format=fmt)


@dataclass(frozen=True)
class Contract:
    contract_id: str
    title: str
    members: tuple[str, ...]
    datasets: tuple[Dataset, ...]
    min_group_size: int
    measurement: str
    recipient: str
    governance_key: str = ""

    def to_data(self) -> dict[str, Any]:
        """The contract's ``data`` in governance."""
        return {
            "kind": CONTRACT_KIND,
            "title": self.title,
            "members": list(self.members),
            "datasets": [d.to_data() for d in self.datasets],
            "minGroupSize": self.min_group_size,
            "resultRecipient": self.recipient,
            "policy": {"measurement": self.measurement, "governanceKey": self.governance_key},
        }

    @classmethod
    def from_data(cls, contract_id: str, data: Mapping[str, Any]) -> Contract:
        """Build and validate a contract from its governance ``data`` (or the DAG's params)."""
        validate_document_id(contract_id, "contract id")
        if not isinstance(data, Mapping):
            raise CleanroomUserError("the contract data must be an object")
        if data.get("kind", CONTRACT_KIND) != CONTRACT_KIND:
            raise CleanroomUserError(f"contract {contract_id} is of kind {data.get('kind')!r}, not {CONTRACT_KIND}")
        members_raw = data.get("members")
        if not isinstance(members_raw, list) or len(members_raw) < 2:
            raise CleanroomUserError("a clean room needs at least two members")
        members = tuple(validate_member(m) for m in members_raw)
        if len(set(members)) != len(members):
            raise CleanroomUserError("the members list names someone twice")
        datasets = tuple(Dataset.from_data(d) for d in (data.get("datasets") or []))
        if not datasets:
            raise CleanroomUserError("the contract declares no dataset")
        names = [d.name for d in datasets]
        if len(set(names)) != len(names):
            raise CleanroomUserError("two datasets of the contract have the same name")
        strangers = sorted({d.owner for d in datasets} - set(members))
        if strangers:
            raise CleanroomUserError(f"dataset owner(s) {', '.join(strangers)} are not members of the contract")
        k = data.get("minGroupSize")
        if isinstance(k, bool) or not isinstance(k, int) or k < MIN_GROUP_SIZE_FLOOR:
            raise CleanroomUserError(
                f"minGroupSize must be a whole number of at least {MIN_GROUP_SIZE_FLOOR}, not {k!r}"
            )
        recipient = validate_member(data.get("resultRecipient"))
        if recipient not in members:
            raise CleanroomUserError(f"the result recipient {recipient} is not a member of the contract")
        policy = data.get("policy") or {}
        measurement = str(policy.get("measurement") or "")
        if not _SHA256.match(measurement):
            raise CleanroomUserError("the contract's policy.measurement must be a sha256 (64 lowercase hex digits)")
        governance_key = str(policy.get("governanceKey") or "")
        if not governance_key:
            raise CleanroomUserError("the contract's policy.governanceKey (governance's service identity) is missing")
        title = str(data.get("title") or contract_id)[:200]
        return cls(contract_id, title, members, datasets, k, measurement, recipient, governance_key)

    def dataset(self, name: str) -> Dataset:
        for d in self.datasets:
            if d.name == name:
                return d
        raise CleanroomUserError(f"{name!r} is not a dataset of contract {self.contract_id}")

    def owners(self, dataset_names: tuple[str, ...] | list[str]) -> list[str]:
        """The members who must approve a query reading these datasets (sorted, unique)."""
        return sorted({self.dataset(n).owner for n in dataset_names})


@dataclass(frozen=True)
class QueryDocument:
    document_id: str
    contract_id: str
    sql: str
    min_group_size: int
    datasets: tuple[Dataset, ...] = field(default_factory=tuple)  # those the query reads

    def to_data(self) -> dict[str, Any]:
        """The document's ``data``: the query, and each dataset it reads with its owner, format and
        schema (what the clean room needs, approved together with the query)."""
        return {
            "kind": QUERY_KIND,
            "query": self.sql,
            "datasets": [d.to_data() for d in self.datasets],
            "minGroupSize": self.min_group_size,
        }

    @property
    def approvers(self) -> list[str]:
        return sorted({d.owner for d in self.datasets})

    @classmethod
    def create(
        cls,
        document_id: str,
        contract: Contract,
        sql: str,
        rules: Mapping[str, Any],
        min_group_size: int | None = None,
    ) -> QueryDocument:
        """Check ``sql`` against the owners' analysis rules (``rules``: dataset -> AnalysisRules);
        the threshold is never below the contract's. Raises the SQL check's ``QueryRefused``
        (a ``CleanroomUserError``) naming the rule."""
        from include.cleanroom.sql import check_query  # noqa: PLC0415 - sqlglot only where queries are checked

        validate_document_id(document_id, "query document id")
        k = contract.min_group_size if min_group_size is None else int(min_group_size)
        if k < contract.min_group_size:
            raise CleanroomUserError(
                f"minGroupSize {k} is below the contract's {contract.min_group_size}: a query may only be stricter"
            )
        plan = check_query(sql, dict(rules), k)
        return cls(
            document_id,
            contract.contract_id,
            sql,
            k,
            tuple(contract.dataset(n) for n in sorted(plan.datasets)),
        )

    @classmethod
    def from_data(
        cls, document_id: str, contract: Contract, data: Mapping[str, Any], rules: Mapping[str, Any]
    ) -> QueryDocument:
        """Re-check a document read back from governance against its contract and the rules."""
        if not isinstance(data, Mapping) or data.get("kind") != QUERY_KIND:
            raise CleanroomUserError(f"document {document_id} is not a clean-room query ({QUERY_KIND})")
        doc = cls.create(document_id, contract, str(data.get("query") or ""), rules, data.get("minGroupSize"))
        if doc.to_data() != dict(data):
            raise CleanroomUserError(
                f"document {document_id} does not describe its query as this platform would (datasets, owners, "
                "schemas or minimum group size differ)"
            )
        return doc
