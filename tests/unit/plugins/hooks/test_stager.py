"""The stager settings: environment, overridden by the Variable, which must parse."""

from __future__ import annotations

import pytest

from include.common.errors import ConfigError
from sensitive_data.hooks.stager import stager_settings


def test_the_variable_overrides_the_environment(monkeypatch):
    monkeypatch.setenv("SDP_STAGER_THREADS", "3")
    monkeypatch.setenv("AIRFLOW_VAR_STAGER_SETTINGS", '{"num_threads": 2}')
    settings = stager_settings()
    assert (settings.threads, settings.num_threads) == (3, 2)


@pytest.mark.parametrize("value", ["{not json", "[1, 2]", '"text"'])
def test_a_variable_that_does_not_parse_is_an_error_not_the_defaults(monkeypatch, value):
    monkeypatch.setenv("AIRFLOW_VAR_STAGER_SETTINGS", value)
    with pytest.raises(ConfigError, match="stager_settings"):
        stager_settings()


def test_a_setting_of_the_wrong_kind_is_an_error(monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_STAGER_SETTINGS", '{"threads": "many"}')
    with pytest.raises(ConfigError, match="wrong kind.*What to do: fix the Airflow Variable 'stager_settings'"):
        stager_settings()
