"""Detector interface, the registry of names@versions, and load-once model loading."""

from mldeploy.models.base import Detector, ModelSpec
from mldeploy.models.registry import DEFAULT_MODEL, Registry, default_registry, load_detector, parse_ref

__all__ = ["DEFAULT_MODEL", "Detector", "ModelSpec", "Registry", "default_registry", "load_detector", "parse_ref"]
