"""Sample data of the demo collaboration (two hospitals' visit lists), used by the demo and the tests.

The DAGs' default Params describe this collaboration: datasets ``visits_a`` (hospital_a) and
``visits_b`` (hospital_b) with the columns below, and a query counting patients seen by both.
"""

from __future__ import annotations

import csv
from pathlib import Path

VISITS = [
    {"name": "patient_id", "type": "string"},
    {"name": "region", "type": "string"},
    {"name": "age_band", "type": "string"},
    {"name": "visits", "type": "int"},
]
QUERY = (
    "SELECT a.region, COUNT(DISTINCT a.patient_id) AS n, SUM(a.visits + b.visits) AS visits "
    "FROM visits_a a JOIN visits_b b ON a.patient_id = b.patient_id GROUP BY a.region"
)
# patients seen by both hospitals per region; "east" (3) is below k=5 and must be suppressed,
# "west" is only in hospital A's data and never joins
SHARED = {"north": 20, "south": 12, "east": 3}


def make_sources(staging: Path) -> dict[str, Path]:
    """hospital_a/visits.csv and hospital_b/visits.csv; returns dataset -> path. Expected result:
    north n=20 visits=20*(2+3), south n=12 visits=12*(2+3), east suppressed."""
    rows_a, rows_b = [], []
    for region, count in SHARED.items():
        for i in range(count):
            pid = f"{region}-{i:03d}"
            rows_a.append([pid, region, "40-49", 2])
            rows_b.append([pid, region, "40-49", 3])
    rows_a += [[f"west-{i:03d}", "west", "20-29", 1] for i in range(9)]
    out = {}
    for name, member, rows in (("visits_a", "hospital_a", rows_a), ("visits_b", "hospital_b", rows_b)):
        path = staging / member / "visits.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow([c["name"] for c in VISITS])
            writer.writerows(rows)
        out[name] = path
    return out
