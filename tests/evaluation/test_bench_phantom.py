"""`xraystyle bench phantom` (evaluation/bench.py) and the truth benchmark's finding-set tasks."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from tests.evaluation.test_eval_cli import _one_line_error
from xraystyle.cli import app
from xraystyle.errors import XrayStyleError
from xraystyle.evaluation.truth import METRICS, TASKS, model_tasks
from xraystyle.models.labels import LabelSpace

MODELS = {"run", "identity", "constant-style", "exposure-shift", "noise", "ideal"}
PROBES = {f"style_probe_r2_{k}{s}" for k in ("volume", "side", "physics") for s in ("", "_null95")}
SMALL = ["--n-sources", "2", "--n-styles", "2", "--n-physics", "2", "--probe-patients", "3",
         "--oracle-patients", "24", "--no-progress"]


def _bench(*args):
    return CliRunner().invoke(app, ["bench", "phantom", *map(str, args)])


def test_bench_writes_every_metric_for_the_run_and_the_five_baselines(checkpoint, phantom_manifest, tmp_path):
    out = tmp_path / "bench"
    res = _bench("--checkpoint", checkpoint, "--cohort", phantom_manifest.path, "--out", out, *SMALL)
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "truth.json").read_text())
    rows = doc["rows"]
    assert {r["model"] for r in rows} == MODELS
    want = {m.name for m in METRICS} | PROBES
    for model in MODELS:
        assert {r["metric"] for r in rows if r["model"] == model} == want, model
    assert {r["task"] for r in rows} == {t.name for t in TASKS} and {r["mode"] for r in rows} == {"latent", "reference"}
    for r in rows:
        assert set(r) == {"model", "task", "mode", "metric", "value", "ci95", "n"}
    meta = doc["meta"]
    assert meta["split"] == "test" and meta["image_size"] == 32 and meta["step"] == 2
    assert meta["options"]["n_sources"] == 2 and meta["phantom_generator"] and meta["elapsed_s"] >= 0
    assert len(meta["checkpoint_sha256"]) == 64 and "cpus" in meta["machine"] and meta["versions"]["torch"]
    md = (out / "truth.md").read_text()
    assert "## normal->effusion, reference" in md and "style_probe_r2_volume" in md


def test_bench_refuses_bad_input_in_one_line(checkpoint, phantom_manifest, tmp_path):
    from tests.training.conftest import write_png_cohort

    plain = write_png_cohort(tmp_path / "plain")
    _one_line_error(_bench("--checkpoint", checkpoint, "--cohort", plain, "--out", tmp_path / "o1", *SMALL),
                    "phantom_truth.csv")
    _one_line_error(_bench("--checkpoint", tmp_path / "missing.pt", "--cohort", phantom_manifest.path, "--out",
                           tmp_path / "o2", *SMALL), "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    _one_line_error(_bench("--checkpoint", bad, "--cohort", phantom_manifest.path, "--out", tmp_path / "o3", *SMALL),
                    "bad.pt")
    _one_line_error(_bench("--checkpoint", checkpoint, "--cohort", phantom_manifest.path, "--out", tmp_path / "o4",
                           *SMALL[:-3], "--probe-patients", "2", "--no-progress"), "probe_patients")
    _one_line_error(_bench("--checkpoint", checkpoint, "--cohort", phantom_manifest.path, "--out", tmp_path / "o5",
                           *SMALL[:2], "--n-styles", "1", *SMALL[4:]), "n_styles")
    assert not any((tmp_path / f"o{i}" / "truth.json").exists() for i in range(1, 6))


def test_bench_names_the_split_that_cannot_serve_a_task(checkpoint, tmp_path):
    from xraystyle.phantom.generator import generate_phantom_cohort

    # every image has an effusion: no source for normal -> effusion; nothing in the val split
    cohort = generate_phantom_cohort(tmp_path / "all-effusion", n=12, size=32, seed=4, findings=("effusion",),
                                     prevalence={"effusion": 1.0}, split=(0.5, 0.0, 0.5))
    _one_line_error(_bench("--checkpoint", checkpoint, "--cohort", cohort, "--out", tmp_path / "o", *SMALL),
                    "split 'test' has 0 source(s) for task normal->effusion")
    _one_line_error(_bench("--checkpoint", checkpoint, "--cohort", cohort, "--out", tmp_path / "o", "--split", "val",
                           *SMALL), "no rows of split 'val'")


def test_model_tasks_are_the_pair_or_finding_sets():
    assert model_tasks(LabelSpace(("normal", "effusion"), False)) == TASKS
    tasks = model_tasks(LabelSpace(("effusion", "cardiomegaly"), True))
    assert [t.name for t in tasks] == ["normal->effusion", "effusion->normal",
                                       "cardiomegaly->effusion+cardiomegaly", "effusion+cardiomegaly->cardiomegaly"]
    ctx = tasks[2]
    assert ctx.source == {"effusion": 0, "cardiomegaly": 1} and ctx.add == ("effusion",)
    assert tasks[3].source == {"effusion": 1, "cardiomegaly": 1} and tasks[3].remove == ("effusion",)
    for labels, msg in ((LabelSpace(("normal", "nodule"), False), "scores effusion"),
                        (LabelSpace(("effusion", "atelectasis"), True), "does not draw atelectasis")):
        with pytest.raises(XrayStyleError, match=msg) as e:
            model_tasks(labels)
        assert "\n" not in str(e.value)


def test_a_multi_label_run_is_scored_on_its_finding_set_tasks(tmp_path_factory, session_cache):
    from xraystyle.cohorts.manifest import load_manifest
    from xraystyle.evaluation.truth import run_truth_benchmark
    from xraystyle.paths import resolve_config
    from xraystyle.phantom.attributes import calibrate_attribute_oracle
    from xraystyle.phantom.generator import generate_phantom_cohort
    from xraystyle.phantom.ideal import read_truth
    from xraystyle.trained import load_trained_model
    from xraystyle.training.accel import make_accel
    from xraystyle.training.config import load_config
    from xraystyle.training.trainer import training_loop

    findings = ["effusion", "cardiomegaly"]
    manifest = generate_phantom_cohort(tmp_path_factory.mktemp("ml-truth"), n=48, size=32, seed=9,
                                       findings=tuple(findings), prevalence={"effusion": 0.5, "cardiomegaly": 0.5})
    cfg = load_config(resolve_config("tiny"), {"domains": findings, "model.conditioning": "set-additive",
                                               "train.iters": 2})
    result = training_loop(cfg, tmp_path_factory.mktemp("ml-truth-run"), load_manifest(manifest), cache_dir=session_cache / "tensors",
                           accel=make_accel("reference", torch.device("cpu")), progress=False)
    model = load_trained_model(result.checkpoint)
    oracle = calibrate_attribute_oracle(32, n=24, seed=0, cache_dir=session_cache)
    rows = run_truth_benchmark(model, read_truth(manifest), size=32, n_sources=2, n_styles=2, seed=0, oracle=oracle,
                               n_physics=2, n_boot=20, probe_patients=0)
    names = [t.name for t in model_tasks(model.labels)]
    assert {r["task"] for r in rows} == set(names) and len(names) == 4
    added = {r["metric"] for r in rows if r["task"] == "cardiomegaly->effusion+cardiomegaly" and r["model"] == "run"}
    assert {"add_validity", "ref_volume_spearman", "cf_ssim_vs_ideal_outside"} <= added
    removed = {r["metric"] for r in rows if r["task"] == "effusion+cardiomegaly->cardiomegaly"}
    assert "remove_validity" in removed and "add_validity" not in removed
    ideal = {r["task"]: r["value"] for r in rows if r["model"] == "ideal" and r["metric"] == "cf_l1_vs_ideal"
             and r["mode"] == "reference"}
    assert all(v == 0.0 for v in ideal.values()), ideal
