"""Multi-label evaluation (evaluation/sets.py): tasks, scoring, and a run on a two-finding phantom."""

import json

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from xraystyle.cli import app
from xraystyle.evaluation import EvalOptions, load_classifier
from xraystyle.evaluation.sets import SetTask, _judge_scores, _sources, _Task, run_set_evaluation, set_tasks

FINDINGS = ["effusion", "nodule"]
NAN = float("nan")


def test_tasks_cover_add_remove_and_sets_and_mark_the_held_out_one():
    tasks = set_tasks(["effusion", "nodule", "cardiomegaly"], [["nodule", "effusion"]])
    assert [t.target for t in tasks[:2]] == ["add-effusion", "remove-effusion"]
    sets = [t for t in tasks if t.kind == "set"]
    assert len(sets) == 7 and [t.target for t in sets if t.held_out] == ["effusion+nodule"]
    assert len([t for t in set_tasks(["a", "b", "c"], [], max_set_size=1) if t.kind == "set"]) == 3


def test_sources_need_known_labels_and_keep_the_rest_of_the_set():
    sets = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [0, NAN], [NAN, 0]])
    rows, target = _sources(SetTask("add", ("effusion",)), sets, FINDINGS)
    assert rows.tolist() == [0, 2, 4] and target[:2].tolist() == [[1, 0], [1, 1]]
    assert np.isnan(target[2, 1])  # row 4 is still unknown for nodule: run_set_evaluation never loads it
    rows, target = _sources(SetTask("remove", ("nodule",)), sets, FINDINGS)
    assert rows.tolist() == [2, 3] and target.tolist() == [[0, 0], [1, 0]]
    rows, target = _sources(SetTask("set", ("effusion", "nodule")), sets, FINDINGS)
    assert rows.tolist() == [0] and target.tolist() == [[1, 1]]


def test_judge_scores_compare_every_judged_finding_with_the_target_set():
    ctx = _Task(SetTask("add", ("effusion",)), FINDINGS, FINDINGS, [0, 1], np.array([0.5, 0.5]), 2, 8, {}, {}, None)
    p_src = np.array([[0.1, 0.9], [0.1, 0.1]])
    target = np.array([[1.0, 1.0], [1.0, 0.0]])
    # source 0: effusion added, nodule kept / lost; source 1: added twice, nodule appears once.
    p_out = np.array([[[0.8, 0.9], [0.8, 0.2]], [[0.7, 0.1], [0.9, 0.6]]])
    r = _judge_scores(p_src, p_out, target, ctx)
    assert r["validity"] == 0.5 and r["target_rate"] == 1.0 and r["base_rate"] == 0.0
    assert r["off_target_flip_rate"] == 0.5
    assert r["prob_shift/effusion"] == pytest.approx(np.mean([0.7, 0.7, 0.6, 0.8]))
    assert r["judge_present/effusion"] == 1.0 and r["judge_present/nodule"] == 0.5


@pytest.fixture(scope="module")
def ml_phantom(tmp_path_factory):
    from xraystyle.cohorts.manifest import load_manifest
    from xraystyle.phantom.generator import generate_phantom_cohort

    path = generate_phantom_cohort(tmp_path_factory.mktemp("ml-phantom"), n=80, size=32, seed=5,
                                   findings=tuple(FINDINGS), prevalence={"effusion": 0.5, "nodule": 0.5},
                                   split=(0.5, 0.2, 0.3))
    return load_manifest(path)


@pytest.fixture(scope="module")
def ml_run(ml_phantom, session_cache, tmp_path_factory):
    from xraystyle.paths import resolve_config
    from xraystyle.training.accel import make_accel
    from xraystyle.training.config import load_config
    from xraystyle.training.trainer import training_loop

    cfg = load_config(resolve_config("tiny"), {"domains": FINDINGS, "model.conditioning": "set-additive",
                                               "data.holdout_combinations": [FINDINGS], "train.iters": 2})
    run = tmp_path_factory.mktemp("ml-run")
    training_loop(cfg, run, ml_phantom, cache_dir=session_cache / "tensors",
                  accel=make_accel("reference", torch.device("cpu")), progress=False)
    return run


