"""What every pipeline's Airflow-facing code shares (see docs/CONVENTIONS.md, "The shared core").

- ``errors``: one translation of ``include.common.errors`` into Airflow behaviour
  (``translate_errors``, ``SensitiveDataOperatorMixin``);
- ``retries``: retry settings per kind of work (``RETRIES_IO``, ``RETRIES_SERVICE`` ...),
  ``default_args(...)`` and the retry policy that applies them at run time;
- ``http``: the HTTP hook base (on the http provider's ``HttpHook``) that maps status codes to
  the error classes.

The polling-trigger base is ``sensitive_data.triggers.base``.
"""
