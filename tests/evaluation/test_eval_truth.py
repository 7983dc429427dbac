"""Truth benchmark (xraystyle/evaluation/truth.py): every metric separates the ideal counterfactual
from the degenerate baselines, a perfect model scores as the ideal, a real checkpoint runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xraystyle.errors import XrayStyleError
from xraystyle.evaluation.truth import (
    METRICS,
    TASKS,
    IdealTranslator,
    _Renderer,
    run_truth_benchmark,
)
from xraystyle.transforms import PreprocessConfig

SIZE = 32
KEYS = {"model", "task", "mode", "metric", "value", "ci95", "n"}
DEGENERATE = ("identity", "exposure-shift", "noise")
PROBES = {"style_probe_r2_volume": "higher", "style_probe_r2_side": "higher", "style_probe_r2_physics": "lower"}
# Metrics of a failure some degenerate baselines do not have (they fail the other metrics): a
# baseline that carries no physics scores the ideal's 0 on physics transfer / the physics probe.
CARRIES_NO_PHYSICS = {("phys_transfer_spearman", "identity"), ("phys_transfer_spearman", "noise"),
                      ("phys_transfer_range", "identity"), ("style_probe_r2_physics", "noise")}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from xraystyle.phantom.generator import generate_phantom_cohort
    from xraystyle.phantom.ideal import read_truth

    root = tmp_path_factory.mktemp("truth-cohort")
    generate_phantom_cohort(root, n=40, size=SIZE, seed=3, findings=("effusion",), prevalence={"effusion": 0.5})
    return read_truth(root)


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    from xraystyle.phantom.attributes import calibrate_attribute_oracle

    return calibrate_attribute_oracle(SIZE, n=40, seed=0, cache_dir=tmp_path_factory.mktemp("oracle"))


def _perfect():
    return IdealTranslator(_Renderer(PreprocessConfig(size=SIZE)), TASKS, seed=0)


@pytest.fixture(scope="module")
def perfect_rows(cohort, oracle):
    return run_truth_benchmark(_perfect(), cohort, size=SIZE, n_sources=8, n_styles=6, seed=0, oracle=oracle,
                               n_physics=3, probe_patients=3)


def _table(rows):
    out = {}
    for r in rows:
        out.setdefault((r["task"], r["mode"], r["metric"]), {})[r["model"]] = r
    return out


def test_rows_have_the_issue_schema(perfect_rows):
    for r in perfect_rows:
        assert set(r) == KEYS
        assert r["mode"] in ("latent", "reference") and r["task"] in ("normal->effusion", "effusion->normal")
        if r["metric"].endswith("_null95"):  # value: the null's 95th percentile; ci95: its 2.5-97.5 % range
            assert r["n"] == 200 and r["ci95"][0] <= r["ci95"][1]
        elif r["metric"].startswith("style_probe"):  # 3 patients x 3 sides x 4 volumes x 5 physics draws
            assert r["n"] == 180 and r["ci95"][0] <= r["value"] + 1e-9 and r["value"] <= r["ci95"][1] + 1e-9
        else:
            assert r["n"] == 8 and r["value"] is not None and r["ci95"][0] <= r["value"] <= r["ci95"][1] + 1e-12
    # Every metric appears (for the run and every baseline that needs no model).
    assert {r["metric"] for r in perfect_rows} == {m.name for m in METRICS} | set(PROBES) | {
        f"{p}_null95" for p in PROBES}
    assert {r["model"] for r in perfect_rows} == {"run", "identity", "exposure-shift", "noise", "ideal"}


def test_every_metric_separates_ideal_from_each_degenerate_baseline(perfect_rows):
    table = _table(perfect_rows)
    better_of = {**{m.name: m.better for m in METRICS}, **PROBES}
    for (task, mode, name), by_model in table.items():
        if name.endswith("_null95"):
            continue
        better = better_of[name]
        ideal = by_model["ideal"]["value"]
        for base in DEGENERATE:
            other = by_model[base]["value"]
            if (name, base) in CARRIES_NO_PHYSICS:
                assert abs(other) < 0.3, (name, base, other)  # near the ideal's 0 (tested with leaking fakes below)
                continue
            if better == "higher":
                assert ideal > other, (task, mode, name, base, ideal, other)
            else:
                assert ideal < other, (task, mode, name, base, ideal, other)


def test_style_probes_read_the_ideal_attributes_and_nothing_else(perfect_rows):
    t = _table(perfect_rows)
    key = ("normal->effusion", "reference")
    for name in ("volume", "side"):
        ideal = t[(*key, f"style_probe_r2_{name}")]["ideal"]
        assert ideal["value"] > 0.95 > t[(*key, f"style_probe_r2_{name}_null95")]["ideal"]["value"]
        assert t[(*key, f"style_probe_r2_{name}")]["run"]["value"] == pytest.approx(ideal["value"])
    physics = t[(*key, "style_probe_r2_physics")]
    # the image itself carries the acquisition; its mean and sd a little (after robust windowing)
    assert physics["ideal"]["value"] < 0.1 < physics["identity"]["value"]
    assert physics["exposure-shift"]["value"] > physics["ideal"]["value"]


def test_perfect_model_scores_as_the_ideal(perfect_rows):
    for (task, mode, name), by_model in _table(perfect_rows).items():
        assert by_model["run"]["value"] == pytest.approx(by_model["ideal"]["value"], abs=1e-9), (task, mode, name)
        assert by_model["run"]["ci95"] == pytest.approx(by_model["ideal"]["ci95"], abs=1e-9)


def test_ideal_reference_outputs_are_the_ideal(perfect_rows):
    t = _table(perfect_rows)
    for task in ("normal->effusion", "effusion->normal"):
        assert t[(task, "reference", "cf_l1_vs_ideal")]["ideal"]["value"] == 0.0
        assert t[(task, "reference", "cf_ssim_vs_ideal")]["ideal"]["value"] == pytest.approx(1.0)
        assert t[(task, "reference", "phys_transfer_spearman")]["ideal"]["value"] == 0.0
        assert t[(task, "reference", "phys_transfer_range")]["ideal"]["value"] == 0.0
    assert t[("effusion->normal", "latent", "remove_validity")]["ideal"]["value"] == 1.0


class _Transfer(IdealTranslator):
    """Ideal outputs whose brightness follows the reference's exposure: physics leaks."""

    def reference(self, src, refs, target):
        out = super().reference(src, refs, target)
        shift = np.array([float(r.row.physics["exposure"]) for r in refs])[:, None, None]
        return np.clip(out + 0.2 * (shift - 1.0), -1, 1).astype(np.float32)


