"""One path confinement: a path someone handed in names something inside a root, and nothing else.

- :func:`safe_relpath` checks a path as text (for any store: POSIX, SFTP, S3 keys): not empty,
  no NUL, not absolute, no ``..``; returns it normalised (``./a//b`` -> ``a/b``).
- :func:`confine` resolves a relative path, or an absolute one, inside a local ``root``:
  ``..`` and absolute paths outside the root are refused; so are symbolic links, anywhere below
  the root (``follow_symlinks=False``, the default), or only those that lead out of the root
  (``follow_symlinks=True``: links inside the root are resolved and the target must be inside).
- :func:`open_confined` opens the file race-free: each directory below the root is opened with
  ``O_NOFOLLOW`` relative to the one before (``openat``), so a component swapped for a link
  after the check is refused rather than followed; the result must be a regular file.

Errors are ``UserError`` (the path came from the submitter), or the subclass given as ``error``
(``HpcsUserError``, ``CleanroomUserError`` ...). Messages name the path and the ``what`` it is.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from include.common.errors import UserError

__all__ = ["confine", "open_confined", "safe_relpath"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def safe_relpath(path: str, *, what: str = "path", error: type[UserError] = UserError) -> str:
    """``path`` as a clean relative POSIX path (``a/b``), checked as text only.

    :raises error: empty, with a NUL, absolute (``/x``, ``\\x``, ``C:x``), with a ``..``
        component, or naming nothing (``.``)
    """
    if not isinstance(path, str) or not path or "\0" in path:
        raise error(f"Invalid {what} {path!r}: empty or with a NUL character")
    if path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":"):
        raise error(f"Invalid {what} {path!r}: absolute paths are not allowed; give it relative to its root")
    parts = path.replace("\\", "/").split("/")
    if ".." in parts:
        raise error(f"Invalid {what} {path!r}: '..' is not allowed")
    clean = [p for p in parts if p not in ("", ".")]
    if not clean:
        raise error(f"Invalid {what} {path!r}: it names no file")
    return "/".join(clean)


def _relative_inside(root: Path, path: str | os.PathLike, what: str, error: type[UserError], where: str) -> str:
    """The part of ``path`` below ``root``: a relative path as is, an absolute one lexically under root."""
    raw = os.fspath(path)
    if not isinstance(raw, str) or "\0" in raw:
        raise error(f"Invalid {what} {raw!r}: empty or with a NUL character")
    if os.path.isabs(raw):
        if ".." in raw.split("/"):
            raise error(f"Invalid {what} {raw!r}: '..' is not allowed")
        absolute = os.path.normpath(raw)
        top = os.path.normpath(os.path.abspath(root))
        if absolute != top and not absolute.startswith(top.rstrip("/") + "/"):
            raise error(f"Invalid {what} {raw!r}: it is outside {where}")
        raw = os.path.relpath(absolute, top)
    return safe_relpath(raw, what=what, error=error)


def confine(
    root: str | os.PathLike,
    path: str | os.PathLike,
    follow_symlinks: bool = False,
    *,
    what: str = "path",
    where: str | None = None,
    error: type[UserError] = UserError,
) -> Path:
    """The absolute path of ``path`` inside ``root`` (the root itself is refused: it names no file).

    :param root: the directory the path must stay in (itself may be reached through links)
    :param path: relative to ``root``, or absolute and under ``root``
    :param follow_symlinks: ``False``: no component below the root may be a symbolic link;
        ``True``: links are resolved and the result must still lie inside the root
    :param what: how messages name the path ("file path", "input")
    :param where: how messages name the root ("your inbox"); default: its path, quoted
    :param error: the ``UserError`` subclass to raise
    :returns: with ``follow_symlinks`` the resolved path, else ``root``'s real path joined with
        the clean relative path (which may not exist yet)
    """
    real_root = Path(os.path.realpath(root))
    where = where or repr(os.fspath(root))
    rel = _relative_inside(Path(root), path, what, error, where)
    if follow_symlinks:
        real = Path(os.path.realpath(real_root / rel))
        if real == real_root or real_root not in real.parents:
            raise error(f"Invalid {what} {os.fspath(path)!r}: it points outside {where}")
        return real
    current = real_root
    for part in rel.split("/"):
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            break  # the rest does not exist: nothing below can be a link
        except NotADirectoryError:
            raise error(f"Invalid {what} {os.fspath(path)!r}: {part!r} is not a directory") from None
        if stat.S_ISLNK(st.st_mode):
            raise error(f"Invalid {what} {os.fspath(path)!r}: it goes through a symbolic link ({part!r})")
    return real_root / rel


def open_confined(
    root: str | os.PathLike,
    path: str | os.PathLike,
    flags: int = os.O_RDONLY,
    *,
    what: str = "path",
    where: str | None = None,
    error: type[UserError] = UserError,
) -> int:
    """Open ``path`` inside ``root`` without following any symbolic link below the root, even one
    put there after a check; return the file descriptor (the caller closes it) of a regular file.

    :raises error: the path is refused, does not exist, is not a regular file or goes through a link
    """
    rel = _relative_inside(Path(root), path, what, error, where or repr(os.fspath(root)))
    *dirs, name = rel.split("/")
    dir_fd = os.open(os.path.realpath(root), os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    try:
        for part in dirs:
            try:
                fd = os.open(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=dir_fd)
            except FileNotFoundError:
                raise error(f"{what} {os.fspath(path)!r} not found") from None
            except (NotADirectoryError, OSError) as exc:
                raise error(f"Invalid {what} {os.fspath(path)!r}: {part!r} is a symbolic link or not a "
                            f"directory ({exc.strerror})") from None
            os.close(dir_fd)
            dir_fd = fd
        try:
            fd = os.open(name, flags | _NOFOLLOW | _CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
        except FileNotFoundError:
            raise error(f"{what} {os.fspath(path)!r} not found") from None
        except OSError as exc:
            raise error(f"Cannot open {what} {os.fspath(path)!r}: {exc.strerror}") from None
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise error(f"Invalid {what} {os.fspath(path)!r}: not a regular file")
    os.set_blocking(fd, True)
    return fd
