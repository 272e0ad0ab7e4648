import os
import stat

import pytest

from include.hpcs.scratch import RunScratch, read_private_file, shred, write_private_file


def mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


def test_layout_and_modes(tmp_path):
    s = RunScratch(tmp_path, "hpcs_data_preparation", "manual__2026-01-01T00:00:00+00:00").ensure()
    assert s.dir.parent.name == "hpcs_data_preparation"
    assert ":" not in s.dir.name and "+" not in s.dir.name
    for d in (s.dir, s.key_dir, s.svid_path.parent, s.archive_dir):
        assert mode(d) == 0o700
    write_private_file(s.private_key_path, b"secret")
    assert mode(s.private_key_path) == 0o600
    assert read_private_file(s.private_key_path) == b"secret"


def test_socket_path_kept_short(tmp_path):
    deep = tmp_path / ("x" * 120)
    s = RunScratch(deep, "dag", "run")
    assert len(str(s.socket_path)) <= 107
    assert s.agent_dir.name.startswith("hpcs-")
    again = RunScratch(deep, "dag", "run")
    assert again.socket_path == s.socket_path
    assert RunScratch(deep, "dag", "other").socket_path != s.socket_path


def test_private_file_refuses_links_and_loose_modes(tmp_path):
    target = tmp_path / "t"
    target.write_bytes(b"x")
    os.chmod(target, 0o644)
    with pytest.raises(PermissionError, match="readable by others"):
        read_private_file(target)
    os.symlink(target, tmp_path / "link")
    with pytest.raises(OSError):
        read_private_file(tmp_path / "link")


def test_write_replaces_atomically_and_ignores_umask(tmp_path):
    old = os.umask(0)
    try:
        p = write_private_file(tmp_path / "k" / "f", b"one")
        write_private_file(p, b"two")
    finally:
        os.umask(old)
    assert read_private_file(p) == b"two"
    assert mode(p) == 0o600
    assert [x.name for x in p.parent.iterdir()] == ["f"]


def test_shred_and_remove_key_material(tmp_path):
    s = RunScratch(tmp_path, "d", "r").ensure()
    write_private_file(s.private_key_path, b"k" * 100)
    write_private_file(s.svid_path, b"jwt")
    assert sorted(s.remove_key_material()) == ["archive.sec", "jwt"]
    assert not s.private_key_path.exists() and not s.svid_path.exists()
    assert s.remove_key_material() == []
    assert shred(tmp_path / "absent") is False


def test_state_updates(tmp_path):
    s = RunScratch(tmp_path, "d", "r")
    assert s.load_state() == {}
    s.update_state(archive={"sha512": "a"}, vault={"v": 1})
    s.update_state(vault=None, shipped={"ok": True})
    assert s.load_state() == {"archive": {"sha512": "a"}, "shipped": {"ok": True}}