def test_phys_metrics_catch_a_model_that_copies_the_references_exposure(cohort, oracle):
    rows = run_truth_benchmark(_Transfer(_Renderer(PreprocessConfig(size=SIZE)), TASKS, 0), cohort, size=SIZE,
                               n_sources=4, n_styles=3, seed=1, oracle=oracle, n_physics=3, tasks=TASKS[:1],
                               n_boot=200)
    t = _table(rows)
    key = ("normal->effusion", "reference", "phys_transfer_spearman")
    assert t[key]["run"]["value"] > 0.9 and t[key]["ideal"]["value"] == 0.0
    # the size: 0.2 x the spread of the draws' exposures, where the pixels are not clipped
    spread = ("normal->effusion", "reference", "phys_transfer_range")
    assert t[spread]["run"]["value"] > 0.02 and t[spread]["ideal"]["value"] == 0.0
    ratio = ("normal->effusion", "reference", "phys_attr_ratio")
    assert t[ratio]["run"]["value"] > 3 * t[ratio]["ideal"]["value"]


def test_trained_checkpoint_runs_every_metric(tmp_path_factory, cohort, oracle):
    from tests.synthesis.helpers import trained_checkpoint
    from xraystyle.trained import load_trained_model

    model = load_trained_model(trained_checkpoint(tmp_path_factory.mktemp("truth-ckpt")))
    rows = run_truth_benchmark(model, cohort, size=SIZE, n_sources=2, n_styles=2, seed=0, oracle=oracle,
                               n_physics=2, n_boot=100)
    assert {r["model"] for r in rows} == {"run", "identity", "constant-style", "exposure-shift", "noise", "ideal"}
    perfect = {(r["task"], r["mode"], r["metric"]) for r in run_truth_benchmark(
        _perfect(), cohort, size=SIZE, n_sources=2, n_styles=2, seed=0, oracle=oracle, n_physics=2, n_boot=10)}
    for model_name in ("run", "constant-style"):
        mine = [r for r in rows if r["model"] == model_name]
        assert {(r["task"], r["mode"], r["metric"]) for r in mine} == perfect
        for r in mine:
            assert set(r) == KEYS
            assert r["value"] is None or math.isfinite(r["value"]), r
            assert (r["value"] is None) == (r["ci95"] == [None, None])


def test_bad_input_is_one_line(tmp_path, cohort, oracle):
    from tests.training.conftest import write_png_cohort

    manifest = write_png_cohort(tmp_path / "plain")
    with pytest.raises(XrayStyleError) as e:
        run_truth_benchmark(_perfect(), manifest, size=SIZE, n_sources=2, n_styles=2, seed=0, oracle=oracle)
    assert "\n" not in str(e.value)
    narrow = _perfect()
    narrow.preprocess = PreprocessConfig(size=SIZE, lower_percentile=2.0, upper_percentile=98.0)
    with pytest.raises(XrayStyleError, match="percentiles 2-98; the attribute oracle is calibrated at 0.5-99.5") as e:
        run_truth_benchmark(narrow, cohort, size=SIZE, n_sources=2, n_styles=2, seed=0, oracle=oracle)
    assert "\n" not in str(e.value)
    with pytest.raises(XrayStyleError, match="32 px but the benchmark runs at 64 px") as e:
        run_truth_benchmark(_perfect(), cohort, size=64, n_sources=2, n_styles=2, seed=0, oracle=oracle)
    assert "\n" not in str(e.value)
    from xraystyle.phantom.generator import generate_phantom_cohort

    generate_phantom_cohort(tmp_path / "big", n=6, size=48, seed=1, findings=("effusion",))
    with pytest.raises(XrayStyleError, match="cohort is 48 px") as e:
        run_truth_benchmark(_perfect(), tmp_path / "big", size=SIZE, n_sources=2, n_styles=2, seed=0, oracle=oracle)
    assert "\n" not in str(e.value)
