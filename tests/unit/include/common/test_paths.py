from __future__ import annotations

import os

import pytest

from include.common.errors import UserError
from include.common.paths import confine, open_confined, safe_relpath


class MyUserError(UserError):
    pass


@pytest.mark.parametrize("path", ["../x", "a/../../x", "/etc/passwd", "\\x", "C:x", "", "a\0b", ".", "./", "a/.."])
def test_safe_relpath_refuses(path):
    with pytest.raises(UserError):
        safe_relpath(path)


def test_safe_relpath_normalises():
    assert safe_relpath("./a//b.c4gh") == "a/b.c4gh"
    with pytest.raises(MyUserError, match="Invalid input"):
        safe_relpath("../x", what="input", error=MyUserError)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    (root / "dir").mkdir(parents=True)
    (root / "dir" / "f").write_bytes(b"data")
    (tmp_path / "outside").write_bytes(b"secret")
    os.symlink(tmp_path / "outside", root / "out_link")
    os.symlink(root / "dir" / "f", root / "in_link")
    os.symlink(tmp_path, root / "dir_out")
    return root


def test_confine_inside(tree):
    real = os.path.realpath(tree)
    assert str(confine(tree, "dir/f")) == f"{real}/dir/f"
    assert str(confine(tree, f"{tree}/dir/f")) == f"{real}/dir/f"  # absolute, under the root
    assert str(confine(tree, "dir/new")) == f"{real}/dir/new"  # need not exist


@pytest.mark.parametrize("path", ["../outside", "dir/../../outside", "/etc/passwd", ".", ""])
def test_confine_refuses_escapes(tree, path):
    for follow in (False, True):
        with pytest.raises(UserError):
            confine(tree, path, follow_symlinks=follow)


def test_confine_refuses_absolute_outside(tree):
    with pytest.raises(UserError, match="outside"):
        confine(tree, str(tree.parent / "outside"))
    with pytest.raises(UserError, match="outside"):
        confine(tree, str(tree) + "-sibling/x")  # a prefix is not a parent


def test_confine_symlinks(tree):
    for link in ("out_link", "in_link", "dir_out/outside"):
        with pytest.raises(UserError, match="symbolic link"):
            confine(tree, link)
    # following links: inside is fine, out is not
    assert confine(tree, "in_link", follow_symlinks=True) == confine(tree, "dir/f")
    for link in ("out_link", "dir_out/outside"):
        with pytest.raises(MyUserError, match="points outside"):
            confine(tree, link, follow_symlinks=True, error=MyUserError)


def test_confine_root_reached_through_a_link(tree, tmp_path):
    os.symlink(tree, tmp_path / "root_link")
    assert confine(tmp_path / "root_link", "dir/f") == confine(tree, "dir/f")


def test_open_confined(tree):
    fd = open_confined(tree, "dir/f")
    with os.fdopen(fd, "rb") as f:
        assert f.read() == b"data"
    for path, msg in [("out_link", "Cannot open"), ("in_link", "Cannot open"), ("dir_out/outside", "symbolic link"),
                      ("dir", "not a regular file"), ("nope", "not found"), ("../outside", r"'\.\.'")]:
        with pytest.raises(UserError, match=msg):
            open_confined(tree, path)


def test_open_confined_refuses_a_fifo(tree):
    os.mkfifo(tree / "fifo")
    with pytest.raises(UserError, match="not a regular file"):
        open_confined(tree, "fifo")  # and does not block
