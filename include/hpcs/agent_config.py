"""SPIRE agent configuration, rendered as HCL like the real ``spire-agent`` reads it.

Modelled on HPCS's ``agent-on-the-fly.conf``: join-token node attestation, a disk key manager in
the run's agent directory and the unix workload attestor. The join token goes into the file
(``agent { join_token = ... }``, as the real agent reads it), which is 0600: never on the command
line, where ``ps`` shows it to every local user. It is single use and expires within a minute.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field


def hcl_string(value: str) -> str:
    """An HCL quoted string (JSON string escaping is valid HCL)."""
    if "${" in value or "%{" in value:
        value = value.replace("${", "$${").replace("%{", "%%{")
    return json.dumps(value)


@dataclass(frozen=True)
class AgentConfig:
    trust_domain: str
    server_address: str
    server_port: int
    socket_path: str
    data_dir: str
    log_level: str = "INFO"
    trust_bundle_path: str | None = None  # without one, insecure_bootstrap (HPCS's default)
    workload_attestors: tuple[str, ...] = ("unix",)
    join_token: str | None = field(default=None, repr=False)

    def render(self) -> str:
        lines = [
            "agent {",
            f"    data_dir = {hcl_string(self.data_dir)}",
            f"    log_level = {hcl_string(self.log_level)}",
            f"    trust_domain = {hcl_string(self.trust_domain)}",
            f"    server_address = {hcl_string(self.server_address)}",
            f"    server_port = {int(self.server_port)}",
            f"    socket_path = {hcl_string(self.socket_path)}",
        ]
        if self.join_token:
            lines.append(f"    join_token = {hcl_string(self.join_token)}")
        if self.trust_bundle_path:
            lines.append(f"    trust_bundle_path = {hcl_string(self.trust_bundle_path)}")
        else:
            lines += [
                "    # No trust bundle configured: bootstrap like HPCS's agents do.",
                "    insecure_bootstrap = true",
            ]
        lines += [
            "}",
            "",
            "plugins {",
            '    KeyManager "disk" {',
            "        plugin_data {",
            f"            directory = {hcl_string(self.data_dir)}",
            "        }",
            "    }",
            "",
            '    NodeAttestor "join_token" {',
            "        plugin_data {}",
            "    }",
        ]
        for attestor in self.workload_attestors:
            lines += ["", f"    WorkloadAttestor {hcl_string(attestor)} {{"]
            if attestor == "unix":
                lines += ["        plugin_data {", "            discover_workload_path = true", "        }"]
            else:
                lines += ["        plugin_data {}"]
            lines += ["    }"]
        lines += ["}", ""]
        return "\n".join(lines)


def render_command(template: str, **values: str) -> list[str]:
    """The agent's argv from a command template such as ``spire-agent run -config {config}``:
    split first, then each part formatted, so that no value (a path) is ever re-split or passed
    through a shell. A template that would put the join token on the command line is refused."""
    import shlex

    from include.hpcs.errors import HpcsConfigError

    if "{token}" in template:
        raise HpcsConfigError(
            "the SPIRE agent command must not carry the join token ({token}): every local user can read "
            "a command line; remove '-joinToken {token}' (the token is written to the 0600 agent config)"
        )
    return [part.format(**values) for part in shlex.split(template)]
