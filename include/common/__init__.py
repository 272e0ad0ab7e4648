"""What every pipeline shares, without Airflow: ``errors`` (the error hierarchy), ``progress``
(the progress reporter) and ``paths`` (path confinement). See docs/CONVENTIONS.md."""
