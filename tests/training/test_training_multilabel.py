import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from xraystyle.cli import app
from xraystyle.cohorts.manifest import write_manifest
from xraystyle.data.sampling import SetStepSampler
from xraystyle.errors import ConfigError
from xraystyle.models.conditioning import make_head
from xraystyle.paths import resolve_config
from xraystyle.training.accel import make_accel
from xraystyle.training.checkpoint import load_latest
from xraystyle.training.config import load_config
from xraystyle.training.trainer import training_loop

NAN = float("nan")


@pytest.mark.parametrize("kind", ["set-additive", "set-film"])
def test_set_heads_respect_unknown_and_compose(kind):
    torch.manual_seed(0)
    head = make_head(kind, 3, 8, 4, hidden=1, width=16)
    h = torch.randn(1, 8).expand(4, -1)
    y = torch.tensor([[1.0, 0.0, NAN], [1.0, 0.0, 0.0], [1.0, 0.0, 1.0], [NAN, NAN, NAN]])
    out = head(h, y)
    assert out.shape == (4, 4) and torch.isfinite(out).all()
    # unknown is a state of its own: neither present nor absent
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[0], out[2])


def test_additive_head_is_a_sum_of_finding_components():
    torch.manual_seed(0)
    head = make_head("set-additive", 2, 8, 4)
    h = torch.randn(1, 8)
    f = lambda *y: head(h, torch.tensor([list(y)]))  # noqa: E731
    # (1,1) - (1,0) == (0,1) - (0,0): the second finding's contribution does not depend on the first
    torch.testing.assert_close(f(1.0, 1.0) - f(1.0, 0.0), f(0.0, 1.0) - f(0.0, 0.0))


def _sets():
    # effusion, nodule; some unknowns; the pair (1, 1) present in 3 rows
    return np.array([[0, 0], [1, 0], [0, 1], [1, 1], [1, 1], [1, 1], [NAN, 0], [0, NAN]] * 3, dtype=np.float32)


def test_set_sampler_holds_out_a_combination_entirely():
    sets = _sets()
    s = SetStepSampler(sets, np.ones(len(sets), bool), 16, seed=0, policy="mixed",
                       holdout=np.array([[True, True]]))
    for step in range(30):
        idx = s.indices(step)
        for rows in (idx.src, idx.ref, idx.ref2):
            assert not ((sets[rows] == 1).all(1)).any()
        assert not (idx.y_trg == 1).all(1).any()
        assert not np.isnan(idx.y_trg).any()  # targets are fully specified
        assert np.array_equal(np.nan_to_num(sets[idx.ref], nan=-1), np.nan_to_num(idx.y_ref, nan=-1))
        assert np.array_equal(np.nan_to_num(sets[idx.ref], nan=-1), np.nan_to_num(sets[idx.ref2], nan=-1))


def test_set_sampler_keeps_unknown_in_sources_and_toggles_one_finding():
    sets = _sets()
    s = SetStepSampler(sets, np.ones(len(sets), bool), 64, seed=1, policy="toggle")
    idx = s.indices(0)
    assert np.isnan(idx.y_org).any()  # unknown labels reach the networks as unknown
    changed = (np.nan_to_num(idx.y_org) != idx.y_trg).sum(1)
    assert (changed == 1).all()


