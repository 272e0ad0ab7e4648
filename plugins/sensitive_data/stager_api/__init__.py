"""The data stager's REST API (``/stager/v1/...``), a FastAPI app served by Airflow's API server."""
