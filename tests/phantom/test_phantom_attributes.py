"""The attribute oracle: it reads fluid side / volume, nodules and CTR off ideal renders, not off
degenerate outputs, and a grown heart is never fluid."""

import numpy as np
import pytest

from xraystyle.errors import ConfigError
from xraystyle.phantom.attributes import (
    _prep,
    blur_output,
    calibrate_attribute_oracle,
    noise_output,
    patient_baseline,
    reexpose_output,
)
from xraystyle.phantom.generator import draw_physics, render_phantom

S = 32
N = 24


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("attr-oracle")


@pytest.fixture(scope="module")
def oracle(cache):
    return calibrate_attribute_oracle(S, N, seed=0, cache_dir=cache)


def _physics(seed):
    return draw_physics(np.random.default_rng(seed))


def _case(seed, findings, physics=None):
    return _prep(render_phantom(seed, S, findings, physics), S)


def test_report_has_rates_with_intervals(oracle):
    rep = oracle.report
    assert rep["protocol"]["test"] == N // 2 and rep["protocol"]["size"] == S
    side = rep["effusion"]["side_accuracy"]
    assert side["n"] == N // 2 and side["ci95"][0] <= side["value"] <= side["ci95"][1]
    assert side["value"] >= 0.75
    for case in ("untouched", "blurred", "reexposed", "noise"):
        assert rep["false_positive"][case]["any"]["n"] == N // 2
    assert rep["false_positive"]["noise"]["valid"]["value"] == 0.0


@pytest.mark.parametrize("seed", [900, 901, 902])
def test_ideal_renders_separate_from_degenerate_outputs(oracle, seed):
    phys = _physics(seed)
    base = patient_baseline(seed, S, phys)
    ideal = oracle.measure(_case(seed, {"effusion": {"side": "both", "volume": 0.4, "meniscus": 0.5}}, phys), base)
    assert ideal.valid and ideal.side == "both"
    rng = np.random.default_rng(seed)
    for name, out in (("untouched", base.image), ("blurred", blur_output(base.image)),
                      ("reexposed", reexpose_output(base.image, rng)), ("noise", noise_output(S, rng))):
        a = oracle.measure(out, base)
        assert a.side == "none" and not a.cardiomegaly, name
        assert a.fluid_volume == 0.0
        if name == "noise":  # not this patient: the gate rejects it, whatever its statistics
            assert not a.valid and not a.nodule_present
        else:
            assert a.valid
            assert max(a.fluid[s].area for s in ("right", "left")) < min(ideal.fluid[s].area for s in ("right", "left"))


@pytest.mark.parametrize("side", ["left", "right", "both"])
def test_side_is_right_on_clear_cases(oracle, side):
    for seed in (910, 911):
        phys = _physics(seed)
        base = patient_baseline(seed, S, phys)
        a = oracle.measure(_case(seed, {"effusion": {"side": side, "volume": 0.45, "meniscus": 0.5}}, phys), base)
        assert a.side == side, (seed, a.fluid)


def test_volume_ranks_on_a_monotone_series(oracle):
    from scipy.stats import spearmanr

    seed, phys = 920, _physics(920)
    base = patient_baseline(seed, S, phys)
    vols = [0.2, 0.3, 0.4, 0.5]
    est = [oracle.measure(_case(seed, {"effusion": {"side": "right", "volume": v, "meniscus": 0.6}}, phys),
                          base).fluid["right"] for v in vols]
    raw = [f.area for f in est]
    assert all(f.present for f in est)
    assert spearmanr(vols, raw).statistic == 1.0  # the raw statistic is strictly ordered
    cal = [f.volume for f in est]
    assert all(b >= a for a, b in zip(cal, cal[1:]))  # the calibrated one is monotone


@pytest.mark.parametrize("seed", [930, 931, 932, 933])
def test_cardiomegaly_alone_is_not_effusion(oracle, seed):
    phys = _physics(seed)
    base = patient_baseline(seed, S, phys)
    a = oracle.measure(_case(seed, {"cardiomegaly": {"ctr": 0.68}}, phys), base)
    assert a.side == "none", a.fluid
    assert a.cardiomegaly and a.ctr > 0.6
    normal = oracle.measure(base.image, base)
    assert not normal.cardiomegaly and normal.ctr == pytest.approx(base.ctr)


def test_cache_hit_skips_recalibration(oracle, cache, monkeypatch):
    import xraystyle.phantom.attributes as mod

    assert list((cache / "attribute_oracle").glob(f"{S}px-n{N}-s0-*.json"))
    monkeypatch.setattr(mod, "_calibrate", lambda *a, **k: pytest.fail("recalibrated"))
    again = calibrate_attribute_oracle(S, N, seed=0, cache_dir=cache)
    assert again.to_json() == oracle.to_json()


def test_cache_key_covers_the_generator_version(cache, monkeypatch):
    import xraystyle.phantom.default as default
    from xraystyle.phantom.attributes import _cache_path

    before = _cache_path(S, N, 0, "auto", cache)
    monkeypatch.setattr(default, "generator_version", lambda: "other")
    assert _cache_path(S, N, 0, "auto", cache) != before


def test_bad_input_is_one_line_error(oracle):
    base = patient_baseline(940, S, None)
    with pytest.raises(ConfigError, match="shape") as e:
        oracle.measure(np.zeros((S, S + 1), np.float32), base)
    assert "\n" not in str(e.value)
    bad = base.image.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ConfigError, match="non-finite") as e:
        oracle.measure(bad, base)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="calibrated at"):
        oracle.measure(np.zeros((64, 64), np.float32), patient_baseline(940, 64, None))
    with pytest.raises(ConfigError, match="n must be"):
        calibrate_attribute_oracle(S, 2)


def test_accepts_torch_batch_of_one(oracle):
    torch = pytest.importorskip("torch")
    base = patient_baseline(941, S, None)
    a = oracle.measure(torch.from_numpy(base.image)[None], base)
    assert a.valid and a.side == "none"
