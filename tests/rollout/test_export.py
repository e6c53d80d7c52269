"""``mldeploy export argo`` and ``export flagger``: the YAML they write is valid against the controllers'
real CRD schemas (tests/data/crds/, copied from argoproj/argo-rollouts and fluxcd/flagger), and says what
mldeploy's verdict endpoint expects."""

import copy

import yaml

from tests.helpers.crds import errors


def documents(cli, *args):
    result = cli("export", *args)
    assert result.exit_code == 0, result.output
    return list(yaml.safe_load_all(result.stdout))


def test_argo_templates_are_valid_and_read_the_verdict(cli, project_dir):
    web, promote, job = documents(cli, "argo", "-m", "faces", "--url", "http://mldeploy.prod:8000/", "--max-error-rate", "0.02",
                                  "--replay-image", "registry.example/mldeploy:1", "--new", "v2")
    assert errors(web) == [] and errors(promote) == [] and errors(job) == []
    metric = web["spec"]["metrics"][0]
    assert (metric["successCondition"], metric["failureCondition"]) == ('result == "pass"', 'result == "fail"')  # inconclusive: neither
    assert metric["provider"]["web"]["jsonPath"] == "{$.verdict.status}"
    assert metric["provider"]["web"]["url"] == "{{args.mldeploy-url}}/admin/models/faces/analysis?min_requests=20&min_compared=20&max_error_rate=0.02"
    assert web["spec"]["args"][0]["value"] == "http://mldeploy.prod:8000"
    command = job["spec"]["metrics"][0]["provider"]["job"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:6] == ["mldeploy", "shadow", "--capture", "/capture", "-m", "faces"] and "--new" in command
    broken = copy.deepcopy(web)
    broken["spec"]["metrics"][0]["provider"]["web"]["timeoutSeconds"] = "thirty"
    assert errors(broken)  # the validation bites
    posted = promote["spec"]["metrics"][0]  # the last step: the version the canary pods served, promoted in the state
    assert posted["provider"]["web"]["method"] == "POST" and posted["provider"]["web"]["url"] == "{{args.mldeploy-url}}/admin/models/faces/promote"
    assert posted["provider"]["web"]["jsonBody"]["version"] == "{{args.version}}"
    assert posted["successCondition"] == 'result == "faces@{{args.version}}"' and posted["provider"]["web"]["jsonPath"] == "{$.routing.live}"
    assert {"name": "version"} in promote["spec"]["args"]  # the Rollout passes it


def test_flagger_objects_are_valid_and_call_the_webhooks(cli, project_dir):
    metric, canary = documents(cli, "flagger", "--deployment", "faces-api", "-m", "faces")
    assert errors(metric) == [] and errors(canary) == []
    hooks = {h["type"]: h for h in canary["spec"]["analysis"]["webhooks"]}
    assert hooks["confirm-promotion"]["url"].startswith("http://mldeploy:8000/flagger/models/faces/confirm-promotion?")
    assert hooks["rollback"]["metadata"]["token"] == "${MLDEPLOY_ADMIN_TOKEN}"
    assert hooks["post-rollout"]["url"] == "http://mldeploy:8000/flagger/models/faces/post-rollout"
    assert 'route="canary"' in metric["spec"]["query"] and canary["spec"]["targetRef"]["name"] == "faces-api"
    broken = copy.deepcopy(canary)
    broken["spec"]["analysis"]["threshold"] = "five"
    assert errors(broken)


def test_replay_without_a_version_is_a_usage_error(cli, project_dir):
    result = cli("export", "argo", "--replay-image", "img:1")
    assert result.exit_code == 2 and "--replay-image needs --new VERSION" in result.stderr
