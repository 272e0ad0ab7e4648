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
    """The real path of ``src_path``, refused (:class:`UserError`) unless inside ``project``'s raw storage."""
    root = project_root(project, template)
    if not isinstance(src_path, str) or not src_path.startswith("/"):
        raise UserError(f"srcPath {src_path!r} must be an absolute path")
    if "\x00" in src_path or ".." in src_path.split("/"):
        raise UserError(f"srcPath {src_path!r} must not contain '..'")
    real_root = os.path.realpath(root)
    if not os.path.isdir(real_root):
        raise UserError(f"the raw storage of project {project} ({root}) does not exist")
    lexical = posixpath.normpath(src_path)
    if not (lexical == posixpath.normpath(root) or lexical.startswith(posixpath.normpath(root) + "/")
            or lexical == real_root or lexical.startswith(real_root + "/")):
        raise UserError(f"srcPath {src_path!r} is outside the raw storage of project {project} ({root})")
    real = os.path.realpath(lexical)
    if not (real == real_root or real.startswith(real_root + "/")):
        raise UserError(f"srcPath {src_path!r} leads out of the raw storage of project {project} ({root}) "
                        f"through a symbolic link (to {real!r}); refused")
    if not os.path.exists(real):
        raise UserError(f"srcPath {src_path!r} does not exist")
    return real
