"""Hook for submitting the clean room's SparkApplications to Kubernetes (connection ``cleanroom_k8s``).

A ``kubernetes`` connection as the cncf.kubernetes provider reads it (``kube_config`` JSON,
``kube_config_path`` or ``in_cluster``; ``namespace``), through the provider's ``KubernetesHook``
and the official client. Extras used by the clean room: ``namespace`` (default ``cleanroom``),
``application_file`` (the clean room application as the Spark image sees it, e.g.
``local:///opt/cleanroom/spark_job.py``; default: this installation's
``include/cleanroom/spark_job.py``), ``image``, ``spark_version``, ``service_account``.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from include.cleanroom.contract import application_file
from include.cleanroom.errors import CleanroomConfigError, CleanroomTransientError, CleanroomUserError
from include.cleanroom.manifest import GROUP, PLURAL, VERSION

CONN_ID = "cleanroom_k8s"


def _message(exc: ApiException) -> str:
    import json  # noqa: PLC0415

    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)[:800]
    except ValueError:
        return str(exc.reason)


class CleanroomSparkHook(KubernetesHook):
    """SparkApplications (``sparkoperator.k8s.io/v1beta2``): submit, read, delete, check access.

    :param kubernetes_conn_id: the Kubernetes connection (default ``cleanroom_k8s``)
    """

    hook_name = "Clean room Kubernetes (Spark Operator)"

    def __init__(self, kubernetes_conn_id: str = CONN_ID):
        super().__init__(conn_id=kubernetes_conn_id)
        self.kubernetes_conn_id = kubernetes_conn_id

    def setting(self, name: str, default: Any = None) -> Any:
        value = self._get_field(name)
        return default if value in (None, "") else value

    @property
    def cleanroom_namespace(self) -> str:
        return str(self.setting("namespace", "cleanroom"))

    @property
    def main_application_file(self) -> str:
        return str(self.setting("application_file", f"local://{application_file().resolve()}"))

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            if exc.status in (401, 403):
                raise CleanroomConfigError(
                    f"Kubernetes refused {what} (HTTP {exc.status}: {_message(exc)}): check the token and RBAC of the "
                    f"'{self.kubernetes_conn_id}' connection"
                ) from None
            if exc.status in (400, 409, 422):
                raise CleanroomUserError(f"Kubernetes refused {what} (HTTP {exc.status}): {_message(exc)}") from None
            if exc.status == 404:
                raise
            raise CleanroomTransientError(f"Kubernetes failed {what} (HTTP {exc.status}); retrying later") from None
        except (Urllib3Error, OSError) as exc:
            raise CleanroomTransientError(f"Kubernetes is unreachable while {what} ({type(exc).__name__})") from None

    def submit(self, manifest: dict) -> tuple[dict, bool]:
        """Create the SparkApplication; an existing one of the same name (a retried task) is returned
        instead. Returns ``(object, created)``."""
        meta = manifest["metadata"]
        try:
            obj = self._call(
                f"creating SparkApplication {meta['name']}",
                self.custom_object_client.create_namespaced_custom_object,
                GROUP,
                VERSION,
                meta["namespace"],
                PLURAL,
                manifest,
            )
            return obj, True
        except CleanroomUserError as exc:
            if "AlreadyExists" not in str(exc) and "already exists" not in str(exc):
                raise
        existing = self.get_application(meta["name"], meta["namespace"])
        if existing is None:
            raise CleanroomTransientError(f"SparkApplication {meta['name']} vanished while being created")
        return existing, False

    def get_application(self, name: str, namespace: str) -> dict | None:
        try:
            return self._call(
                f"reading SparkApplication {name}",
                self.custom_object_client.get_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
            )
        except ApiException:  # 404
            return None

    def delete_application(self, name: str, namespace: str) -> bool:
        try:
            self._call(
                f"deleting SparkApplication {name}",
                self.custom_object_client.delete_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
            )
            return True
        except ApiException:  # 404
            return False

    def check_access(self) -> str:
        """The cluster serves SparkApplications and our credential may list them in the namespace."""
        ns = self.cleanroom_namespace
        try:
            body = self._call(
                f"listing SparkApplications in {ns}",
                self.custom_object_client.list_namespaced_custom_object,
                GROUP,
                VERSION,
                ns,
                PLURAL,
            )
        except ApiException:  # 404: no such resource
            raise CleanroomConfigError(
                f"the cluster has no {PLURAL}.{GROUP}/{VERSION}: is the Spark Operator (its CRD) installed?"
            ) from None
        return f"{len(body.get('items', []))} SparkApplication(s) in namespace {ns}"
