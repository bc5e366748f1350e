"""What the deployment files say: the compose file as ``docker-compose config``
resolves it, the Kubernetes manifests, and every ``tablewatch`` command line and
HTTP probe they name.

Commands are read from the files as written (PyYAML resolves the anchors and
merge keys); ``docker-compose config`` is run only where interpolation or
compose's own validation matters.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
CLOUD_BIGTABLE_OVERRIDE = REPO / "deploy" / "compose" / "cloud-bigtable.yml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
KUBERNETES_DIR = REPO / "deploy" / "kubernetes"
KUSTOMIZATION = KUBERNETES_DIR / "kustomization.yaml"
TABLEWATCH_IMAGE = "tablewatch"
#: Variables of the caller's environment that would change what compose resolves.
_COMPOSE_INPUTS = re.compile(r"^(COMPOSE_|TABLEWATCH_|SLACK_|GOOGLE_APPLICATION_CREDENTIALS$|DOCKER_)")
_SHELL_OPERATORS = {";", "&&", "||", "|", "(", ")", "&", ";;"}
_SHELL_KEYWORDS = {"exec", "then", "do", "else", "!", "if", "while", "until"}


@dataclass(frozen=True)
class Invocation:
    """One ``tablewatch`` command line: ``argv`` comes after ``tablewatch``."""

    where: str
    argv: tuple[str, ...]
    service: str


@dataclass(frozen=True)
class Probe:
    """An HTTP health check: ``port`` as the container sees it."""

    where: str
    service: str
    port: int
    path: str


# -- compose --------------------------------------------------------------------------------


def compose_file() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose_command(files: Sequence[Path], env_file: Path, *args: str) -> list[str]:
    command = ["docker-compose", "--project-directory", str(REPO)]
    for path in files:
        command += ["-f", str(path)]
    return command + ["--env-file", str(env_file), *args]


def compose_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without anything compose would interpolate."""
    env = {k: v for k, v in os.environ.items() if not _COMPOSE_INPUTS.match(k)}
    env.update(extra or {})
    return env