def write_multilabel_cohort(root, n=24):
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    rows = []
    for i in range(n):
        eff, nod = i % 2, (i // 2) % 2
        a = rng.uniform(5000, 20000, (32, 32))
        if eff:
            a[22:, :] += 30000
        if nod:
            a[8:13, 8:13] += 30000
        Image.fromarray(a.astype(np.uint16)).save(root / "img" / f"{i}.png")
        rows.append({"path": f"img/{i}.png", "patient_id": f"p{i}", "study_id": "", "view": "PA", "split": "train",
                     "effusion": eff, "nodule": nod if i % 5 else ""})
    return write_manifest(pd.DataFrame(rows), root / "manifest.csv")


def one_step_multilabel_run(tmp_path, n=6):
    """A 6-image two-finding cohort in tmp_path/c and a one-step set-additive run in tmp_path/run."""
    m = write_multilabel_cohort(tmp_path / "c", n=n)
    cfg = load_config(resolve_config("tiny"), {"domains": ["effusion", "nodule"], "model.conditioning": "set-additive",
                                               "train.iters": 1})
    training_loop(cfg, tmp_path / "run", m, cache_dir=tmp_path / "cache",
                  accel=make_accel("reference", torch.device("cpu")), progress=False)
    return m


@pytest.mark.parametrize("kind,lambda_cls", [("set-additive", 0.0), ("set-film", 0.0), ("set-additive", 1.0)])
def test_multilabel_training_runs_and_resumes(tmp_path, kind, lambda_cls):
    # lambda_cls > 0 also switches the matching-aware D, extent consistency, the style-aware D,
    # code matching, the identity term, partial removals, the geometry in the style and the
    # reference's side on: all nine read finding sets with unknowns
    m = write_multilabel_cohort(tmp_path / "c")
    cfg = load_config(resolve_config("tiny"), {"domains": ["effusion", "nodule"], "model.conditioning": kind,
                                               "data.holdout_combinations": [["effusion", "nodule"]],
                                               "loss.lambda_cls": lambda_cls, "loss.lambda_mismatch": lambda_cls,
                                               "loss.lambda_extent": lambda_cls, "loss.lambda_style_match": lambda_cls,
                                               "loss.lambda_code_match": lambda_cls, "loss.lambda_id": lambda_cls,
                                               "loss.lambda_partial": lambda_cls, "loss.lambda_geometry": lambda_cls,
                                               "loss.lambda_laterality": lambda_cls})
    accel = make_accel("reference", torch.device("cpu"))
    result = training_loop(cfg, tmp_path / "run", m, cache_dir=tmp_path / "cache", accel=accel, progress=False)
    assert result.step == 4
    payload, _ = load_latest(tmp_path / "run")
    assert payload["config"]["model"]["conditioning"] == kind
    # the classifier (one logit per finding, unknown labels left out) is trained and finite
    assert ("cls.weight" in payload["state"]["nets"]["D"]) == (lambda_cls > 0)
    if lambda_cls:
        stats = [json.loads(line) for line in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
        assert all(np.isfinite(r[k]) for r in stats if "D/latent_cls" in r
                   for k in ("D/latent_cls", "G/ref_cls", "D/ref_mismatch", "G/latent_extent",
                                                           "D/ref_style_match", "G/latent_code_match", "G/latent_id",
                             "D/latent_partial", "G/latent_geometry_g", "G/latent_geometry_e", "G/ref_geometry_g",
                             "G/ref_laterality"))
        assert any("D/latent_cls" in r for r in stats)
    assert (tmp_path / "run" / "samples" / "latent_0000004.png").exists()


def test_multilabel_cli_and_config_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("XRAYSTYLE_CACHE", str(tmp_path / "cache"))
    m = write_multilabel_cohort(tmp_path / "c")
    runner = CliRunner()
    r = runner.invoke(app, ["train", "--config", "tiny", "--findings", "effusion,nodule", "--cohort", str(m.path),
                            "--iters", "2", "--out", str(tmp_path / "run"), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert load_latest(tmp_path / "run")[0]["config"]["model"]["conditioning"] == "set-additive"
    r = runner.invoke(app, ["train", "--config", "tiny", "--findings", "normal,effusion", "--dry-run"])
    assert r.exit_code == 1 and "'normal' is the empty set" in r.output
    r = runner.invoke(app, ["train", "--domains", "normal,effusion", "--findings", "effusion", "--dry-run"])
    assert r.exit_code == 1 and "not both" in r.output
    with pytest.raises(ConfigError, match="holdout_combinations"):
        load_config(resolve_config("tiny"), {"data.holdout_combinations": [["effusion"]]})


def test_multilabel_synthesis_takes_finding_sets(tmp_path):
    from xraystyle.errors import XrayStyleError
    from xraystyle.synthesis import list_sources, load_source, synthesize
    from xraystyle.trained import load_trained_model

    m = write_multilabel_cohort(tmp_path / "c")
    cfg = load_config(resolve_config("tiny"), {"domains": ["effusion", "nodule"], "model.conditioning": "set-additive"})
    training_loop(cfg, tmp_path / "run", m, cache_dir=tmp_path / "cache",
                  accel=make_accel("reference", torch.device("cpu")), progress=False)
    model = load_trained_model(tmp_path / "run")
    assert torch.equal(model.labels.parse("effusion+nodule"), torch.tensor([[1.0, 1.0]]))
    assert torch.equal(model.labels.parse("normal"), torch.tensor([[0.0, 0.0]]))
    edited = model.labels.edit(["nodule"], base=torch.tensor([[1.0, NAN]]), absent=["effusion"])
    assert torch.equal(edited, torch.tensor([[0.0, 1.0]]))
    sources = [load_source(s, model.preprocess) for s in list_sources(m.root / "img")[:2]]
    outs = {t: [r.image for r in synthesize(model, sources, target=t, n_styles=1, seed=0)]
            for t in ("normal", "effusion", "effusion+nodule")}
    assert all(o.shape == (1, 32, 32) for v in outs.values() for o in v)
    assert not torch.equal(outs["effusion"][0], outs["effusion+nodule"][0])
    with pytest.raises(XrayStyleError, match="unknown finding 'mass'"):
        model.labels.parse("effusion+mass")


def test_synth_cli_relative_edits_on_finding_sets(tmp_path, monkeypatch):
    monkeypatch.setenv("XRAYSTYLE_CACHE", str(tmp_path / "cache"))
    m = write_multilabel_cohort(tmp_path / "c")
    cfg = load_config(resolve_config("tiny"), {"domains": ["effusion", "nodule"], "model.conditioning": "set-additive"})
    training_loop(cfg, tmp_path / "run", m, cache_dir=tmp_path / "cache",
                  accel=make_accel("reference", torch.device("cpu")), progress=False)
    runner = CliRunner()
    src = m.root / "img" / "0.png"
    base = ["synth", "--checkpoint", str(tmp_path / "run"), "--source", str(src), "--no-progress"]
    r = runner.invoke(app, [*base, "--out", str(tmp_path / "a"), "--source-findings", "effusion",
                            "--add", "nodule", "--remove", "effusion"])
    assert r.exit_code == 0, r.output
    assert [p.name for p in (tmp_path / "a").glob("*.png")][0].split("_to-")[1].startswith("nodule_")
    r = runner.invoke(app, [*base, "--out", str(tmp_path / "b"), "--target", "effusion+nodule"])
    assert r.exit_code == 0, r.output
    assert "_to-effusion+nodule_" in [p.name for p in (tmp_path / "b").glob("*.png")][0]
    r = runner.invoke(app, [*base, "--out", str(tmp_path / "c2"), "--add", "nodule", "--target", "effusion"])
    assert r.exit_code == 1 and "do not combine" in r.output
    r = runner.invoke(app, [*base, "--out", str(tmp_path / "d"), "--add", "mass"])
    assert r.exit_code == 1 and "unknown finding 'mass'" in r.output


def test_synth_relative_edits_start_from_each_manifest_rows_own_set(tmp_path, monkeypatch):
    monkeypatch.setenv("XRAYSTYLE_CACHE", str(tmp_path / "cache"))
    m = one_step_multilabel_run(tmp_path)
    runner = CliRunner()
    r = runner.invoke(app, ["synth", "--checkpoint", str(tmp_path / "run"), "--source", str(m.path), "--add", "nodule",
                            "--out", str(tmp_path / "a"), "--no-progress"])
    assert r.exit_code == 0, r.output
    targets = pd.read_csv(tmp_path / "a" / "index.csv")["target"].tolist()
    # rows 0..5: (effusion, nodule) = (0,?) (1,0) (0,1) (1,1) (0,0) (1,?) with ? unknown (i % 5 == 0)
    assert targets == ["nodule", "effusion+nodule", "nodule", "effusion+nodule", "nodule", "effusion+nodule"]
    r = runner.invoke(app, ["synth", "--checkpoint", str(tmp_path / "run"), "--source", str(m.path),
                            "--remove", "effusion", "--out", str(tmp_path / "b"), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert pd.read_csv(tmp_path / "b" / "index.csv")["target"].tolist() == [
        "normal", "normal", "nodule", "nodule", "normal", "normal"]
    assert "nodule unknown for some sources" in r.output  # rows 0 and 5, taken as absent
    r = runner.invoke(app, ["synth", "--checkpoint", str(tmp_path / "run"), "--source", str(m.path),
                            "--remove", "effusion", "--source-findings", "effusion,nodule", "--out",
                            str(tmp_path / "c2"), "--no-progress"])
    assert r.exit_code == 0, r.output
    assert set(pd.read_csv(tmp_path / "c2" / "index.csv")["target"]) == {"nodule"}  # the flag wins


def test_report_has_one_add_or_remove_section_per_finding_from_the_sources_own_set(tmp_path, monkeypatch):
    from xraystyle.reporting.counterfactual import build_report
    from xraystyle.synthesis import load_source
    from xraystyle.trained import load_trained_model

    monkeypatch.setenv("XRAYSTYLE_CACHE", str(tmp_path / "cache"))
    m = one_step_multilabel_run(tmp_path)
    model = load_trained_model(tmp_path / "run")
    src = load_source(m.root / "img" / "1.png", model.preprocess)
    rep = build_report(model, src, source_set=torch.tensor([[1.0, 0.0]]), n_styles=2)
    assert [(s.title, s.target, s.edited) for s in rep.sections] == [
        ("remove effusion", "normal", "effusion"), ("add nodule", "effusion+nodule", "nodule")]
    assert rep.source_domain == "effusion" and not rep.notes
    rep = build_report(model, src, source_domain="effusion+nodule", n_styles=1)
    assert [s.title for s in rep.sections] == ["remove effusion", "remove nodule"]
    rep = build_report(model, src, source_set=torch.tensor([[1.0, NAN]]), n_styles=1)
    assert [s.title for s in rep.sections] == ["remove effusion", "add nodule"]
    assert rep.source_domain is None and "nodule" in rep.notes[0]

    runner = CliRunner()
    r = runner.invoke(app, ["report", "--checkpoint", str(tmp_path / "run"), "--manifest", str(m.path), "--limit", "3",
                            "--n-styles", "1", "--out", str(tmp_path / "rep"), "--no-progress"])
    assert r.exit_code == 0, r.output
    index = (tmp_path / "rep" / "index.html").read_text()
    assert "add / remove effusion" in index and "add / remove nodule" in index
    page = next((tmp_path / "rep").glob("src-*.html")).read_text()
    assert "add nodule" in page or "remove nodule" in page


def test_manifest_sources_keep_the_labels_they_have_when_a_finding_column_is_missing(tmp_path):
    from xraystyle.synthesis import list_sources

    m = write_multilabel_cohort(tmp_path / "c", n=4)
    df = pd.read_csv(m.path, comment="#").drop(columns=["nodule"])
    only_effusion = write_manifest(df, tmp_path / "c" / "effusion_only.csv")
    specs = list_sources(only_effusion.path, ["effusion", "nodule"])
    assert specs[1].findings[0] == 1.0 and np.isnan(specs[1].findings[1])
