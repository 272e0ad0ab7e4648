"""Where the lab data streamer may read: a project's own raw storage, nothing else.

The streamer's ``srcPath`` comes from whoever triggers it, and its transfer runs with the service
account's rights over every project it serves. So ``srcPath`` must lie inside the raw storage of
the project it names (the ``streamer_source`` setting, default ``/project/{projectId}/raw``):
absolute, no ``..``, and after resolving every symbolic link (of the path and of the storage
root) still inside. The resolved path is what the job transfers, so a link swapped in later is
not followed to another place (the engine itself skips symbolic links inside the tree).
"""

from __future__ import annotations

import os
import posixpath
import re

from include.common.paths import confine, safe_relpath
from include.stager.errors import UserError

PROJECT = re.compile(r"^\d{7}\.\d{2}$")


def project_root(project: str, template: str) -> str:
    if not isinstance(project, str) or not PROJECT.match(project):
        raise UserError(f"project number {project!r} is not of the form 3010000.01")
    if "{projectId}" not in template:
        raise ValueError(f"streamer_source {template!r} must contain {{projectId}}")
    root = template.replace("{projectId}", project)
    if not root.startswith("/"):
        raise ValueError(f"streamer_source {template!r} must be an absolute path")
    return root


def confine_source(project: str, src_path, template: str) -> str:
    """The real path of ``src_path``, refused (:class:`UserError`) unless inside ``project``'s raw storage.

    ``src_path`` is absolute and names the storage by its configured path or its real path; the
    part below it goes through the shared confinement (``include.common.paths``): no ``..``, no
    NUL, symbolic links resolved and the result still inside the storage.
    """
    root = project_root(project, template)
    if not isinstance(src_path, str) or not src_path.startswith("/"):
        raise UserError(f"srcPath {src_path!r} must be an absolute path")
    lexical = "/" + safe_relpath(src_path.lstrip("/"), what="srcPath", error=UserError)
    where = f"the raw storage of project {project} ({root})"
    real_root = os.path.realpath(root)
    if not os.path.isdir(real_root):
        raise UserError(f"{where} does not exist")
    for base in dict.fromkeys((posixpath.normpath(root), real_root)):
        if lexical == base:
            return real_root  # the whole raw storage
        if lexical.startswith(base.rstrip("/") + "/"):
            rel = lexical[len(base.rstrip("/")) + 1:]
            break
    else:
        raise UserError(f"srcPath {src_path!r} is outside {where}")
    try:
        real = confine(real_root, rel, follow_symlinks=True, what="srcPath", where=where, error=UserError)
    except UserError:  # lexically inside: only a symbolic link can lead out
        raise UserError(f"srcPath {src_path!r} leads out of {where} through a symbolic link "
                        f"(to {os.path.realpath(lexical)!r}); refused") from None
    if not real.exists():
        raise UserError(f"srcPath {src_path!r} does not exist")
    return str(real)
