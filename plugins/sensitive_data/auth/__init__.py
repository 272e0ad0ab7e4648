"""Authorization of this platform's Airflow: roles and per-DAG permissions (docs/security.md)."""
