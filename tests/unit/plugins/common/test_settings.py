"""Run-time settings from Airflow Variables: a Variable that does not parse is an error."""

from __future__ import annotations

import pytest

from include.common.errors import ConfigError
from sensitive_data.common.settings import variable_bool, variable_json


def test_unset_gives_the_default(monkeypatch):
    monkeypatch.delenv("AIRFLOW_VAR_SDP_TEST_SWITCH", raising=False)
    assert variable_bool("sdp_test_switch", True) is True
    assert variable_json("sdp_test_switch", {"a": 1}) == {"a": 1}


def test_parsed_values(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_SDP_TEST_SWITCH", "false")
    assert variable_bool("sdp_test_switch", True) is False
    monkeypatch.setenv("AIRFLOW_VAR_SDP_TEST_SWITCH", '{"batch": 3}')
    assert variable_json("sdp_test_switch", expect=dict) == {"batch": 3}


@pytest.mark.parametrize("raw", ["flase", "1", '"true"', "yes", "{"])
def test_a_variable_that_does_not_parse_is_an_error(monkeypatch, raw):
    monkeypatch.setenv("AIRFLOW_VAR_SDP_TEST_SWITCH", raw)
    with pytest.raises(ConfigError, match="Airflow Variable 'sdp_test_switch'") as err:
        variable_bool("sdp_test_switch", True)
    assert "What to do" in str(err.value)


def test_bool_is_not_an_int(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_SDP_TEST_SWITCH", "true")
    with pytest.raises(ConfigError, match="not of type int"):
        variable_json("sdp_test_switch", expect=int)
