"""Promotion and rollback: the library functions behind ``mldeploy promote / rollback / canary``.

Blue-green is this switch: both versions exist side by side, and promote or rollback moves all
traffic (every later ``detect``, and the server's live route) from one to the other in one
transaction, with the way back always one ``rollback`` away.
"""

from __future__ import annotations

from mldeploy.errors import ModelUnavailableError, UsageError
from mldeploy.models.base import ModelSpec
from mldeploy.models.registry import Registry, missing_files_message
from mldeploy.project import Project
from mldeploy.store import KEEP, Change


def _builtin_default(project: Project, model: str) -> str:
    """What is live for a model the store never recorded: the zoo's (or project file's) default."""
    return project.registry(with_live=False).default_version(model)


def promote(project: Project, spec: ModelSpec, *, reason: str = "", command: str = "", force: bool = False, action: str = "promote") -> Change | None:
    """Make ``spec`` the live version of its model. ``None`` when it already was.

    Raises:
        ModelUnavailableError: its files are missing here (unless ``force``): a version that cannot
            load must not go live.
    """
    missing = spec.missing_files()
    if missing and not force:
        raise ModelUnavailableError(missing_files_message(spec, missing) + "; not promoted (--force promotes anyway)")
    if not missing and not project.check_pins(spec):  # what goes live is pinned: a file changed later is refused when it loads
        project.pin(spec)
    return project.store().switch(spec.name, spec.version, current_default=_builtin_default(project, spec.name), action=action, reason=reason, command=command)


def rollback(project: Project, model: str, *, reason: str = "", command: str = "") -> Change:
    registry = project.registry(with_live=False)
    registry.require(model)
    return project.store().rollback(model, current_default=registry.default_version(model), reason=reason, command=command)


def set_route(project: Project, model: str, *, shadow=KEEP, canary=KEEP, weight: float | None = None, action: str = "route",
              reason: str = "", command: str = "", if_canary: str | None = None):
    """Start or stop a shadow, set or clear a canary, for servers to apply. Versions are checked first.

    Raises:
        UnknownModelError: unknown model or version.
        UsageError: a weight outside 0..100, or a version equal to the live one.
    """
    registry = project.registry()
    registry.require(model)
    live = registry.default_version(model)
    for role, version in (("shadow", shadow), ("canary", canary)):
        if version not in (None, KEEP):
            registry.resolve(f"{model}@{version}")
            if version == live:
                raise UsageError(f"{model}@{version} is the live version; a {role} must be another version")
    if weight is not None and not 0 <= weight <= 100:
        raise UsageError(f"canary weight {weight:g} is not a percentage from 0 to 100")
    default = project.registry(with_live=False).default_version(model)
    return project.store().set_route(model, current_default=default, shadow=shadow, canary=canary, weight=weight, action=action,
                                     reason=reason, command=command, if_canary=if_canary)


def resolve_version(registry: Registry, ref: str, model: str) -> ModelSpec:
    """``faces@v2`` as it is; ``v2`` as a version of ``model``; ``faces`` as its live version."""
    if "@" in ref:
        return registry.resolve(ref)
    if any(spec.version == ref for spec in registry.versions(model)):
        return registry.resolve(f"{model}@{ref}")
    if registry.versions(ref):
        return registry.resolve(ref)
    return registry.resolve(f"{model}@{ref}")  # raises, naming the versions that exist
