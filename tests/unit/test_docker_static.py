"""Static checks of docker/ (no Docker engine needed): the compose file, its images and files, and that
airflow_settings.yaml filled with the compose environment points every connection at a compose service."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from devstack import hcl, settings

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "docker-compose.yml"
ENV_EXAMPLE = DOCKER / ".env.example"
AIRFLOW_IMAGE = "apache/airflow:3.3.2-python3.11"
# Hosts a connection may name that are not compose services (documented in docker/README.md): none.
EXTERNAL_HOSTS: set[str] = set()
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE_FILE.read_text()


@pytest.fixture(scope="module")
def compose(compose_text) -> dict:
    doc = yaml.safe_load(compose_text)
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict)
    return doc


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f".env.example: not KEY=VALUE: {line!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?err}`` and ``$$``."""
    def sub(m: re.Match) -> str:
        name, op, arg = m.groups()
        if env.get(name):
            return env[name]
        if op in (":-", "-"):
            return arg
        raise AssertionError(f"${{{name}}} is not set")

    return _VAR.sub(sub, value.replace("$$", "\0")).replace("\0", "$")


def one_shot(service: dict) -> bool:
    return str((service.get("labels") or {}).get("sdp.one-shot", "")).lower() == "true"


def listening_ports(service: dict) -> set[int]:
    ports = {int(str(p).split("/")[0]) for p in service.get("expose") or []}
    for p in service.get("ports") or []:
        target = p.get("target") if isinstance(p, dict) else str(p).rsplit(":", 1)[-1].split("/")[0]
        ports.add(int(target))
    command = service.get("command") or []
    if isinstance(command, list):
        for flag, value in zip(command, command[1:], strict=False):
            if flag in ("--port", "-serverPort", "--http-port") and str(value).isdigit():
                ports.add(int(value))
    return ports


def dockerfile_froms(path: Path) -> list[str]:
    return [line.split()[1] for line in path.read_text().splitlines()
            if line.strip().upper().startswith("FROM ") and not line.lstrip().startswith("#")]


def assert_pinned(image: str, where: str) -> None:
    assert "$" not in image, f"{where}: unresolved variable in {image!r}"
    if "@sha256:" in image:
        return
    name, _, tag = image.rpartition(":")
    assert name and "/" not in tag, f"{where}: image {image!r} has no tag"
    assert tag != "latest", f"{where}: image {image!r} uses latest"


def test_compose_images_are_pinned(services, env_example):
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, f"{name}: neither image nor build"
        if "image" in svc:
            assert_pinned(interpolate(svc["image"], env_example), name)


def test_build_contexts_dockerfiles_and_their_bases_exist(services):
    seen = set()
    for name, svc in services.items():
        build = svc.get("build")
        if not build:
            continue
        build = {"context": build} if isinstance(build, str) else build
        context = (DOCKER / build["context"]).resolve()
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert context.is_dir(), f"{name}: build context {context} missing"
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
        seen.add(dockerfile)
    assert DOCKER / "Dockerfile" in seen
    for dockerfile in seen:
        froms = dockerfile_froms(dockerfile)
        assert froms, dockerfile
        for image in froms:
            assert_pinned(image, str(dockerfile.relative_to(ROOT)))


def test_dockerfile_copies_exist():
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["COPY"] and not any(p.startswith("--from") for p in parts):
            for src in [p for p in parts[1:-1] if not p.startswith("--")]:
                assert (ROOT / src).exists(), f"docker/Dockerfile copies missing {src}"
    for line in (DOCKER / "irods" / "Dockerfile").read_text().splitlines() + (
            DOCKER / "sftp" / "Dockerfile").read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["COPY"]:
            assert any((DOCKER / d / parts[1]).exists() for d in ("irods", "sftp")), line


