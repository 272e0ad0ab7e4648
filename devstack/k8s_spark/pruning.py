"""Structural-schema pruning of unknown fields, as kube-apiserver does for custom resources.

Derived from ``staging/src/k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning/algorithm.go``
(no code copied): fields not in an object schema's ``properties`` are dropped unless the schema has
``x-kubernetes-preserve-unknown-fields: true``; ``additionalProperties`` and ``items`` are
recursed into; at the resource root ``apiVersion``, ``kind`` and ``metadata`` are kept, as in
``x-kubernetes-embedded-resource`` objects. ``metadata`` is pruned to ObjectMeta's fields
(``staging/src/k8s.io/apiextensions-apiserver/pkg/registry/customresource/validator.go`` and
``.../apiserver/schema/objectmeta/coerce.go``). Each dropped path is reported as the API server
reports it: ``unknown field "spec.foo"`` (``spec.list[0].x`` inside arrays), a ``Warning`` header
with ``fieldValidation=Warn`` (the default), a 400 with ``fieldValidation=Strict``
(``staging/src/k8s.io/apiserver/pkg/endpoints/handlers/create.go``/``update.go``/``patch.go``).
"""

from __future__ import annotations

from typing import Any

OBJECT_META = {
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
}
ROOT = ("apiVersion", "kind", "metadata")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def prune(obj: Any, schema: dict, path: str = "", *, root: bool = False, embedded: bool = False) -> list[str]:
    """Drop unknown fields from ``obj`` in place; return their paths."""
    dropped: list[str] = []
    if isinstance(obj, dict):
        props = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        keep_meta = root or embedded or bool(schema.get("x-kubernetes-embedded-resource"))
        for key in list(obj):
            if keep_meta and key in ROOT:
                if key == "metadata" and isinstance(obj[key], dict):
                    for mk in list(obj[key]):
                        if mk not in OBJECT_META:
                            del obj[key][mk]
                            dropped.append(_join(_join(path, "metadata"), mk))
                continue
            if key in props:
                dropped += prune(obj[key], props[key], _join(path, key))
            elif isinstance(additional, dict):
                dropped += prune(obj[key], additional, _join(path, key))
            elif additional is True or preserve:
                continue
            else:
                del obj[key]
                dropped.append(_join(path, key))
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(obj):
            dropped += prune(item, schema["items"], f"{path}[{i}]")
    return dropped
