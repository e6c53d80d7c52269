"""The deployment example in docs/deploy/ (a container image and Kubernetes manifests): every object is
valid against the Kubernetes schemas (kubernetes-validate's copies of the API's OpenAPI documents) or
against the controllers' CRD schemas (tests/data/crds/); the exported templates are what `mldeploy
export` writes today; and every command a container runs is one mldeploy accepts."""

from pathlib import Path

import pytest
import yaml

from tests.helpers.commands import parses
from tests.helpers.crds import errors as crd_errors

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "docs" / "deploy"
KUBERNETES = "1.30.0"  # a release every supported cluster serves these APIs in


def objects(*names: str) -> list[dict]:
    return [doc for name in names for doc in yaml.safe_load_all((DEPLOY / "kubernetes" / name).read_text()) if doc]


def by_kind(docs: list[dict], kind: str) -> dict:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


ALL = ["secret.yaml", "service.yaml", "argo/rollout.yaml", "argo/analysis.yaml", "flagger/deployment.yaml", "flagger/canary.yaml"]


@pytest.mark.parametrize("name", ALL)
def test_every_object_is_valid_against_its_schema(name):
    import kubernetes_validate

    for obj in objects(name):
        if obj["apiVersion"].startswith(("argoproj.io/", "flagger.app/")):
            assert crd_errors(obj) == [], f"{name}: {obj['kind']}"
        else:  # strict: a misspelt field is an error, not ignored
            kubernetes_validate.validate(obj, KUBERNETES, strict=True)


def test_the_rollouts_pod_template_is_a_valid_pod_template():
    """Argo's CRD leaves the pod template open: it is checked as the Deployment it would be."""
    import kubernetes_validate

    rollout = by_kind(objects("argo/rollout.yaml"), "Rollout")
    as_deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "check"},
                     "spec": {"selector": rollout["spec"]["selector"], "template": rollout["spec"]["template"]}}
    kubernetes_validate.validate(as_deployment, KUBERNETES, strict=True)
    broken = yaml.safe_load(yaml.safe_dump(as_deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "eight thousand"
    with pytest.raises(kubernetes_validate.ValidationError):  # the check bites
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)


@pytest.mark.parametrize("name, args", [("argo/analysis.yaml", ["argo", "-m", "faces"]),
                                        ("flagger/canary.yaml", ["flagger", "--deployment", "mldeploy", "-m", "faces"])])
def test_the_exported_templates_are_what_export_writes_today(cli, project_dir, name, args):
    result = cli("export", *args)
    assert result.exit_code == 0, result.output
    assert list(yaml.safe_load_all(result.stdout)) == objects(name), f"regenerate with: mldeploy export {' '.join(args)} -o docs/deploy/kubernetes/{name}"


_parses = parses


def _container(obj: dict) -> dict:
    (container,) = obj["spec"]["template"]["spec"]["containers"]
    return container


def test_the_containers_run_commands_mldeploy_accepts_and_agree_with_each_other():
    from typer._click.exceptions import UsageError  # typer's own click, which parsed the command line

    rollout = by_kind(objects("argo/rollout.yaml"), "Rollout")
    deployment = by_kind(objects("flagger/deployment.yaml"), "Deployment")
    for obj in (rollout, deployment):
        _parses(_container(obj)["args"])
    with pytest.raises(UsageError):  # the check bites
        _parses(["serve", "--serve-versions", "faces=v2"])
    args = _container(rollout)["args"]
    served = args[args.index("--serve-version") + 1]
    last = rollout["spec"]["strategy"]["canary"]["steps"][-1]["analysis"]
    assert last["templates"] == [{"templateName": "mldeploy-faces-promote"}]
    assert served == f"faces={last['args'][0]['value']}"  # the version the pods serve is the one promoted
    templates = {t["metadata"]["name"] for t in objects("argo/analysis.yaml")}
    steps = [t["templateName"] for s in rollout["spec"]["strategy"]["canary"]["steps"] if "analysis" in s for t in s["analysis"]["templates"]]
    assert set(steps) <= templates
    secrets = {s["metadata"]["name"]: set(s["stringData"]) for s in objects("secret.yaml")}
    for obj in (rollout, deployment):
        for env in _container(obj)["env"]:
            ref = env["valueFrom"]["secretKeyRef"]
            assert ref["key"] in secrets[ref["name"]], env["name"]
    for template in objects("argo/analysis.yaml"):
        for arg in template["spec"].get("args", []):
            ref = arg.get("valueFrom", {}).get("secretKeyRef")
            assert ref is None or ref["key"] in secrets[ref["name"]]
    service = by_kind(objects("service.yaml"), "Service")
    assert service["spec"]["ports"][0]["targetPort"] in {p["name"] for p in _container(rollout)["ports"]}
    assert service["spec"]["selector"].items() <= rollout["spec"]["template"]["metadata"]["labels"].items()


def test_the_dockerfile_installs_this_project_and_runs_a_command_mldeploy_accepts():
    """No image is built here (no Docker daemon, no registry): its instructions are checked against the
    repository instead."""
    import json

    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    from dockerfile_parse import DockerfileParser

    parsed = DockerfileParser(fileobj=open(DEPLOY / "Dockerfile", "rb"))
    instructions = [(i["instruction"], i["value"]) for i in parsed.structure]
    for kind, value in instructions:
        if kind == "COPY":
            *sources, _ = value.split()
            assert all((ROOT / s).exists() for s in sources), value
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    installs = [v for k, v in instructions if k == "RUN" and "pip install" in v]
    assert installs and "'.[postgres]'" in installs[0] and "postgres" in project["project"]["optional-dependencies"]
    base = parsed.baseimage
    assert base.startswith("python:3.") and int(base.split(".")[1].split("-")[0]) >= int(project["project"]["requires-python"].split(".")[1])
    entry = json.loads(dict(instructions)["ENTRYPOINT"])
    cmd = json.loads(dict(instructions)["CMD"])
    assert entry == ["mldeploy"] and project["project"]["scripts"]["mldeploy"]
    _parses(cmd)
    port = dict(instructions)["EXPOSE"]
    assert cmd[cmd.index("--port") + 1] == port and "0.0.0.0" in cmd
    assert dict(instructions)["USER"] != "0" and dict(instructions)["USER"] != "root"