@pytest.fixture(scope="module")
def ml_judge(ml_phantom, session_cache, tmp_path_factory):
    from xraystyle.evaluation.classifier_train import train_classifier

    out = tmp_path_factory.mktemp("ml-clf") / "judge.pt"
    train_classifier(ml_phantom, FINDINGS, out, arch="small", epochs=2, size=32, batch_size=16,
                     cache_dir=session_cache / "tensors", progress=False)
    return out


class _Identity(nn.Module):
    def forward(self, x, s):
        return x


def test_identity_generator_scores_the_base_rate_on_every_task(ml_phantom, ml_run, ml_judge, session_cache):
    from xraystyle.trained import load_trained_model

    model = load_trained_model(ml_run)
    model.nets["G"] = _Identity()
    opts = EvalOptions(n_styles=2, limit=5, oracle="on", oracle_patients=8, progress=False, n_examples=1)
    result = run_set_evaluation(model, ml_phantom, load_classifier(str(ml_judge)), opts, cache_dir=session_cache)
    rows = result.metrics["pairs"]
    assert {(r["kind"], r["mode"]) for r in rows} == {(k, m) for k in ("add", "remove", "set")
                                                      for m in ("latent", "reference")}
    assert [r["target"] for r in rows if r["held_out"]] == ["effusion+nodule"] * 2
    scored = [r for r in rows if "validity" in r]
    assert scored and all(r["validity"] == pytest.approx(r["base_rate"]) for r in scored)
    assert all(r["identity_ssim"] == pytest.approx(1.0) and r["oracle_target_rate"] == 0.0 for r in scored)
    assert all(r["exposure_style_spread"] == 0.0 for r in scored)
    assert set(result.metrics["summary_by_kind"]) == {"add", "remove", "set"}
    # add effusion to a nodule-positive source asks for the held-out pair: counted, not hidden
    add_eff = next(r for r in rows if r["target"] == "add-effusion" and r["mode"] == "latent")
    assert 0.0 <= add_eff["held_out_share"] <= 1.0 and "held_out_share" not in rows[-1]


def test_eval_cli_evaluates_a_multi_label_checkpoint_per_set(ml_phantom, ml_run, ml_judge, tmp_path):
    runner = CliRunner()
    base = ["eval", "--checkpoint", str(ml_run), "--cohort", str(ml_phantom.path), "--classifier", str(ml_judge),
            "--n-styles", "2", "--limit", "3", "--oracle", "off", "--no-progress", "--mode", "latent"]
    r = runner.invoke(app, [*base, "--out", str(tmp_path / "e"), "--max-set-size", "1"])
    assert r.exit_code == 0, r.output
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert [p["target"] for p in metrics["pairs"]] == ["add-effusion", "remove-effusion", "add-nodule",
                                                       "remove-nodule", "effusion", "nodule"]
    assert "no-effusion → add-effusion" in r.output and (tmp_path / "e" / "summary.html").exists()
    r = runner.invoke(app, [*base, "--out", str(tmp_path / "f"), "--max-set-size", "0"])
    assert r.exit_code == 1 and "--max-set-size" in r.output and "Traceback" not in r.output


def test_max_set_size_is_refused_for_a_single_domain_model(checkpoint, phantom_manifest, classifier_pt, tmp_path):
    r = CliRunner().invoke(app, ["eval", "--checkpoint", str(checkpoint), "--cohort", str(phantom_manifest.path),
                                 "--classifier", str(classifier_pt), "--out", str(tmp_path / "e"),
                                 "--max-set-size", "2", "--no-progress"])
    assert r.exit_code == 1 and "multi-label" in r.output and "Traceback" not in r.output