def run_compose_configs(requests: Mapping[str, tuple[Sequence[Path], Path, Mapping[str, str]]],
                        timeout_s: float = 60) -> dict[str, subprocess.CompletedProcess]:
    """``docker-compose ... config`` for each request at once (each takes a
    second or two of start-up): ``{name: (files, env_file, extra_env)}``."""
    running = {
        name: subprocess.Popen(compose_command(files, env_file, "config"), cwd=REPO, env=compose_environment(extra),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, (files, env_file, extra) in requests.items()
    }
    done = {}
    for name, process in running.items():
        stdout, stderr = process.communicate(timeout=timeout_s)
        done[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return done


def is_tablewatch_service(service: Mapping[str, Any]) -> bool:
    return str(service.get("image", "")).split(":")[0] == TABLEWATCH_IMAGE


def env_example_variants() -> list[tuple[str, str]]:
    """The (COMPOSE_PROFILES, TABLEWATCH_STORE) pairs .env.example offers: the
    active one first, then each commented alternative."""
    pairs, profiles = [], None
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^#?\s*(COMPOSE_PROFILES|TABLEWATCH_STORE)=(\S*)\s*$", line)
        if not match:
            continue
        if match.group(1) == "COMPOSE_PROFILES":
            profiles = match.group(2)
        else:
            assert profiles is not None, f".env.example: {line!r} comes before its COMPOSE_PROFILES"
            pairs.append((profiles, match.group(2)))
            profiles = None
    return pairs


def env_example_variables() -> dict[str, str]:
    """Every VARIABLE=value of .env.example, the commented alternatives too."""
    found = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(\S*)\s*$", line)
        if match:
            found.setdefault(match.group(1), match.group(2))
    return found


# -- Kubernetes -----------------------------------------------------------------------------


def manifest_files() -> list[Path]:
    return sorted(p for p in KUBERNETES_DIR.glob("*.yaml") if p != KUSTOMIZATION)


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in manifest_files() for doc in yaml.safe_load_all(path.read_text()) if doc]


def workloads() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, pod spec, container) of every container of every Deployment."""
    for _, doc in manifests():
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
            pod = doc["spec"]["template"]["spec"]
            for container in pod["containers"]:
                yield doc["metadata"]["name"], pod, container


def container_port(container: Mapping[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    for declared in container.get("ports", []):
        if declared.get("name") == port:
            return declared["containerPort"]
    raise AssertionError(f"container {container['name']}: no port named {port!r}")


# -- command lines and probes -----------------------------------------------------------------


def shell_invocations(script: str) -> list[tuple[str, ...]]:
    """The ``tablewatch`` command lines of a shell script (one command per
    line or between operators; ``exec``, ``do``... before it are skipped)."""
    found = []
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        segment: list[str] = []
        for token in [*lexer, ";"]:
            if token not in _SHELL_OPERATORS:
                segment.append(token)
                continue
            while segment and segment[0] in _SHELL_KEYWORDS:
                segment.pop(0)
            if segment and segment[0] == "tablewatch":
                found.append(tuple(segment[1:]))
            segment = []
    return found


def argv_invocations(argv: Sequence[str], where: str, service: str, unescape: bool) -> list[Invocation]:
    """``tablewatch ...`` itself, or each one inside ``sh -c SCRIPT``."""
    argv = [str(a) for a in argv]
    if argv and argv[0] in ("CMD", "CMD-SHELL"):
        argv = argv[1:] if argv[0] == "CMD" else ["sh", "-c", " ".join(argv[1:])]
    if argv and argv[0] == "tablewatch":
        return [Invocation(where, tuple(argv[1:]), service)]
    if len(argv) >= 3 and argv[0] in ("sh", "bash") and argv[1] == "-c":
        script = argv[2].replace("$$", "$") if unescape else argv[2]
        return [Invocation(where, found, service) for found in shell_invocations(script)]
    return []


def compose_invocations(config: Mapping[str, Any] | None = None) -> list[Invocation]:
    config = config or compose_file()
    found = []
    for name, service in config["services"].items():
        for key, argv in (("command", service.get("command")), ("healthcheck", service.get("healthcheck", {}).get("test"))):
            if isinstance(argv, str):
                argv = ["sh", "-c", argv]
            if argv:
                found += argv_invocations(argv, f"docker-compose.yml services.{name}.{key}", name, unescape=True)
    return found


def kubernetes_invocations() -> list[Invocation]:
    found = []
    for name, _, container in workloads():
        where = f"deploy/kubernetes {name}/{container['name']}"
        argv = [*container.get("command", []), *container.get("args", [])]
        found += argv_invocations(argv, f"{where} command", name, unescape=False)
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            command = container.get(probe, {}).get("exec", {}).get("command")
            if command:
                found += argv_invocations(command, f"{where} {probe}", name, unescape=False)
    return found


def compose_probes(config: Mapping[str, Any] | None = None) -> list[Probe]:
    """The HTTP URLs a compose health check fetches (the container's own
    loopback address)."""
    config = config or compose_file()
    found = []
    for name, service in config["services"].items():
        for arg in service.get("healthcheck", {}).get("test", []) or []:
            if str(arg).startswith(("http://", "https://")):
                url = urlsplit(str(arg))
                assert url.hostname in ("127.0.0.1", "localhost"), f"{name}: a health check probes its own container"
                found.append(Probe(f"docker-compose.yml services.{name}.healthcheck", name, url.port or 80, url.path))
    return found


def kubernetes_probes() -> list[Probe]:
    found = []
    for name, _, container in workloads():
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            http = container.get(probe, {}).get("httpGet")
            if http:
                found.append(Probe(f"deploy/kubernetes {name}/{container['name']} {probe}", name,
                                   container_port(container, http["port"]), http["path"]))
    return found


def command_of(service: str, invocations: Sequence[Invocation]) -> Invocation:
    """The service's main command (the first invocation named after it that is
    not a health check)."""
    for invocation in invocations:
        if invocation.service == service and "healthcheck" not in invocation.where and "Probe" not in invocation.where:
            return invocation
    raise AssertionError(f"no tablewatch command for {service}")
