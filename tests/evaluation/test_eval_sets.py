"""Multi-label evaluation: the finding-set tasks (evaluation/sets.py), their scoring by the shared
metrics, and a run of the loop on a two-finding phantom."""

import json

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from xraystyle.cli import app
from xraystyle.evaluation import EvalOptions, load_classifier
from xraystyle.evaluation.counterfactual import JudgeSpace
from xraystyle.evaluation.metrics import Batch, JudgeVerdicts
from xraystyle.evaluation.runner import run_set_evaluation
from xraystyle.evaluation.sets import SetTask, set_tasks

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
    rows, target = SetTask("add", ("effusion",)).sources(sets, FINDINGS)
    assert rows.tolist() == [0, 2, 4] and target[:2].tolist() == [[1, 0], [1, 1]]
    assert np.isnan(target[2, 1])  # row 4 is still unknown for nodule: run_set_evaluation never loads it
    rows, target = SetTask("remove", ("nodule",)).sources(sets, FINDINGS)
    assert rows.tolist() == [2, 3] and target.tolist() == [[0, 0], [1, 0]]
    rows, target = SetTask("set", ("effusion", "nodule")).sources(sets, FINDINGS)
    assert rows.tolist() == [0] and target.tolist() == [[1, 1]]


def test_real_target_images_of_each_kind_of_task():
    sets = np.array([[0, 0], [1, 0], [0, 1], [1, 1]])
    assert SetTask("add", ("effusion",)).real_rows(sets, FINDINGS).tolist() == [False, True, False, True]
    assert SetTask("remove", ("effusion",)).real_rows(sets, FINDINGS).tolist() == [True, False, True, False]
    assert SetTask("set", ("nodule",)).real_rows(sets, FINDINGS).tolist() == [False, False, True, False]


def _judge_batch(p_src, p_fake, target):
    """A Batch with what JudgeVerdicts reads (the judge's probabilities and the asked sets)."""
    b, k = p_fake.shape[:2]
    return Batch(torch.zeros(b, 1, 4, 4), torch.zeros(b * k, 1, 4, 4), p_src, p_fake, {}, {},
                 np.zeros_like(target), target, torch.ones(b, 4, 4, dtype=torch.bool), {})


def test_judge_scores_compare_every_judged_finding_with_the_target_set():
    space = JudgeSpace.of(FINDINGS, np.array([0.5, 0.5]), FINDINGS, FINDINGS)
    task = SetTask("add", ("effusion",))
    p_src = np.array([[0.1, 0.9], [0.1, 0.1]])
    target = np.array([[1.0, 1.0], [1.0, 0.0]])
    # source 0: effusion added, nodule kept / lost; source 1: added twice, nodule appears once.
    p_out = np.array([[[0.8, 0.9], [0.8, 0.2]], [[0.7, 0.1], [0.9, 0.6]]])
    # real images with effusion: the judge sees it in two of three (the ceiling of target_rate)
    p_real = np.array([[0.9, 0.1], [0.2, 0.9], [0.7, 0.7]])
    verdicts = JudgeVerdicts(space, task, FINDINGS, p_real)
    verdicts.update(_judge_batch(p_src, p_out, task.asked(target, FINDINGS)))
    r = verdicts.aggregate()
    assert r["validity"] == 0.5 and r["target_rate"] == 1.0 and r["base_rate"] == 0.0
    assert r["real_rate"] == pytest.approx(2 / 3)
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


def test_set_real_rates_come_from_the_evaluation_split(ml_phantom, ml_run, ml_judge, tmp_path):
    from xraystyle.cohorts.manifest import write_manifest
    from xraystyle.data.cache import build_tensor_cache
    from xraystyle.trained import load_trained_model

    df = ml_phantom.df.copy()
    val = df["split"] == "val"
    df.loc[val, FINDINGS] = 1.0 - df.loc[val, FINDINGS]  # wrong labels on the fid split: they must not matter
    flipped = write_manifest(df, tmp_path / "flipped.csv", root=ml_phantom.root)
    model = load_trained_model(ml_run)
    judge = load_classifier(str(ml_judge))
    opts = EvalOptions(n_styles=1, limit=2, oracle="off", progress=False, n_examples=0, modes=("latent",),
                       fid_split="val")
    rows = run_set_evaluation(model, flipped, judge, opts, max_set_size=1, cache_dir=tmp_path).metrics["pairs"]
    test = flipped.subset("test")
    images = build_tensor_cache(test, model.preprocess, tmp_path / "tensors", progress=False).images
    decided = (judge.predict_proba(torch.from_numpy(np.asarray(images, np.float32))).detach().numpy()
               >= judge.thresholds.detach().cpu().numpy())
    has = test.finding_matrix(FINDINGS) == 1
    for j, f in enumerate(FINDINGS):
        by_target = {r["target"]: r["real_rate"] for r in rows}
        assert by_target[f"add-{f}"] == pytest.approx(decided[has[:, j], j].mean())  # sensitivity on test
        assert by_target[f"remove-{f}"] == pytest.approx((~decided[~has[:, j], j]).mean())  # specificity
        only = (has == (np.arange(2) == j)).all(axis=1)
        assert by_target[f] == pytest.approx((decided[only] == (np.arange(2) == j)).all(axis=1).mean())


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
