"""Each metric on inputs whose answer is known."""

import math

import numpy as np
import pytest
import torch

from xraystyle.evaluation.classifier import op_norm
from xraystyle.evaluation.counterfactual import JudgeSpace
from xraystyle.evaluation.diversity import pairwise_feature_distance, pairwise_l1
from xraystyle.evaluation.features import FeatureStats, fid, frechet_distance, real_floor
from xraystyle.evaluation.identity import identity_scores
from xraystyle.evaluation.metrics import Batch, Fid, JudgeVerdicts
from xraystyle.evaluation.physics import global_stats, leakage_summary
from xraystyle.evaluation.roc import auc, balanced_accuracy, youden_threshold
from xraystyle.evaluation.tasks import PairTask, domain_set

DOMAINS = ("normal", "effusion", "nodule")
FINDINGS = ["effusion", "nodule"]


def _batch(p_src, p_fake, task, feats=None):
    """A Batch of b sources with K outputs each; images are blank (the judge metrics never read them)."""
    b, k = p_fake.shape[:2]
    asked = task.asked(np.tile(domain_set(task.target, FINDINGS), (b, 1)), FINDINGS)
    feats_src, feats_fake = ({}, {}) if feats is None else ({"feats": feats[0]}, {"feats": feats[1]})
    return Batch(torch.zeros(b, 1, 4, 4), torch.zeros(b * k, 1, 4, 4), p_src, p_fake, feats_src, feats_fake,
                 np.tile(domain_set(task.source, FINDINGS), (b, 1)), asked, torch.ones(b, 4, 4, dtype=torch.bool), {})


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 16))
    assert fid(a, a) == pytest.approx(0.0, abs=1e-6)
    assert fid(a, a + 0.5) == pytest.approx(16 * 0.25, rel=1e-6)  # mean shift only: |d|^2
    b = rng.normal(size=(300, 16)) * 2.0
    assert fid(a, b) > 1.0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # monai passes scipy's deprecated disp=
def test_fid_matches_monai_on_well_conditioned_features():
    from monai.metrics import FIDMetric

    rng = np.random.default_rng(1)
    a = rng.normal(size=(400, 8))
    b = rng.normal(size=(400, 8)) @ rng.normal(size=(8, 8)) * 0.5 + 0.3
    ours = fid(a, b)
    theirs = float(FIDMetric()(torch.from_numpy(a), torch.from_numpy(b)))
    assert ours == pytest.approx(theirs, rel=1e-5)


def test_fid_is_finite_and_non_negative_when_features_outnumber_images():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(10, 64)), rng.normal(size=(12, 64))
    value = frechet_distance(FeatureStats.of(a), FeatureStats.of(b))
    assert math.isfinite(value) and value > 0
    assert frechet_distance(FeatureStats.of(a), FeatureStats.of(a)) == pytest.approx(0.0, abs=1e-6)


def test_auc_youden_and_balanced_accuracy():
    assert auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert auc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5
    assert auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75  # sklearn's documented example
    assert auc([0.1, 0.2, np.nan], [0, 0, 1]) is None  # NaN dropped: one class left
    assert auc([0.1, 0.2, 0.3], [0, np.nan, 1]) == 1.0
    t = youden_threshold([0.1, 0.2, 0.7, 0.9], [0, 0, 1, 1])
    assert 0.2 < t < 0.7
    assert youden_threshold([0.1, 0.2], [1, 1]) == 0.5
    assert balanced_accuracy([True, False, False, False], [True, True, False, False]) == 0.75


def test_op_norm_maps_the_operating_point_to_one_half():
    p = torch.tensor([[0.05, 0.0, 1.0, 0.2]])
    t = torch.tensor([0.05, 0.05, 0.05, 0.6])
    out = op_norm(p, t)
    assert out[0, 0] == pytest.approx(0.5) and out[0, 1] == 0 and out[0, 2] == 1
    assert out[0, 3] == pytest.approx(0.2 / 1.2)


def _verdicts(source, target, p_src, p_out, p_real=np.zeros((0, 2))):
    task = PairTask(source, target, DOMAINS)
    metric = JudgeVerdicts(JudgeSpace.of(FINDINGS, np.array([0.5, 0.3]), FINDINGS, FINDINGS), task, FINDINGS, p_real)
    half = len(p_src) // 2  # two updates: the metric accumulates
    metric.update(_batch(p_src[:half], p_out[:half], task))
    metric.update(_batch(p_src[half:], p_out[half:], task))
    return metric.aggregate()


def test_validity_probability_shift_and_off_target():
    p_src = np.array([[0.1, 0.1], [0.2, 0.5]])
    p_out = np.array([[[0.9, 0.1], [0.4, 0.1]], [[0.6, 0.1], [0.7, 0.5]]])  # (N=2, K=2, F=2)
    task = PairTask("normal", "effusion", DOMAINS)
    assert (task.added, task.removed) == (("effusion",), ())
    res = _verdicts("normal", "effusion", p_src, p_out, p_real=np.array([[0.8, 0.0], [0.3, 0.0]]))
    assert res["validity"] == 0.75
    assert res["base_rate"] == 0.0
    assert res["real_rate"] == 0.5
    assert res["prob_shift/effusion"] == pytest.approx(np.mean([0.8, 0.3, 0.4, 0.5]))
    assert res["off_target_shift"] == pytest.approx(0.4 / 4)  # nodule: 0.5 -> 0.1 once in four outputs
    assert res["off_target_flip_rate"] == 0.25  # ... which crosses its 0.3 operating point
    assert res["judge_present/effusion"] == 0.75 and "target_rate" not in res  # a pair checks the edit only
    swap = _verdicts("nodule", "effusion", p_src, p_out)
    assert set(swap) >= {"added_rate", "removed_rate"} and "off_target_shift" not in swap
    assert swap["validity"] == pytest.approx(0.5)  # effusion >= .5 and nodule < .3
    assert "real_rate" not in swap  # no real target images


