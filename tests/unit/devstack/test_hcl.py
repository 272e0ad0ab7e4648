"""The HCL reader used by the Vault policy parser and the SPIRE stand-ins' configuration."""

from __future__ import annotations

import pytest

from devstack.hcl import Block, HCLError, blocks, loads

AGENT_CONF = """
# CSC's agent-on-the-fly.conf, as the pipeline renders it
agent {
    data_dir = "./data/agent"
    log_level = "DEBUG"
    trust_domain = "hpcs.local"
    server_address = "127.0.0.1"
    server_port = 8081
    socket_path = "/tmp/agent.sock"
    insecure_bootstrap = true
}

plugins {
   KeyManager "disk" {
        plugin_data {
            directory = "./data/agent"
        }
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
    WorkloadAttestor "unix" {
        plugin_data {
            discover_workload_path = true
        }
    }
}
"""

HEREDOCS = (
    "d = <<TAG\n"
    "line one\n"
    "  line two\n"
    "TAG\n"
    "e = <<-TAG2\n"
    "            indented\n"
    "              more\n"
    "            TAG2\n"
)


def test_spire_agent_config():
    doc = loads(AGENT_CONF)
    agent = blocks(doc, "agent")[0].body
    assert agent == {
        "data_dir": "./data/agent",
        "log_level": "DEBUG",
        "trust_domain": "hpcs.local",
        "server_address": "127.0.0.1",
        "server_port": 8081,
        "socket_path": "/tmp/agent.sock",
        "insecure_bootstrap": True,
    }
    plugins = blocks(doc, "plugins")[0].body
    assert [b.labels for b in plugins["KeyManager"]] == [("disk",)]
    assert plugins["WorkloadAttestor"][0].body["plugin_data"][0].body == {"discover_workload_path": True}
    assert plugins["NodeAttestor"][0].body["plugin_data"] == [Block((), {})]


def test_values_and_comments():
    doc = loads("""
        // line comment
        a = "x\\"y\\n"   # trailing comment
        /* block
           comment */
        b = [1, 2.5, -3, "four", true, false, null,]
        c = { k = "v", "quoted key": 1 }
    """)
    assert doc["a"] == 'x"y\n'
    assert doc["b"] == [1, 2.5, -3, "four", True, False, None]
    assert doc["c"] == {"k": "v", "quoted key": 1}


def test_heredocs():
    doc = loads(HEREDOCS)
    assert doc["d"] == "line one\n  line two\n"
    assert doc["e"] == "indented\n  more\n"


def test_repeated_blocks_keep_order():
    doc = loads('path "a" { capabilities = ["read"] }\npath "b/*" {\n capabilities = ["list"]\n}')
    assert [(b.labels, b.body) for b in blocks(doc, "path")] == [
        (("a",), {"capabilities": ["read"]}),
        (("b/*",), {"capabilities": ["list"]}),
    ]


def test_json_documents():
    assert loads('{"path": {"a/*": {"capabilities": ["read"]}}}') == {
        "path": {"a/*": {"capabilities": ["read"]}}
    }


@pytest.mark.parametrize(
    "text",
    [
        "a = ",
        'a = "unterminated',
        'path "x" { capabilities = ["read"]',
        "a = [1, 2",
        "a = ${var.x}",
        "a = foo",
        "x = <<TAG\nno end",
        '"label" {',
    ],
)
def test_errors(text):
    with pytest.raises(HCLError):
        loads(text)
