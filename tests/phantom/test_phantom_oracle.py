"""The phantom oracle: calibrated on rendered pairs, its accuracy measured, its verdicts sane."""

import pytest
import torch

from xraystyle.phantom.generator import render_phantom
from xraystyle.phantom.oracle import is_phantom_manifest, load_oracle, rank_image
from xraystyle.transforms import PreprocessConfig, preprocess_array

CFG = PreprocessConfig(size=32)


@pytest.fixture(scope="module")
def oracle_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("oracle")


@pytest.fixture(scope="module")
def oracle(oracle_cache):
    return load_oracle(["effusion"], 32, CFG, n=24, cache_dir=oracle_cache)


def _img(seed, effusion, physics=None):
    s = render_phantom(seed, 32, {"effusion": effusion}, physics)
    return torch.as_tensor(preprocess_array(s.image, None, CFG)["image"])[0], torch.from_numpy(s.masks["effusion"])


def test_calibration_is_measured_and_good_on_effusion(oracle):
    m = oracle.models["effusion"]
    assert m.polarity == 1.0  # fluid is dense: brighter
    for direction in ("add", "remove"):
        rule = m.rules[direction]
        assert rule.n_test_pairs == 24
        assert rule.balanced_accuracy >= 0.8, (direction, rule)
    assert m.anatomy_same_pass >= 0.9
    report = oracle.report()
    assert set(report["findings"]["effusion"]) >= {"add", "remove", "anatomy", "polarity"}


def test_calibration_is_cached(oracle, oracle_cache, monkeypatch):
    import xraystyle.phantom.oracle as mod

    assert list((oracle_cache / "oracle").glob("effusion-32px-*.npz"))  # this fixture's own cache only
    monkeypatch.setattr(mod, "calibrate_finding", lambda *a, **k: pytest.fail("recalibrated"))
    again = load_oracle(["effusion"], 32, CFG, n=24, cache_dir=oracle_cache)
    assert again.models["effusion"].rules["add"] == oracle.models["effusion"].rules["add"]


def test_a_new_phantom_generator_recalibrates(oracle, oracle_cache, monkeypatch):
    """The cache key holds the generator's hash: an oracle fitted to an older phantom is not reused."""
    import xraystyle.phantom.default as default
    import xraystyle.phantom.oracle as mod

    calls = []
    real = mod.calibrate_finding
    monkeypatch.setattr(default, "generator_version", lambda: "0123456789ab")
    monkeypatch.setattr(mod, "calibrate_finding", lambda *a, **k: calls.append(1) or real(*a, **k))
    load_oracle(["effusion"], 32, CFG, n=24, cache_dir=oracle_cache)
    assert calls == [1]
    assert len(list((oracle_cache / "oracle").glob("effusion-32px-*.npz"))) == 2


def test_verdicts_on_true_and_false_counterfactuals(oracle):
    seeds = range(500, 506)
    without = [_img(s, False) for s in seeds]
    with_ = [_img(s, True, {"exposure": 1.2, "gamma": 0.9}) for s in seeds]
    src = torch.stack([w[0] for w in without])
    pos = torch.stack([w[0] for w in with_])
    masks = torch.stack([w[1] for w in with_])
    assert oracle.judge(pos, src, "effusion", None).float().mean() >= 0.8  # the finding added
    assert not oracle.judge(src, src, "effusion", None).any()  # nothing changed
    assert oracle.judge(src, pos, None, "effusion", masks).float().mean() >= 0.8  # removed
    noise = torch.rand_like(src) * 2 - 1
    assert not oracle.anatomy_kept(noise, src, ["effusion"]).any()  # not the same patient


def test_rank_image_is_invariant_to_monotonic_grey_changes():
    x = torch.rand(2, 16, 16) * 2 - 1
    y = ((x + 1) / 2) ** 0.7 * 1.3 - 0.4
    assert torch.equal(rank_image(x), rank_image(y))


def test_phantom_cohorts_are_recognised(phantom_manifest, tmp_path):
    assert is_phantom_manifest(phantom_manifest)
    other = phantom_manifest.subset("train")
    other.df["patient_id"] = [f"p{i}" for i in range(len(other.df))]
    assert not is_phantom_manifest(other)
    with pytest.raises(ValueError, match="no phantom oracle for atelectasis"):
        load_oracle(["atelectasis"], 32, CFG, cache_dir=tmp_path)