def test_real_floor_draws_disjoint_real_sets_and_shows_the_small_sample_bias():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(400, 16))
    small, n_small = real_floor(real, 10, np.random.default_rng(1))
    large, n_large = real_floor(real, 200, np.random.default_rng(1))
    assert (n_small, n_large) == (10, 200)
    assert small > 5 * large > 0  # the same distribution, far from 0 at small n: why FID needs its floor
    order = np.random.default_rng(1).permutation(400)
    assert small == pytest.approx(fid(real[order[:10]], real[order[10:20]]))  # two disjoint draws
    split, n_split = real_floor(real, 300, np.random.default_rng(1))  # fewer than 2n: split half
    assert n_split == 200 and split == pytest.approx(large)
    assert math.isnan(real_floor(real[:3], 10, rng)[0])


def test_fid_metric_reports_its_sample_sizes_and_floor():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(50, 4))
    task = PairTask("normal", "effusion", DOMAINS)
    metric = Fid("xray", "feats", real, lambda n: real_floor(real, n, np.random.default_rng(0)))
    p = np.zeros((3, 2, 2))
    metric.update(_batch(p[:, 0], p, task, feats=(rng.normal(size=(3, 4)), rng.normal(size=(6, 4)) + 1.0)))
    res = metric.aggregate()
    assert res["fid_xray_n"] == 6 and res["fid_xray_n_real"] == 50 and res["fid_xray_floor_n"] == 6
    assert res["fid_xray_real_floor"] == real_floor(real, 6, np.random.default_rng(0))[0]
    assert res["fid_xray"] > 0 and math.isfinite(res["fid_xray_source_baseline"])


def test_diversity_measures():
    x = torch.zeros(3, 1, 8, 8)
    assert pairwise_l1(x) == 0.0
    x[1] += 0.5
    x[2] += 1.0
    assert pairwise_l1(x) == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    f = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    assert pairwise_feature_distance(f) == pytest.approx(5.0)
    assert math.isnan(pairwise_l1(x[:1]))


def test_identity_ignores_the_finding_region():
    rng = np.random.default_rng(0)
    src = torch.from_numpy(rng.uniform(-1, 1, (2, 1, 32, 32)).astype(np.float32))
    ssim, l1 = identity_scores(src, src)
    assert np.allclose(ssim, 1.0) and np.allclose(l1, 0.0)
    out = src.clone()
    out[:, :, 20:, :] = 1.0  # change confined to the lower rows
    keep = torch.ones(32, 32, dtype=torch.bool)
    keep[14:, :] = False  # the region plus SSIM's 7-px window margin
    ssim_in, l1_in = identity_scores(out, src, keep)
    assert np.allclose(ssim_in, 1.0, atol=1e-6) and np.allclose(l1_in, 0.0)
    ssim_all, l1_all = identity_scores(out, src)
    assert (ssim_all < 0.9).all() and (l1_all > 0.1).all()


def test_physics_leakage_statistics():
    base = torch.zeros(1, 1, 8, 8)
    base[..., :4] = -0.5
    base[..., 4:] = 0.5
    stats = global_stats(base)
    assert stats[0] == pytest.approx([0.0, 0.5])
    keep = torch.zeros(1, 8, 8, dtype=torch.bool)
    keep[..., 4:] = True
    assert global_stats(base, keep)[0] == pytest.approx([0.5, 0.0])
    offsets = torch.tensor([-0.1, 0.0, 0.1])  # three styles that only re-expose the image
    outs = base + offsets[:, None, None, None]
    out_stats = global_stats(outs).reshape(1, 3, 2)
    real = np.array([[0.0, 0.5], [0.2, 0.5], [0.4, 0.5]])
    res = leakage_summary(out_stats, stats, real)
    assert res["exposure_style_spread"] == pytest.approx(np.std([-0.1, 0.0, 0.1]))
    assert res["contrast_style_spread"] == pytest.approx(0.0, abs=1e-6)  # float32 images
    assert res["exposure_shift"] == pytest.approx(0.0, abs=1e-9)
    assert res["exposure_shift_abs"] == pytest.approx(0.2 / 3)
    assert res["exposure_real_spread"] == pytest.approx(np.std([0.0, 0.2, 0.4]))
    assert res["exposure_spread_ratio"] == pytest.approx(np.std([-0.1, 0, 0.1]) / np.std([0, 0.2, 0.4]))


def test_cross_validated_r2_finds_a_linear_code_and_not_an_unrelated_one():
    from xraystyle.evaluation.physics import cv_r2

    rng = np.random.default_rng(0)
    t = rng.normal(size=200)
    informative = np.stack([t + 0.1 * rng.normal(size=200), rng.normal(size=200)], axis=1)
    assert cv_r2(informative, t) > 0.9
    assert cv_r2(rng.normal(size=(200, 16)), t) < 0.05  # out-of-fold: no in-sample over-fit
    assert math.isnan(cv_r2(informative[:5], t[:5]))  # too few rows for 5 folds
    assert math.isnan(cv_r2(informative, np.ones(200)))  # nothing to explain
