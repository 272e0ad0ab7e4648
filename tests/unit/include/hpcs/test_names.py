import pytest

from include.hpcs.errors import HpcsUserError
from include.hpcs.names import (
    default_secret_name,
    split_names,
    validate_access,
    validate_secret_name,
    validate_unix_names,
)


@pytest.mark.parametrize("name", ["alice", "_svc", "u-1_2", "a" * 32, "machine$", "cn01"])
def test_valid_unix_names(name):
    assert validate_unix_names("user", [name]) == [name]


@pytest.mark.parametrize("name", ["Alice", "1abc", "a" * 33, "a b", "a;rm", "-x", "ab$c", "é", ""])
def test_invalid_unix_names(name):
    if name == "":
        assert validate_unix_names("user", [name]) == []
        return
    with pytest.raises(HpcsUserError, match="invalid user name"):
        validate_unix_names("user", [name])


def test_split_names_forms():
    assert split_names("a, b c,,a") == ["a", "b", "c"]
    assert split_names(["x", " y "]) == ["x", "y"]
    assert split_names("['x', 'y']") == ["x", "y"]
    assert split_names('["x"]') == ["x"]
    assert split_names("[]") == []
    assert split_names(None) == []
    with pytest.raises(HpcsUserError):
        split_names("[1, ")


@pytest.mark.parametrize("name", ["data", "my.data_set-1", "A9"])
def test_valid_secret_names(name):
    assert validate_secret_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a b", "x" * 129, "ä"])
def test_invalid_secret_names(name):
    with pytest.raises(HpcsUserError, match="invalid secret name"):
        validate_secret_name(name)


def test_default_secret_name():
    assert default_secret_name("/staging/project/dataset/") == "dataset"
    assert default_secret_name("file.csv") == "file.csv"


def test_validate_access_requires_who_and_where():
    assert validate_access("alice", None, "cn01") == (["alice"], [], ["cn01"])
    assert validate_access([], ["grp"], ["cn01", "cn02"]) == ([], ["grp"], ["cn01", "cn02"])
    with pytest.raises(HpcsUserError, match="at least one user or one group"):
        validate_access([], [], ["cn01"])
    with pytest.raises(HpcsUserError, match="at least one compute node"):
        validate_access(["alice"], [], [])
    with pytest.raises(HpcsUserError, match=r"invalid compute node name\(s\) 'CN01'"):
        validate_access(["alice"], [], ["CN01"])
