"""docker-compose.yml, its Cloud Bigtable override, .env.example and the
Dockerfile, checked with Debian's ``docker-compose config`` (no Docker engine
here) and against the code they start."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from tests.deploy import stack

SLACK_VARIABLES = ("SLACK_WEBHOOK_URL", "SLACK_BOT_TOKEN", "SLACK_CHANNEL", "SLACK_SIGNING_SECRET")
REQUIRED_VARIABLES = ("TABLEWATCH_STORE", "TABLEWATCH_INGEST_TOKEN", "TABLEWATCH_RULES", *SLACK_VARIABLES)
#: The long-running tablewatch services and what starts each.
SERVICES = {"server": ("server",), "alerts": ("alerts", "run"), "dashboard": ("dashboard",), "collector": ("demo",)}
STORES = {"hbase": "hbase", "bigtable": "bigtable"}  # URL scheme -> the compose service of its local store


SECRETS = {"SLACK_BOT_TOKEN": "xoxb-deploy-test", "SLACK_CHANNEL": "#tw", "SLACK_SIGNING_SECRET": "s3cret",
           "TABLEWATCH_INGEST_TOKEN": "ingest-token"}


def _env_file(tmp_path: Path, name: str, values: dict[str, str]) -> Path:
    """.env.example with ``values`` put in."""
    lines = stack.ENV_EXAMPLE.read_text().splitlines()
    for key, value in values.items():
        lines = [line for line in lines if not line.startswith(f"{key}=")] + [f"{key}={value}"]
    path = tmp_path / f"{name}.env"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    """The resolved compose file for each store variant .env.example offers
    (the first is .env.example itself; the others with Slack settings filled
    in), and with the Cloud Bigtable override and no .env (with and without its
    key file)."""
    tmp = tmp_path_factory.mktemp("compose")
    cloud = [stack.COMPOSE_FILE, stack.CLOUD_BIGTABLE_OVERRIDE]
    empty = tmp / "empty.env"
    empty.write_text("")
    requests = {
        "cloud": (cloud, empty, {"GOOGLE_APPLICATION_CREDENTIALS": "/keys/tablewatch.json",
                                 "TABLEWATCH_STORE": "bigtable://p/i"}),
        "cloud-without-key": (cloud, empty, {}),
        "variant-0": ([stack.COMPOSE_FILE], stack.ENV_EXAMPLE, {}),
    }
    for index, (profiles, url) in enumerate(stack.env_example_variants()[1:], start=1):
        values = {"COMPOSE_PROFILES": profiles, "TABLEWATCH_STORE": url, **SECRETS}
        requests[f"variant-{index}"] = ([stack.COMPOSE_FILE], _env_file(tmp, f"variant-{index}", values), {})
    return stack.run_compose_configs(requests)


def _config(configs, name: str) -> dict:
    done = configs[name]
    assert done.returncode == 0, f"docker-compose config ({name}) failed:\n{done.stderr}"
    return yaml.safe_load(done.stdout)


def _tablewatch_services(config: dict) -> dict[str, dict]:
    return {name: s for name, s in config["services"].items() if stack.is_tablewatch_service(s)}


def test_the_compose_file_is_valid_with_and_without_env(configs):
    for name in ("variant-0", "cloud"):
        services = _config(configs, name)["services"]
        assert {"hbase", "bigtable", "store-init", *SERVICES} <= set(services), name


@pytest.mark.parametrize("variant", range(len(stack.env_example_variants())),
                         ids=[f"{p or '-'}:{u.split(':')[0]}" for p, u in stack.env_example_variants()])
def test_one_variable_points_every_service_at_the_store_its_profiles_start(configs, variant):
    profiles, url = stack.env_example_variants()[variant]
    config = _config(configs, f"variant-{variant}")
    services = _tablewatch_services(config)
    assert set(SERVICES) | {"store-init"} <= set(services)
    for name, service in services.items():
        assert service["environment"]["TABLEWATCH_STORE"] == url, name

    enabled = set(filter(None, profiles.split(",")))
    local_stores = {name for name, s in config["services"].items() if set(s.get("profiles", [])) & set(STORES.values())}
    started = {name for name in local_stores if set(config["services"][name]["profiles"]) & enabled}
    parts = urlsplit(url)
    emulator = parse_qs(parts.query).get("emulator_host", [None])[0]
    address = f"{parts.hostname}:{parts.port or 9090}" if parts.scheme == "hbase" else emulator
    if address is None:  # Cloud Bigtable: no local store
        assert started == set(), f"{profiles}: starts {started} for {url}"
        return
    host, port = address.rsplit(":", 1)
    assert started == {STORES[parts.scheme]} == {host}, f"COMPOSE_PROFILES={profiles} starts {started} for {url}"
    published = {str(p).split(":")[-1].split("/")[0] for p in config["services"][host].get("ports", [])}
    assert port in published, f"{host} does not listen on {port} (publishes {published})"


def test_every_long_running_service_has_a_health_check(configs):
    services = _config(configs, "variant-0")["services"]
    for name, service in services.items():
        if service.get("restart") == "no":
            continue
        check = service.get("healthcheck")
        assert check and check.get("test"), f"{name} has no health check"
        assert {"interval", "timeout", "retries", "start_period"} <= set(check), f"{name}: {check}"
        assert service.get("restart") == "unless-stopped", f"{name} is not restarted when it exits"
    assert services["store-init"]["restart"] == "no"


def test_services_start_in_order(configs):
    services = _config(configs, "variant-0")["services"]
    for name in ("server", "alerts", "dashboard"):
        assert services[name]["depends_on"] == {"store-init": {"condition": "service_completed_successfully"}}, name
    assert services["collector"]["depends_on"] == {"server": {"condition": "service_healthy"}}
    assert "healthcheck" in services["server"]
    assert "depends_on" not in services["store-init"]  # waits for the store itself, whichever profile runs it


def test_ports_are_published_on_loopback_only(configs):
    for name, service in _config(configs, "variant-0")["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"


def test_slack_settings_and_tokens_reach_only_the_services_that_use_them(configs):
    services = _config(configs, "variant-1")["services"]
    for name in ("server", "alerts", "collector"):
        env = services[name]["environment"]
        assert env["SLACK_BOT_TOKEN"] == "xoxb-deploy-test" and env["SLACK_CHANNEL"] == "#tw", name
        assert env["TABLEWATCH_INGEST_TOKEN"] == "ingest-token", name
        assert env["TABLEWATCH_RULES"] == "/etc/tablewatch/rules.yaml", name
    assert services["server"]["environment"]["SLACK_SIGNING_SECRET"] == "s3cret"
    for name in ("dashboard", "store-init"):
        leaked = [k for k in services[name]["environment"] if k.startswith("SLACK_") or k.endswith("_TOKEN")]
        assert leaked == [], f"{name} gets {leaked}"


def test_env_example_documents_every_variable_and_tablewatch_reads_them():
    documented = stack.env_example_variables()
    assert set(REQUIRED_VARIABLES) <= set(documented)
    interpolated = set()
    for path in (stack.COMPOSE_FILE, stack.CLOUD_BIGTABLE_OVERRIDE):
        interpolated |= set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", path.read_text()))
    assert interpolated - set(documented) == set(), "interpolated but not in .env.example"
    source = "\n".join(p.read_text() for p in (stack.REPO / "tablewatch").rglob("*.py"))
    for name in documented:
        if name.startswith(("TABLEWATCH_", "SLACK_")):
            assert f'"{name}"' in source, f"{name} is in .env.example, but tablewatch never reads it"
    assert all(value == "" for name, value in documented.items() if name.startswith("SLACK_")), "no secrets"


def test_the_rules_file_every_service_mounts_is_valid(configs):
    from tablewatch.cli import main

    rules_paths = set()
    for name, service in _tablewatch_services(_config(configs, "variant-0")).items():
        mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
        assert "/etc/tablewatch/rules.yaml" in mounts, name
        rules_paths.add(mounts["/etc/tablewatch/rules.yaml"])
    assert rules_paths == {str(stack.REPO / stack.env_example_variables()["TABLEWATCH_RULES"].removeprefix("./"))}
    for invocation in stack.compose_invocations():
        if "--rules" in invocation.argv:
            assert invocation.argv[invocation.argv.index("--rules") + 1] == "/etc/tablewatch/rules.yaml"
    assert main(["alerts", "check", rules_paths.pop()]) == 0


def test_cloud_bigtable_override_mounts_the_key_into_every_tablewatch_service(configs):
    services = _tablewatch_services(_config(configs, "cloud"))
    assert set(SERVICES) | {"store-init"} <= set(services)
    for name, service in services.items():
        assert service["environment"]["GOOGLE_APPLICATION_CREDENTIALS"] == "/etc/tablewatch/google-credentials.json"
        assert "/keys/tablewatch.json:/etc/tablewatch/google-credentials.json:ro" in service["volumes"], name
        assert service["environment"]["TABLEWATCH_STORE"] == "bigtable://p/i"
    missing = configs["cloud-without-key"]
    assert missing.returncode != 0 and "GOOGLE_APPLICATION_CREDENTIALS" in missing.stderr


# -- the image ---------------------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", stack.DOCKERFILE.read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
            for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_image_is_python_311_slim_with_every_extra_it_installs():
    import tomllib

    instructions = _dockerfile()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    installs = [arg for op, arg in instructions if op == "RUN" and "pip install" in arg]
    extras = set()
    for command in installs:
        for spec in re.findall(r"'\.\[([^\]]*)\]'", command):
            extras |= set(spec.split(","))
    assert "all" in extras, f"the image installs tablewatch with .[all]: {installs}"
    declared = tomllib.loads((stack.REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras - set(declared) == set(), f"pyproject.toml declares no extra {sorted(extras - set(declared))}"
    users = [arg for op, arg in instructions if op == "USER"]
    assert users and users[-1] not in ("root", "0")


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        candidates = {pattern, pattern.removeprefix("**/")}
        if any(fnmatch.fnmatch(path, c) or path.startswith(c + "/") for c in candidates):
            ignored = not negate
    return ignored


def test_the_build_context_has_what_the_image_copies_and_no_secrets():
    patterns = [line.strip() for line in stack.DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    copied = []
    for op, arg in _dockerfile():
        if op == "COPY":
            copied += [source for source in arg.split()[:-1] if not source.startswith("--")]
    assert {"pyproject.toml", "README.md", "tablewatch", "examples"} <= set(copied)
    for source in copied:
        assert (stack.REPO / source).exists(), f"COPY {source}: no such file"
        assert not _ignored(source, patterns), f"COPY {source}, but .dockerignore leaves it out"
    for secret in (".env", ".env.local", "tablewatch.db", "tablewatch.db-wal", ".venv", ".git"):
        assert _ignored(secret, patterns), f"{secret} would be sent to the Docker daemon"
    services = stack.compose_file()["services"]
    assert {s.get("build") for s in services.values() if stack.is_tablewatch_service(s)} == {"."}
