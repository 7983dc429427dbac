"""The evaluation loop on stand-in generators whose right answers are known.

Training StarGAN v2 until its validity reliably rises takes hundreds of steps (minutes on this
shared CPU), too slow for a unit test; docs/evaluation.md reports that measurement on a real
run. Here the loop is checked with generators whose answers are known: the identity (does
nothing: validity = base rate, SSIM 1, no diversity), a fresh He-initialised StarGAN v2
generator (patient lost, oracle validity near its base rate of 0) and a *perfect* counterfactual
generator that re-renders the source's own phantom patient with the finding switched (the
same anatomy, physics and noise: validity near the real-image rate, patient kept).
"""

import json

import numpy as np
import pytest
import torch
from torch import nn

from xraystyle.errors import XrayStyleError
from xraystyle.evaluation import EvalOptions, evaluate_model, load_classifier, run_evaluation
from xraystyle.models.networks import build_networks
from xraystyle.paths import resolve_config
from xraystyle.phantom.generator import case_streams, draw_physics, render_phantom
from xraystyle.phantom.physics import quantize
from xraystyle.training.config import load_config
from xraystyle.transforms import preprocess_array

CFG = load_config(resolve_config("tiny"))
OPTS = dict(n_styles=3, limit=6, oracle_patients=16, progress=False, n_examples=2)
PHANTOM_SEED = 3  # conftest's cohort


class _Style(nn.Module):
    """F and E stand-ins: the style code is the target domain index."""

    def forward(self, _x_or_z, y):
        return y.float()[:, None].repeat(1, 4)


class _Identity(nn.Module):
    def forward(self, x, s):
        return x


class _Perfect(nn.Module):
    """Recognises each source (an exact lookup among the cohort's images) and returns the same
    phantom patient rendered with (style 1) or without (style 0) an effusion."""

    def __init__(self, manifest):
        super().__init__()
        from xraystyle.data.cache import build_tensor_cache

        cache = build_tensor_cache(manifest, CFG.data.preprocess, manifest.path.parent / "tensors", progress=False)
        self.register_buffer("sources", torch.from_numpy(np.asarray(cache.images, dtype=np.float32)))
        renders = {True: [], False: []}
        for pid in manifest.df["patient_id"]:
            i = int(pid.split("-")[1])
            physics = {**draw_physics(case_streams(PHANTOM_SEED, i)["physics"]), "monochrome1": 0}
            for present in (True, False):
                ss = np.random.SeedSequence(PHANTOM_SEED, spawn_key=(0, i))  # the cohort's streams
                sample = render_phantom(ss, CFG.model.img_size, {"effusion": present}, physics)
                stored = quantize(sample.image, physics["bit_depth"]).astype(np.float32)
                renders[present].append(torch.as_tensor(preprocess_array(stored, None, CFG.data.preprocess)["image"]))
        self.register_buffer("with_", torch.stack(renders[True]))
        self.register_buffer("without", torch.stack(renders[False]))

    def forward(self, x, s):
        idx = torch.cdist(x.flatten(1), self.sources.flatten(1)).argmin(dim=1)
        return torch.where((s[:, 0] > 0.5)[:, None, None, None], self.with_[idx], self.without[idx])


def _nets(g: nn.Module) -> nn.ModuleDict:
    return nn.ModuleDict({"G": g, "F": _Style(), "E": _Style()})


@pytest.fixture(scope="module")
def clf(classifier_pt):
    return load_classifier(str(classifier_pt))


@pytest.fixture(scope="module")
def perfect(phantom_manifest):
    return _nets(_Perfect(phantom_manifest))


def _pair(result, s, t, mode="latent"):
    return next(r for r in result.metrics["pairs"] if (r["source"], r["target"], r["mode"]) == (s, t, mode))


