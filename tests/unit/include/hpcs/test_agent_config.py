import pytest

from devstack import hcl
from include.hpcs.agent_config import AgentConfig, hcl_string, render_command
from include.hpcs.errors import HpcsConfigError


def test_renders_hcl_a_spire_agent_reads():
    cfg = AgentConfig(
        trust_domain="hpcs.example",
        server_address="127.0.0.1",
        server_port=8081,
        socket_path='/tmp/run dir/"agent".sock',
        data_dir="/tmp/run/data",
    )
    doc = hcl.loads(cfg.render())
    agent = doc["agent"][0].body
    assert agent["trust_domain"] == "hpcs.example"
    assert agent["server_port"] == 8081
    assert agent["socket_path"] == '/tmp/run dir/"agent".sock'
    assert agent["insecure_bootstrap"] is True
    assert "join_token" not in agent
    plugins = doc["plugins"][0].body
    assert plugins["NodeAttestor"][0].labels == ("join_token",)
    assert plugins["WorkloadAttestor"][0].labels == ("unix",)
    assert plugins["KeyManager"][0].body["plugin_data"][0].body["directory"] == "/tmp/run/data"


def test_trust_bundle_instead_of_insecure_bootstrap():
    cfg = AgentConfig(
        trust_domain="td",
        server_address="spire",
        server_port=1,
        socket_path="/s",
        data_dir="/d",
        trust_bundle_path="/etc/spire/bundle.pem",
    )
    agent = hcl.loads(cfg.render())["agent"][0].body
    assert agent["trust_bundle_path"] == "/etc/spire/bundle.pem"
    assert "insecure_bootstrap" not in agent


def test_hcl_string_escapes_interpolation():
    assert hcl_string("a${b}") == '"a$${b}"'


def test_command_template_never_resplits_values():
    argv = render_command(
        "{python} -m devstack.spire agent run -config {config}",
        python="/venv/bin/python",
        config="/tmp/a b; rm -rf /agent.conf",
    )
    assert argv == ["/venv/bin/python", "-m", "devstack.spire", "agent", "run", "-config", "/tmp/a b; rm -rf /agent.conf"]


def test_command_template_with_the_join_token_is_refused():
    with pytest.raises(HpcsConfigError, match="must not carry the join token"):
        render_command("spire-agent run -config {config} -joinToken {token}", config="/c", token="t")


def test_join_token_goes_into_the_config_and_not_its_repr():
    cfg = AgentConfig(trust_domain="td", server_address="h", server_port=1, socket_path="/s", data_dir="/d",
                      join_token="jt-secret")
    assert hcl.loads(cfg.render())["agent"][0].body["join_token"] == "jt-secret"
    assert "jt-secret" not in repr(cfg)
    assert "join_token =" not in AgentConfig(trust_domain="td", server_address="h", server_port=1,
                                           socket_path="/s", data_dir="/d").render()
