"""Run a checked query plan inside Spark, with the owners' thresholds and differential privacy.

(Interface first; the implementation follows in the next commit.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from include.cleanroom.sql import QueryPlan


@dataclass(frozen=True)
class EnforcedResult:
    """What a run releases: ``columns``, ``rows`` (tuples, in ``columns`` order), the number of
    groups suppressed below k, the epsilon spent (0 without DP), and under DP the stated error
    bound: ``dp_intervals[alias][i]`` = (lo, hi), a ``confidence`` interval around the released
    value of row i that holds the true (bounded) value."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    suppressed_groups: int
    epsilon_spent: float
    confidence: float | None = None
    dp_intervals: Mapping[str, list[tuple[float, float]]] = field(default_factory=dict)
    dp_scales: Mapping[str, float] = field(default_factory=dict)


def run_plan(spark, plan: QueryPlan, views: Mapping[str, Any], rng_seed: int | None = None,
             alpha: float = 0.05) -> EnforcedResult:
    """Run ``plan`` over ``views`` (dataset name -> Spark DataFrame of its plaintext)."""
    raise NotImplementedError
