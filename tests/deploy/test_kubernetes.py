"""deploy/kubernetes: every manifest validated against Kubernetes' own OpenAPI
schemas (kubernetes-validate, strict: unknown fields are errors; offline), the
kustomization rendered by ``kubectl kustomize``, and the wiring between the
objects (Secret keys, the rules ConfigMap, Services, probes, resources)."""

from __future__ import annotations

import copy
import subprocess

import kubernetes_validate
import pytest
import yaml

from tablewatch.cli import main
from tests.deploy import stack

#: The oldest and the newest Kubernetes minor versions the manifests must suit.
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
WORKLOADS = {"tablewatch-server", "tablewatch-alerts", "tablewatch-dashboard"}


def _quantity(text: str | int) -> float:
    """A Kubernetes quantity (``100m``, ``1``, ``256Mi``, ``2Gi``) as a number."""
    text = str(text)
    for suffix, factor in (("Ki", 2**10), ("Mi", 2**20), ("Gi", 2**30), ("m", 1e-3)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_strictly_against_the_kubernetes_schema(version):
    documents = stack.manifests()
    assert {doc["kind"] for _, doc in documents} >= {"Deployment", "Service", "ConfigMap", "Secret", "Namespace"}
    for path, doc in documents:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{path.name} {doc['kind']}/{doc['metadata']['name']} (Kubernetes {version}): "
                        f"{'.'.join(map(str, e.path))}: {e.message}")


def test_the_schema_check_rejects_an_unknown_field_and_a_wrong_type():
    deployment = next(doc for _, doc in stack.manifests() if doc["metadata"]["name"] == "tablewatch-server")
    misspelt = copy.deepcopy(deployment)
    misspelt["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pth"] = "/healthz"
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "two"
    for broken in (misspelt, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_kustomize_renders_every_manifest_but_the_example_secret():
    rendered = subprocess.run(["kubectl", "kustomize", str(stack.KUBERNETES_DIR)], capture_output=True, text=True,
                              timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    documents = [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]
    expected = {(doc["kind"], doc["metadata"]["name"]) for _, doc in stack.manifests() if doc["kind"] != "Secret"}
    assert {(doc["kind"], doc["metadata"]["name"]) for doc in documents} == expected
    for doc in documents:
        assert doc["metadata"].get("namespace", "tablewatch") == "tablewatch"
        kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[-1], strict=True)
    images = {c["image"] for doc in documents if doc["kind"] == "Deployment"
              for c in doc["spec"]["template"]["spec"]["containers"]}
    assert images == {"tablewatch:latest"}


def test_every_container_has_liveness_and_readiness_probes_and_bounded_resources():
    seen = set()
    for name, _, container in stack.workloads():
        seen.add(name)
        for probe in ("livenessProbe", "readinessProbe"):
            assert probe in container, f"{name}: no {probe}"
        resources = container.get("resources", {})
        for resource in ("cpu", "memory"):
            request, limit = resources["requests"][resource], resources["limits"][resource]
            assert 0 < _quantity(request) <= _quantity(limit), f"{name}: {resource} {request} > {limit}"
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert seen == WORKLOADS


def test_the_store_url_and_slack_secrets_come_from_the_example_secret():
    secret = next(doc for _, doc in stack.manifests() if doc["kind"] == "Secret")
    for name, _, container in stack.workloads():
        env = {e["name"]: e for e in container.get("env", [])}
        store = env["TABLEWATCH_STORE"]["valueFrom"]["secretKeyRef"]
        assert store.get("optional", False) is False, f"{name}: the store URL must be there"
        for variable in env.values():
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] == secret["metadata"]["name"], f"{name}: {variable['name']}"
                assert ref["key"] in secret["stringData"], f"{name}: the Secret has no {ref['key']}"
                assert variable["name"] == ref["key"], "keys are named like the variables (.env works as is)"
        inline = [e["name"] for e in env.values() if "://" in str(e.get("value", ""))]
        assert inline == [], f"{name}: store URLs belong in the Secret, not inline: {inline}"
    env_of = {name: {e["name"] for e in c.get("env", [])} for name, _, c in stack.workloads()}
    assert {"SLACK_BOT_TOKEN", "SLACK_CHANNEL", "SLACK_WEBHOOK_URL"} <= env_of["tablewatch-alerts"]
    assert {"SLACK_SIGNING_SECRET", "TABLEWATCH_INGEST_TOKEN"} <= env_of["tablewatch-server"]
    assert env_of["tablewatch-dashboard"] == {"TABLEWATCH_STORE"}


def test_the_rules_configmap_is_valid_and_mounted_where_the_commands_read_it(tmp_path):
    configmaps = {doc["metadata"]["name"]: doc for _, doc in stack.manifests() if doc["kind"] == "ConfigMap"}
    checked = 0
    for name, pod, container in stack.workloads():
        argv = container["command"]
        if "--rules" not in argv:
            continue
        path = argv[argv.index("--rules") + 1]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mount = next(m for m in container["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/"))
        configmap = configmaps[volumes[mount["name"]]["configMap"]["name"]]
        key = path[len(mount["mountPath"].rstrip("/")) + 1:]
        rules = tmp_path / f"{name}-{key}"
        rules.write_text(configmap["data"][key])
        assert main(["alerts", "check", str(rules)]) == 0, f"{name}: {path} from ConfigMap {configmap['metadata']['name']}"
        checked += 1
    assert checked == 2  # the runner and the server


def test_services_select_their_pods_and_name_their_ports():
    pods = {name: (pod, container) for name, pod, container in stack.workloads()}
    deployments = {doc["metadata"]["name"]: doc for _, doc in stack.manifests() if doc["kind"] == "Deployment"}
    services = [doc for _, doc in stack.manifests() if doc["kind"] == "Service"]
    assert {s["metadata"]["name"] for s in services} == {"tablewatch-server", "tablewatch-dashboard"}
    for service in services:
        selector = service["spec"]["selector"].items()
        matching = [n for n, d in deployments.items() if selector <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert matching == [service["metadata"]["name"]], f"{service['metadata']['name']} selects {matching}"
        _, container = pods[matching[0]]
        for port in service["spec"]["ports"]:
            stack.container_port(container, port["targetPort"])
    for name, deployment in deployments.items():
        assert deployment["spec"]["selector"]["matchLabels"].items() <= \
            deployment["spec"]["template"]["metadata"]["labels"].items(), name
