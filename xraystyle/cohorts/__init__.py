"""Cohorts: the manifest schema, public-source adapters, splits, and cohort definitions."""

from .build import BuildReport, build_manifest
from .check import CheckFailure, check_manifest
from .definition import CohortDefinition, resolve_cohort
from .manifest import Manifest, load_manifest, write_manifest
from .splits import assign_splits
from .summary import summarize
from .vocabulary import FINDINGS, NORMAL

__all__ = [
    "FINDINGS", "NORMAL", "Manifest", "load_manifest", "write_manifest", "build_manifest", "BuildReport",
    "assign_splits", "resolve_cohort", "CohortDefinition", "check_manifest", "CheckFailure", "summarize",
]
