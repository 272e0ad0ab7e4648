"""A data owner's analysis rules: what queries over one of its datasets may compute.

The owner of a dataset keeps these rules in governance with the dataset (changed only by its own
proposal); the clean room's runtime enforces them whatever the query and whoever submits it:
``include.cleanroom.sql.check_query`` checks a query against them on the AST, and
``include.cleanroom.enforce.run_plan`` computes the distinct-identity thresholds and the
differentially private noise. The privacy model, rule by rule: docs/cleanroom-privacy.md.

The governance form (``to_data``/``from_data``), validated against
``include/cleanroom/schemas/analysis-rules.json``::

    {"dataset": "visits_a",
     "identityColumns": ["patient_id"],
     "dimensions": ["region", "age_band"],
     "aggregates": {"visits": ["sum", "avg", "count"], "*": ["count"]},
     "joinColumns": ["patient_id"],
     "k": 5,
     "dp": {"epsilonPerQuery": 0.5, "totalBudget": 5.0, "maxRowsPerIdentity": 1,
            "bounds": {"visits": [0, 10]}}}
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

from include.cleanroom.errors import CleanroomUserError

RULES_KIND = "sdp.cleanroom.analysis-rules/v1"
AGGREGATE_FUNCTIONS = ("count", "sum", "avg", "min", "max")
# functions whose noise scale depends on the values: the owner must bound the measure under DP
BOUNDED_FUNCTIONS = ("sum", "avg")
SCHEMA_PATH = Path(__file__).with_name("schemas") / "analysis-rules.json"
NUMERIC_TYPES = ("int", "bigint", "double")


class RulesError(CleanroomUserError):
    """Analysis rules that are malformed, contradict themselves or are weaker than the contract."""


@lru_cache(maxsize=1)
def rules_schema() -> dict[str, Any]:
    """The JSON schema of the governance form (the one source)."""
    return json.loads(SCHEMA_PATH.read_text())


@dataclass(frozen=True)
class DPRules:
    """Differential privacy asked by an owner (pure epsilon-DP, Laplace mechanism).

    :param epsilon_per_query: privacy loss debited from the dataset's budget for each run
    :param total_budget: the dataset's lifetime budget (governance refuses runs beyond it)
    :param bounds: measure column -> (lo, hi); values are clamped to it before sum/avg
    :param max_rows_per_identity: rows of one identity kept (a random sample) before aggregating
    :param delta: always 0 (the Laplace mechanism is pure DP); kept for the schema's sake
    """

    epsilon_per_query: float
    total_budget: float
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    max_rows_per_identity: int = 1
    delta: float = 0.0

    def to_data(self) -> dict[str, Any]:
        return {
            "epsilonPerQuery": self.epsilon_per_query,
            "totalBudget": self.total_budget,
            "delta": self.delta,
            "maxRowsPerIdentity": self.max_rows_per_identity,
            "bounds": {c: [lo, hi] for c, (lo, hi) in sorted(self.bounds.items())},
        }


@dataclass(frozen=True)
class AnalysisRules:
    """One dataset's analysis rules (see the module docstring for the governance form).

    Column names are kept as the owner wrote them; every comparison is case-insensitive
    (Spark's default), through :meth:`column_role` and the ``*_folded`` helpers.
    """

    dataset: str
    identity_columns: tuple[str, ...]
    dimensions: tuple[str, ...]
    aggregates: Mapping[str, tuple[str, ...]]
    join_columns: tuple[str, ...]
    k: int
    dp: DPRules | None = None

    # ------------------------------------------------------------------ governance form
    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> AnalysisRules:
        """Build and validate rules from their governance form; ``RulesError`` says what is wrong."""
        if not isinstance(data, Mapping):
            raise RulesError(f"analysis rules must be an object, not {type(data).__name__}")
        errors = sorted(jsonschema.Draft202012Validator(rules_schema()).iter_errors(dict(data)), key=str)
        if errors:
            err = errors[0]
            where = "/".join(str(p) for p in err.absolute_path) or "(top)"
            name = data.get("dataset", "?")
            raise RulesError(f"analysis rules of dataset {name!r}: {where}: {err.message}")
        dp_raw = data.get("dp")
        dp = None
        if dp_raw is not None:
            dp = DPRules(
                epsilon_per_query=float(dp_raw["epsilonPerQuery"]),
                total_budget=float(dp_raw["totalBudget"]),
                bounds={c: (float(b[0]), float(b[1])) for c, b in (dp_raw.get("bounds") or {}).items()},
                max_rows_per_identity=int(dp_raw.get("maxRowsPerIdentity", 1)),
                delta=float(dp_raw.get("delta", 0.0)),
            )
        rules = cls(
            dataset=data["dataset"],
            identity_columns=tuple(data["identityColumns"]),
            dimensions=tuple(data["dimensions"]),
            aggregates={m: tuple(fns) for m, fns in data["aggregates"].items()},
            join_columns=tuple(data.get("joinColumns") or ()),
            k=int(data["k"]),
            dp=dp,
        )
        rules._check_consistency()
        return rules

    def to_data(self) -> dict[str, Any]:
        """The governance form (what ``from_data`` reads back to an equal object)."""
        out: dict[str, Any] = {
            "kind": RULES_KIND,
            "dataset": self.dataset,
            "identityColumns": list(self.identity_columns),
            "dimensions": list(self.dimensions),
            "aggregates": {m: list(fns) for m, fns in sorted(self.aggregates.items())},
            "joinColumns": list(self.join_columns),
            "k": self.k,
        }
        if self.dp is not None:
            out["dp"] = self.dp.to_data()
        return out

    # ------------------------------------------------------------------ checks
    def _check_consistency(self) -> None:
        where = f"analysis rules of dataset {self.dataset!r}"
        ids = {c.casefold() for c in self.identity_columns}
        for what, cols in (("dimensions", self.dimensions), ("joinColumns", self.join_columns)):
            folded = [c.casefold() for c in cols]
            if len(set(folded)) != len(folded):
                raise RulesError(f"{where}: {what} names a column twice (names are case-insensitive)")
        clash = ids & {c.casefold() for c in self.dimensions}
        if clash:
            raise RulesError(f"{where}: identity column(s) {sorted(clash)} cannot also be dimensions")
        measures = [m.casefold() for m in self.aggregates]
        if len(set(measures)) != len(measures):
            raise RulesError(f"{where}: aggregates names a measure twice (names are case-insensitive)")
        clash = ids & set(measures)
        if clash:
            raise RulesError(
                f"{where}: identity column(s) {sorted(clash)} cannot be measures "
                "(the runtime counts distinct identities itself)"
            )
        clash = {c.casefold() for c in self.dimensions} & set(measures)
        if clash:
            raise RulesError(f"{where}: column(s) {sorted(clash)} are both a dimension and a measure")
        star = self.aggregates.get("*")
        if star is not None and set(star) != {"count"}:
            raise RulesError(f"{where}: '*' allows only count (COUNT(*)), not {sorted(set(star) - {'count'})}")
        if self.dp is not None:
            dp = self.dp
            if dp.epsilon_per_query > dp.total_budget:
                raise RulesError(
                    f"{where}: dp.epsilonPerQuery {dp.epsilon_per_query} exceeds dp.totalBudget {dp.total_budget}"
                )
            bounded = {m.casefold(): m for m in self.aggregates if m != "*"}
            for col, (lo, hi) in dp.bounds.items():
                if col.casefold() not in bounded:
                    raise RulesError(f"{where}: dp.bounds names {col!r}, which is not a measure in aggregates")
                if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
                    raise RulesError(f"{where}: dp.bounds of {col!r} must be finite with lo < hi, not [{lo}, {hi}]")
            for measure, fns in self.aggregates.items():
                if measure == "*":
                    continue
                if set(fns) & set(BOUNDED_FUNCTIONS) and self.bounds(measure) is None:
                    raise RulesError(
                        f"{where}: measure {measure!r} allows {'/'.join(sorted(set(fns) & set(BOUNDED_FUNCTIONS)))} "
                        "under differential privacy, so dp.bounds must give its [lo, hi]"
                    )
                if set(fns) & {"min", "max"}:
                    raise RulesError(
                        f"{where}: min/max of {measure!r} cannot be released with differential privacy "
                        "(the Laplace mechanism here covers count, sum and avg): remove min/max or dp"
                    )

    def validate(self, contract_k_floor: int) -> AnalysisRules:
        """Refuse rules weaker than the contract: ``k`` below the contract's minimum group size."""
        if self.k < int(contract_k_floor):
            raise RulesError(
                f"analysis rules of dataset {self.dataset!r}: k={self.k} is below the contract's minimum "
                f"group size {contract_k_floor}; an owner's rules may only be stricter"
            )
        return self

    def check_schema(self, columns: Mapping[str, str]) -> AnalysisRules:
        """Refuse rules naming a column the dataset does not have, or a non-numeric measure
        allowing sum/avg. ``columns``: column name -> type (the contract's schema)."""
        where = f"analysis rules of dataset {self.dataset!r}"
        types = {c.casefold(): t for c, t in columns.items()}
        named = [
            *self.identity_columns,
            *self.dimensions,
            *self.join_columns,
            *(m for m in self.aggregates if m != "*"),
        ]
        missing = sorted({c for c in named if c.casefold() not in types})
        if missing:
            raise RulesError(f"{where}: column(s) {missing} are not in the dataset's schema")
        for measure, fns in self.aggregates.items():
            if measure == "*" or not set(fns) & {"sum", "avg"}:
                continue
            if types[measure.casefold()] not in NUMERIC_TYPES:
                raise RulesError(
                    f"{where}: measure {measure!r} has type {types[measure.casefold()]}; sum/avg need a number"
                )
        return self

    # ------------------------------------------------------------------ lookups (case-insensitive)
    def column_role(self, column: str) -> str | None:
        """``identity``, ``dimension``, ``measure``, ``join`` or None for a column the rules do not name.
        A column that is both a join column and something else reports the other role."""
        c = column.casefold()
        if c in {x.casefold() for x in self.identity_columns}:
            return "identity"
        if c in {x.casefold() for x in self.dimensions}:
            return "dimension"
        if c in {x.casefold() for x in self.aggregates if x != "*"}:
            return "measure"
        if c in {x.casefold() for x in self.join_columns}:
            return "join"
        return None

    def allowed_functions(self, measure: str) -> tuple[str, ...]:
        """The aggregate functions allowed on ``measure`` (``*`` for COUNT(*)); empty if none."""
        for m, fns in self.aggregates.items():
            if m.casefold() == measure.casefold():
                return tuple(fns)
        return ()

    def is_join_column(self, column: str) -> bool:
        return column.casefold() in {x.casefold() for x in self.join_columns}

    def is_identity(self, column: str) -> bool:
        return column.casefold() in {x.casefold() for x in self.identity_columns}

    def bounds(self, measure: str) -> tuple[float, float] | None:
        """The DP clamping range of ``measure``, if the owner gave one."""
        if self.dp is None:
            return None
        for m, b in self.dp.bounds.items():
            if m.casefold() == measure.casefold():
                return b
        return None
