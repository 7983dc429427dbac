"""Shared fixture: a tiny phantom cohort (32 px), generated once for the whole folder, with the
phantom's cache (its lung-mask bank) in a temporary folder rather than the home folder."""

from __future__ import annotations

import pytest

from xraystyle.cohorts.manifest import load_manifest


@pytest.fixture(scope="session")
def phantom_manifest(tmp_path_factory):
    from xraystyle.phantom.generator import generate_phantom_cohort

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XRAYSTYLE_CACHE", str(tmp_path_factory.mktemp("phantom-cache")))
        path = generate_phantom_cohort(tmp_path_factory.mktemp("phantom"), n=120, size=32, seed=3,
                                       findings=("effusion",), prevalence={"effusion": 0.5},
                                       split=(0.6, 0.2, 0.2))
    return load_manifest(path)
