"""The ``sensitive_data`` Airflow plugin: registers the data stager API on the API server.

Each part is registered on its own: a part that fails to import is logged and left out, so the
plugin (and the other parts) keep loading.
"""

from __future__ import annotations

import logging

from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)


def _fastapi_apps() -> list[dict]:
    apps = []
    try:
        from sensitive_data.stager_api.app import app as stager_app

        apps.append({"app": stager_app, "url_prefix": "/stager", "name": "DCCN data stager API"})
    except Exception:  # noqa: BLE001 - keep the plugin importable when one part is broken
        log.exception("the data stager API could not be loaded")
    return apps


class SensitiveDataPlugin(AirflowPlugin):
    name = "sensitive_data"
    fastapi_apps = _fastapi_apps()