def test_airflow_image_matches_requirements_pin():
    froms = dockerfile_froms(DOCKER / "Dockerfile")
    assert froms[-1] == AIRFLOW_IMAGE
    pins = re.findall(r"^apache-airflow==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert pins == [AIRFLOW_IMAGE.split(":")[1].split("-")[0]]
    text = (DOCKER / "Dockerfile").read_text()
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in text and "-r /requirements.txt" in text
    assert "PYTHONPATH=/opt/airflow" in text


def test_bind_mounts_exist(services):
    for name, svc in services.items():
        for vol in svc.get("volumes") or []:
            source = vol.get("source", "") if isinstance(vol, dict) else str(vol).split(":")[0]
            if source.startswith((".", "/")):
                assert (DOCKER / source).resolve().exists(), f"{name}: bind mount {source} missing"


def test_every_long_running_service_has_a_healthcheck(services):
    for name, svc in services.items():
        if one_shot(svc):
            assert svc.get("restart") == "no", f"{name}: a one-shot job must not restart"
            continue
        check = svc.get("healthcheck") or {}
        assert check.get("test") and check["test"] != ["NONE"] and not check.get("disable"), f"{name}: no healthcheck"


def test_depends_on_existing_services_with_conditions(services):
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        assert isinstance(deps, dict), f"{name}: depends_on must use conditions"
        for dep, spec in deps.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            condition = (spec or {}).get("condition")
            if one_shot(services[dep]):
                assert condition == "service_completed_successfully", f"{name} -> {dep}: {condition}"
            else:
                assert condition == "service_healthy", f"{name} -> {dep}: {condition}"


def test_named_volumes_are_declared(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, svc in services.items():
        for vol in svc.get("volumes") or []:
            source = vol.get("source", "") if isinstance(vol, dict) else str(vol).split(":")[0]
            if source and not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} not declared"


def test_every_compose_variable_is_in_env_example(compose_text, env_example):
    used = {m.group(1) for m in _VAR.finditer(compose_text.replace("$$", ""))}
    missing = used - set(env_example)
    assert not missing, f"variables missing from docker/.env.example: {sorted(missing)}"


def compose_sdp_vars(compose, env_example) -> dict[str, str]:
    env = compose["x-airflow-common-env"]
    return {k: interpolate(str(v), env_example) for k, v in env.items() if k.startswith("SDP_") or k == "USER"}


def endpoints(conn: settings.ConnectionSetting) -> list[tuple[str, str, int | None]]:
    """(where, host, port) of every network address a connection names."""
    out = []
    if conn.host:
        out.append(("conn_host", conn.host, conn.port))

    def walk(value, path):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")
        elif isinstance(value, str) and re.match(r"^[a-z][a-z0-9+.-]*://", value):
            url = urlsplit(value)
            if url.hostname:
                out.append((path, url.hostname, url.port or {"http": 80, "https": 443}.get(url.scheme)))

    walk(conn.extra, "extra")
    if "server_address" in conn.extra:
        out.append(("extra.server_address", str(conn.extra["server_address"]), int(conn.extra["server_port"])))
    return out


def test_connections_resolve_to_compose_services(compose, services, env_example):
    variables = compose_sdp_vars(compose, env_example)
    parsed = settings.load(settings.DEFAULT_FILE, variables)
    checked = 0
    for conn in parsed.connections:
        for where, host, port in endpoints(conn):
            checked += 1
            if host in EXTERNAL_HOSTS:
                continue
            assert host in services, f"{conn.conn_id} {where}: host {host!r} is not a compose service"
            assert port in listening_ports(services[host]), (
                f"{conn.conn_id} {where}: {host} does not listen on {port} ({sorted(listening_ports(services[host]))})")
    assert checked >= 10
    for path in [v for k, v in variables.items() if k == "SDP_LOCAL"]:
        assert path.startswith("/opt/airflow/")


def test_env_example_matches_connection_secrets(env_example):
    conns = {c.conn_id: c for c in settings.load(settings.DEFAULT_FILE, {}).connections}
    assert env_example["VAULT_ROOT_TOKEN"] == conns["vault"].password
    assert (env_example["S3_ACCESS_KEY"], env_example["S3_SECRET_KEY"]) == (
        conns["s3_archive"].login, conns["s3_archive"].password)
    assert env_example["LEGA_KEY_PASSPHRASE"] == conns["lega_keys"].password
    assert env_example["IRODS_ZONE"] == conns["irods"].extra["zone"]
    users = dict(item.split(":", 1) for item in env_example["IRODS_USERS"].split())
    streamer = conns["stager_streamer"]
    assert users.get(streamer.login) == streamer.password
    assert users.get(env_example["IRODS_TEST_USER"]) == env_example["IRODS_TEST_PASSWORD"]
    for key in ("IRODS_NEGOTIATION_KEY", "IRODS_CONTROL_PLANE_KEY"):
        assert len(env_example[key].encode()) == 32, key


def mounted_config(service: dict, target_suffix: str) -> Path:
    for vol in service.get("volumes") or []:
        source, target = str(vol).split(":")[:2]
        if target.endswith(target_suffix):
            return (DOCKER / source).resolve()
    raise AssertionError(f"no volume mounted at *{target_suffix}")


def test_spire_and_vault_configs_parse_and_agree(services):
    server = hcl.loads(mounted_config(services["spire-server"], "server.conf").read_text())
    agent = hcl.loads(mounted_config(services["spire-agent"], "agent.conf").read_text())
    hcl.loads(mounted_config(services["vault"], "config.hcl").read_text())
    (s,) = server["server"]
    (a,) = agent["agent"]
    assert s.body["trust_domain"] == a.body["trust_domain"] == "hpcs.local"
    assert a.body["server_address"] in services
    assert int(a.body["server_port"]) == int(s.body["bind_port"])
    assert int(s.body["bind_port"]) in listening_ports(services["spire-server"])
    assert str(s.body["socket_path"]).startswith("/run/spire/server/")
    assert str(a.body["socket_path"]).startswith("/run/spire/agent/public/")
    attestors = {b.labels[0] for b in hcl.blocks(server["plugins"][0].body, "NodeAttestor")}
    assert "x509pop" in attestors
    agent_attestors = {b.labels[0] for b in hcl.blocks(agent["plugins"][0].body, "NodeAttestor")}
    assert agent_attestors <= attestors


# flags that would put a credential on a command line, which `ps` shows to every local user
_SECRET_FLAGS = {"--token", "--member", "--vault-token", "--spire-admin-token", "--root-token", "--password",
                 "-joinToken", "--broker-url"}


def _argv(service: dict) -> list[str]:
    parts = []
    for key in ("entrypoint", "command"):
        value = service.get(key) or []
        parts += value if isinstance(value, list) else str(value).split()
    return [str(p) for p in parts]


def test_no_secret_on_a_command_line(services, env_example):
    secret_vars = {k for k in env_example if re.search(r"PASSWORD|SECRET|TOKEN|KEY", k)}
    for name, service in services.items():
        argv = _argv(service)
        assert not _SECRET_FLAGS & set(argv), f"{name}: a secret-carrying flag on its command line: {argv}"
        text = " ".join(argv)
        assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", text), f"{name}: a URL with credentials in its command"
        for var in secret_vars:
            assert f"${{{var}" not in text, f"{name}: ${var} on its command line"


def test_airflow_uses_fab_with_the_platform_roles(compose, services):
    env = compose["x-airflow-common-env"]
    assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("fab_auth_manager.FabAuthManager")
    assert env["AIRFLOW__FAB__UPDATE_FAB_PERMS"] == "False"  # else FAB re-grants every DAG to Viewer/User/Op
    assert not [k for k in env if k.startswith("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER")]
    init = " ".join(_argv(services["airflow-init"]))
    assert init.index("airflow db migrate") < init.index("sensitive_data.auth.roles sync") < init.index(
        "sensitive_data.auth.roles admin admin")
    assert "AIRFLOW_ADMIN_PASSWORD" in services["airflow-init"]["environment"]
