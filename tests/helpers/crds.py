"""Validate a Kubernetes object against the OpenAPI v3 schema of its CRD (tests/data/crds/)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

CRDS = Path(__file__).resolve().parent.parent / "data" / "crds"


@lru_cache(maxsize=None)
def _schemas() -> dict[tuple[str, str], dict]:
    """``(apiVersion, kind) -> openAPIV3Schema`` of every CRD version served in the folder."""
    out = {}
    for path in sorted(CRDS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                if version.get("served"):
                    out[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = version["schema"]["openAPIV3Schema"]
    return out


def errors(obj: dict) -> list[str]:
    """Every way ``obj`` breaks its CRD's schema (empty: it is valid)."""
    import jsonschema

    schema = _schemas().get((obj.get("apiVersion"), obj.get("kind")))
    if schema is None:
        return [f"no CRD here for {obj.get('apiVersion')} {obj.get('kind')}"]
    validator = jsonschema.Draft4Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]
