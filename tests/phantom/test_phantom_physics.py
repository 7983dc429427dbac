"""Physics factors move the image the documented way and are independent of the findings."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from xraystyle.errors import ConfigError
from xraystyle.phantom.generator import (
    FINDINGS,
    NEUTRAL_PHYSICS,
    PHYSICS_RANGES,
    case_streams,
    draw_labels,
    draw_physics,
    render_phantom,
)

SIZE = 64
SEED = 11


def _render(**physics):
    return render_phantom(SEED, SIZE, {"effusion": True, "nodule": True}, physics or None)


@pytest.fixture(scope="module")
def neutral():
    return _render()


def _regions(sample):
    lungs = sample.anatomy_masks["lung_right"] | sample.anatomy_masks["lung_left"]
    heart = sample.anatomy_masks["heart"]
    return lungs & ~sample.masks["effusion"] & ~sample.masks["nodule"], heart


def _contrast(sample):
    lungs, heart = _regions(sample)
    return sample.image[heart].mean() - sample.image[lungs].mean()


def _hf(sample):
    body = ndi.binary_erosion(sample.anatomy_masks["body"], iterations=2)
    return np.abs(ndi.laplace(sample.image.astype(np.float64)))[body].mean()


def test_neutral_physics_is_the_attenuation(neutral):
    assert np.allclose(neutral.image, np.clip(neutral.attenuation, 0, 1), atol=1e-5)
    lungs, heart = _regions(neutral)
    assert neutral.image[lungs].mean() < 0.4 < neutral.image[heart].mean()  # lungs dark, heart bright


def test_physics_never_changes_anatomy_or_findings(neutral):
    other = _render(**draw_physics(np.random.default_rng(0)))
    assert np.array_equal(other.attenuation, neutral.attenuation)
    for f in FINDINGS:
        assert np.array_equal(other.masks[f], neutral.masks[f])
    assert other.truth == neutral.truth and other.anatomy == neutral.anatomy
    assert not np.array_equal(other.image, neutral.image)


def test_higher_exposure_darkens(neutral):
    # Convention (documented): more dose = more detector signal = darker, as on film.
    lo, hi = _render(exposure=0.8), _render(exposure=1.3)
    assert hi.image.mean() < neutral.image.mean() < lo.image.mean()


def test_contrast_factor_scales_tissue_differences(neutral):
    assert _contrast(_render(contrast=1.2)) > _contrast(neutral) > _contrast(_render(contrast=0.85))


def test_gamma_above_one_darkens_midtones(neutral):
    assert _render(gamma=1.3).image.mean() < neutral.image.mean() < _render(gamma=0.8).image.mean()


def test_noise_adds_high_frequency_energy(neutral):
    noisy, noisier = _render(noise=0.01), _render(noise=0.025)
    assert _hf(neutral) < _hf(noisy) < _hf(noisier)
    # quantum noise is signal dependent: stronger behind dense tissue (fewer photons)
    lungs, heart = _regions(neutral)
    resid = noisier.image - neutral.image
    assert resid[heart].std() > resid[lungs].std()


def test_scatter_lowers_contrast_but_keeps_anatomy(neutral):
    veiled = _render(scatter=0.4)
    assert _contrast(veiled) < 0.85 * _contrast(neutral)
    assert _contrast(_render(scatter=0.2)) > _contrast(veiled)


def test_blur_removes_high_frequencies():
    # blur is in mm: at 64 px (6.7 mm pixels) 1.5 mm is invisible, at 256 px it is ~0.9 px
    sharp = render_phantom(SEED, 256, {}, None)
    blurred = render_phantom(SEED, 256, {}, {"blur_mm": 1.5})
    assert _hf(blurred) < 0.8 * _hf(sharp)


def test_same_seed_same_noise_field():
    a, b = _render(noise=0.02), _render(noise=0.02)
    assert np.array_equal(a.image, b.image)


def test_physics_is_drawn_independently_of_findings():
    """Over 400 cohort draws, no physics parameter correlates with any label beyond chance."""
    prevalence = {f: 0.3 for f in FINDINGS}
    labels, phys = [], []
    for i in range(400):
        streams = case_streams(0, i)
        present = draw_labels(streams, FINDINGS, prevalence)
        labels.append([int(f in present) for f in FINDINGS])
        p = draw_physics(streams["physics"])
        phys.append([float(p[k]) for k in sorted(p)])
    labels, phys = np.array(labels, float), np.array(phys, float)
    assert np.all(np.abs(labels.mean(axis=0) - 0.3) < 0.08)
    corr = np.corrcoef(np.hstack([labels, phys]), rowvar=False)[: len(FINDINGS), len(FINDINGS):]
    assert np.nanmax(np.abs(corr)) < 0.2  # |r| < 0.2 is a 4-sigma bound for n = 400
    # the draws cover their documented ranges
    keys = sorted(NEUTRAL_PHYSICS)
    for j, key in enumerate(keys):
        rng = PHYSICS_RANGES[key]
        assert phys[:, j].min() >= min(rng) and phys[:, j].max() <= max(rng)
        assert len(np.unique(phys[:, j])) > 1


def test_bad_physics_is_rejected():
    with pytest.raises(ConfigError, match="unknown key"):
        _render(kvp=80)
    with pytest.raises(ConfigError, match="exposure"):
        _render(exposure=0)
    with pytest.raises(ConfigError, match="scatter"):
        _render(scatter=1.0)
    with pytest.raises(ConfigError, match="bit_depth"):
        _render(bit_depth=20)