def test_identity_generator_scores_what_doing_nothing_scores(phantom_manifest, clf, session_cache):
    res = run_evaluation(_nets(_Identity()), phantom_manifest, clf, EvalOptions(**OPTS), cfg=CFG,
                         cache_dir=session_cache)
    for mode in ("latent", "reference"):
        r = _pair(res, "normal", "effusion", mode)
        assert r["n_sources"] == 6 and r["n_styles"] == 3
        assert r["validity"] == r["base_rate"]
        # float32 convolutions of one image in batches of other sizes differ in the last bits
        assert r["prob_shift/effusion"] == pytest.approx(0.0, abs=1e-6)
        assert r["identity_ssim"] == pytest.approx(1.0) and r["identity_l1"] == 0.0
        assert r["diversity_l1"] == 0.0 and r["diversity_feat"] == pytest.approx(0.0, abs=1e-6)
        assert r["exposure_style_spread"] == pytest.approx(0, abs=1e-9)
        assert r["exposure_shift"] == pytest.approx(0, abs=1e-9)
        assert r["oracle_validity"] == 0.0 and r["oracle_anatomy_kept"] == 1.0
        assert r["fid_xray"] == pytest.approx(r["fid_xray_source_baseline"], rel=0.05)
        # FID comes with its n and the FID of two disjoint draws of real target images at that n
        assert r["fid_xray_n"] == 6 * 3 and r["fid_xray_n_real"] == r["n_real_target"] > 0
        assert r["fid_xray_floor_n"] == min(18, r["n_real_target"] // 2) and r["fid_xray_real_floor"] > 0
    meta = res.metrics["meta"]
    assert meta["inception"]["available"] is False and "inception_v3_google" in meta["inception"]["reason"]
    assert meta["lpips"]["available"] is False and "alexnet" in meta["lpips"]["reason"]
    assert meta["oracle"]["available"] is True
    assert meta["oracle"]["findings"]["effusion"]["add"]["balanced_accuracy"] >= 0.8
    assert meta["classifier"]["findings"] == ["effusion"]


def test_perfect_generator_renders_the_cohort_itself(perfect, phantom_manifest):
    from xraystyle.data.cache import build_tensor_cache

    g = perfect["G"]
    labels = phantom_manifest.finding_matrix(["effusion"])[:, 0] == 1
    cache = build_tensor_cache(phantom_manifest, CFG.data.preprocess, phantom_manifest.path.parent / "tensors",
                               progress=False)
    real = torch.from_numpy(np.asarray(cache.images, dtype=np.float32))
    rendered = torch.where(torch.from_numpy(labels)[:, None, None, None], g.with_, g.without)
    assert (rendered - real).abs().max() < 0.01  # float16 cache rounding only


def test_fresh_generator_fails_and_perfect_one_is_valid(phantom_manifest, clf, perfect, session_cache):
    torch.manual_seed(0)
    fresh = build_networks(CFG.model, len(CFG.domains))
    fresh = nn.ModuleDict({k: fresh[k].eval() for k in ("G", "F", "E")})
    opts = EvalOptions(**{**OPTS, "modes": ("latent",)})
    res_fresh = run_evaluation(fresh, phantom_manifest, clf, opts, cfg=CFG, cache_dir=session_cache)
    res_perfect = run_evaluation(perfect, phantom_manifest, clf, opts, cfg=CFG, cache_dir=session_cache)
    for s, t in (("normal", "effusion"), ("effusion", "normal")):
        r_fresh, r_perfect = _pair(res_fresh, s, t), _pair(res_perfect, s, t)
        assert r_fresh["identity_ssim"] < 0.5 and r_fresh["oracle_validity"] <= 0.2
        assert r_perfect["validity"] >= r_perfect["base_rate"] + 0.25
        assert r_perfect["oracle_validity"] == 1.0 and r_perfect["oracle_anatomy_kept"] == 1.0
        assert r_perfect["identity_ssim"] > 0.9
    # No assertion on the fresh generator's *classifier* validity: a small judge's verdict on
    # noise-like images is arbitrary (this one calls them all effusion), which is why validity
    # is reported next to identity and the oracle's anatomy-gated verdict.
    assert _pair(res_perfect, "normal", "effusion")["prob_shift/effusion"] > 0
    assert _pair(res_perfect, "effusion", "normal")["prob_shift/effusion"] < -0.1


def test_exposure_only_styles_show_up_as_leakage(phantom_manifest, clf, session_cache):
    class _Exposer(nn.Module):  # each style re-exposes the image by its own offset
        def forward(self, x, s):
            return (x + s[:, :1, None, None] - 0.5).clamp(-1, 1)

    nets = nn.ModuleDict({"G": _Exposer(), "F": _LatentStyle(), "E": _Style()})
    r = _pair(run_evaluation(nets, phantom_manifest, clf, EvalOptions(**{**OPTS, "modes": ("latent",)}), cfg=CFG,
                             cache_dir=session_cache), "normal", "effusion")
    assert r["exposure_style_spread"] > r["exposure_real_spread"]
    assert r["exposure_spread_ratio"] > 1
    assert r["oracle_validity"] == 0.0  # exposure is not a finding for the rank-based oracle


class _LatentStyle(nn.Module):
    def forward(self, z, y):
        return torch.sigmoid(2 * z[:, :1]).repeat(1, 4)  # offsets s - 0.5 in (-0.5, 0.5)


def _flip_labels(manifest, split, tmp_path):
    """The cohort with the effusion label of one split's rows flipped (the images unchanged)."""
    from xraystyle.cohorts.manifest import write_manifest

    df = manifest.df.copy()
    rows = df["split"] == split
    df.loc[rows, "effusion"] = 1.0 - df.loc[rows, "effusion"]
    return write_manifest(df, tmp_path / "flipped.csv", root=manifest.root)


def test_real_rate_is_measured_on_the_evaluation_split_not_the_fid_split(phantom_manifest, clf, tmp_path):
    from xraystyle.evaluation.data import load_set, select_rows

    # The fid split's labels are wrong on purpose: only the evaluation split may decide real_rate.
    flipped = _flip_labels(phantom_manifest, "val", tmp_path)
    opts = EvalOptions(**{**OPTS, "modes": ("latent",), "oracle": "off", "fid_split": "val"})
    res = run_evaluation(_nets(_Identity()), flipped, clf, opts, cfg=CFG, cache_dir=tmp_path)
    assert res.metrics["meta"]["real_rate_split"] == "test"
    thr = float(clf.thresholds[0])
    for s, t in (("normal", "effusion"), ("effusion", "normal")):
        real = load_set(select_rows(flipped, ["normal", "effusion"], t, "test", opts.max_real, opts.seed + 1),
                        CFG.data.preprocess, tmp_path / "tensors", False)
        present = clf.predict_proba(real.batch(np.arange(len(real))))[:, 0].detach().numpy() >= thr
        assert _pair(res, s, t)["real_rate"] == pytest.approx((present if t == "effusion" else ~present).mean())


def test_evaluate_model_returns_flat_scalars_and_reuses_real_features(phantom_manifest, clf, perfect, tmp_path):
    nets = perfect
    flat = evaluate_model(nets, phantom_manifest, clf, cfg=CFG, limit=4, n_styles=2, cache_dir=tmp_path)
    assert flat["eval/latent/normal->effusion/validity"] >= 0.5
    assert "eval/latent/mean/validity" in flat and "eval/latent/effusion->normal/fid_xray" in flat
    assert all(isinstance(v, float) for v in flat.values())
    files = sorted((tmp_path / "eval-features").glob("features-*.npz"))
    stamps = [f.stat().st_mtime_ns for f in files]
    again = evaluate_model(nets, phantom_manifest, clf, cfg=CFG, limit=4, n_styles=2, cache_dir=tmp_path)
    assert again == flat  # seeded
    assert sorted((tmp_path / "eval-features").glob("features-*.npz")) == files
    assert [f.stat().st_mtime_ns for f in files] == stamps


def test_trained_checkpoint_and_domain_checks(phantom_manifest, clf, classifier_pt, checkpoint, session_cache):
    from xraystyle.trained import load_trained_model

    model = load_trained_model(checkpoint)
    res = run_evaluation(model, phantom_manifest, clf, EvalOptions(**{**OPTS, "oracle": "off"}),
                         cache_dir=session_cache)
    assert res.metrics["meta"]["step"] == 2 and len(res.metrics["meta"]["checkpoint_sha256"]) == 64
    assert res.metrics["meta"]["oracle"] == {"available": False, "reason": "off"}
    assert {(r["source"], r["target"], r["mode"]) for r in res.metrics["pairs"]} == {
        ("normal", "effusion", "latent"), ("effusion", "normal", "latent"),
        ("normal", "effusion", "reference"), ("effusion", "normal", "reference")}
    assert res.arrays[("normal", "effusion", "latent")].examples.shape == (2, 4, 32, 32)
    json.dumps(res.metrics)  # plain types
    other = load_classifier(str(classifier_pt))
    other.findings = ["nodule"]  # a judge that cannot see the model's finding
    with pytest.raises(XrayStyleError, match="does not predict 'effusion'"):
        run_evaluation(model, phantom_manifest, other, EvalOptions(**OPTS), cache_dir=session_cache)


def test_multi_label_models_are_refused_in_one_line():
    from xraystyle.errors import ConfigError
    from xraystyle.evaluation.runner import as_trained_model

    multi = load_config(resolve_config("tiny"), {"model.conditioning": "set-additive",
                                                 "domains": ["effusion", "nodule"]})
    with pytest.raises(ConfigError, match="multi-label"):
        as_trained_model(_nets(_Identity()), cfg=multi)
    with pytest.raises(ConfigError, match="include G, F and E"):
        as_trained_model({"G": _Identity()}, cfg=CFG)


def test_style_physics_report_tells_an_exposure_reading_encoder_from_a_blind_one(phantom_manifest, session_cache):
    import dataclasses

    from xraystyle.evaluation.data import load_set, select_rows
    from xraystyle.evaluation.physics import image_descriptors, style_physics_report
    from xraystyle.trained import TrainedModel

    domains = ["normal", "effusion"]
    pools = {d: load_set(select_rows(phantom_manifest, domains, d, "train", None, 0), CFG.data.preprocess,
                         session_cache / "tensors", False) for d in domains}

    class _Reader(nn.Module):  # the style code IS the image's intensity statistics
        def forward(self, x, y):
            return torch.as_tensor(image_descriptors(x), dtype=torch.float32)

    class _Blind(nn.Module):  # a code that ignores the image (seeded per image count)
        def forward(self, x, y):
            return torch.randn(len(x), 7, generator=torch.Generator().manual_seed(len(x)))

    def report(e, normal_style="sampled"):
        args = dataclasses.replace(CFG.model_args, model=dataclasses.replace(CFG.model, normal_style=normal_style))
        return style_physics_report(TrainedModel({"E": e}, args), pools, batch_size=16)

    reader, blind = report(_Reader()), report(_Blind())
    # Some of the phantom's exposure / contrast / gamma survives pre-processing (~36 images per domain here).
    assert reader["mean_image_r2"] > 0.15
    assert reader["mean_style_r2"] == pytest.approx(reader["mean_image_r2"])
    assert blind["mean_style_r2"] < 0.05
    assert blind["mean_image_r2"] == pytest.approx(reader["mean_image_r2"])
    fixed = report(_Reader(), normal_style="fixed")
    assert fixed["normal"] == {"skipped": "deterministic style"} and "style_r2/gamma" in fixed["effusion"]
