"""`xraystyle classifier train` and `xraystyle eval` end to end, and their one-line errors."""

import json

import pytest
from typer.testing import CliRunner

from xraystyle.cli import app

runner = CliRunner()


def _one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("xraystyle: error: "), result.output
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in lines[0], lines[0]


def test_classifier_train_cli(phantom_manifest, tmp_path):
    out = tmp_path / "clf.pt"
    res = runner.invoke(app, ["classifier", "train", "--cohort", str(phantom_manifest.path), "--findings", "effusion",
                              "--epochs", "1", "--size", "32", "--batch-size", "16", "--device", "cpu",
                              "--no-progress", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.is_file() and "val AUC" in res.output and "effusion" in res.output


def test_classifier_train_cli_errors(phantom_manifest, tmp_path):
    base = ["classifier", "train", "--epochs", "1", "--size", "32", "--device", "cpu", "--no-progress"]
    res = runner.invoke(app, base + ["--cohort", str(phantom_manifest.path), "--findings", "effusion,nodul",
                                     "--out", str(tmp_path / "c.pt")])
    _one_line_error(res, "unknown finding 'nodul'", "manifest.csv")
    res = runner.invoke(app, base + ["--cohort", str(tmp_path / "missing.csv"), "--findings", "effusion",
                                     "--out", str(tmp_path / "c.pt")])
    _one_line_error(res, "missing.csv", "file not found")
    bad = tmp_path / "bad.csv"
    bad.write_text("path,patient_id\nimg.png,p1\n")
    res = runner.invoke(app, base + ["--cohort", str(bad), "--findings", "effusion", "--out", str(tmp_path / "c.pt")])
    _one_line_error(res, "bad.csv", "missing required column")
    res = runner.invoke(app, base + ["--cohort", str(phantom_manifest.path), "--findings", "effusion",
                                     "--out", str(tmp_path / "c.txt")])
    _one_line_error(res, "must end in .pt")
    assert not list(tmp_path.glob("*.pt"))


def _eval_args(checkpoint, manifest, classifier, out):
    return ["eval", "--checkpoint", str(checkpoint), "--cohort", str(manifest), "--classifier", str(classifier),
            "--out", str(out), "--n-styles", "2", "--limit", "3", "--max-real", "24", "--oracle-patients", "8",
            "--device", "cpu", "--no-progress"]


def test_eval_cli_end_to_end(checkpoint, phantom_manifest, classifier_pt, tmp_path):
    out = tmp_path / "eval"
    args = _eval_args(checkpoint, phantom_manifest.path, classifier_pt, out)
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "| normal → effusion | latent |" in res.output and "| effusion → normal | reference |" in res.output
    metrics = json.loads((out / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(f"JSON has {c}"))
    meta = metrics["meta"]
    assert meta["step"] == 2 and meta["n_styles"] == 2 and len(meta["checkpoint_sha256"]) == 64
    assert meta["inception"]["available"] is False and "never downloads" in meta["inception"]["reason"]
    assert meta["lpips"]["available"] is False
    assert meta["oracle"]["available"] is True  # a phantom cohort
    assert len(metrics["pairs"]) == 4 and all("validity" in p for p in metrics["pairs"])
    assert all(p["fid_xray_real_floor"] is not None and p["fid_xray_n"] == 3 * 2 for p in metrics["pairs"])
    assert meta["real_rate_split"] == "test" and meta["fid_split"] == "train"
    for name in ("validity.png", "prob_shift_hist.png", "summary.html", "examples/latent_normal_to_effusion.png"):
        assert (out / name).is_file(), name
    html = (out / "summary.html").read_text()
    assert "data:image/png;base64," in html and "http://" not in html and "https://" not in html
    # The phantom knows each image's acquisition: the style code's share of it is reported.
    assert set(metrics["style_physics"]["normal"]) >= {"style_r2/exposure", "image_r2/gamma"}
    assert "Physics in the style code" in html and "FID real vs real, same n" in html
    res = runner.invoke(app, args)
    assert res.exit_code == 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    line = json.loads(lines[-1])
    assert {"date", "checkpoint_sha256", "step"} <= set(line)
    assert "eval/latent/normal->effusion/validity" in line


def test_eval_cli_errors(checkpoint, phantom_manifest, classifier_pt, tmp_path):
    res = runner.invoke(app, _eval_args(checkpoint, phantom_manifest.path, tmp_path / "nope.pt", tmp_path / "o"))
    _one_line_error(res, "nope.pt", "classifier file not found")
    weights = tmp_path / "w"
    weights.mkdir()
    res = runner.invoke(app, _eval_args(checkpoint, phantom_manifest.path, "xrv:densenet121-res224-all", tmp_path / "o")
                        + ["--weights-dir", str(weights)])
    _one_line_error(res, "nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121", str(weights), "never downloads")
    res = runner.invoke(app, _eval_args(checkpoint, tmp_path / "missing.csv", classifier_pt, tmp_path / "o"))
    _one_line_error(res, "missing.csv", "file not found")
    res = runner.invoke(app, _eval_args(checkpoint, phantom_manifest.path, classifier_pt, tmp_path / "o")
                        + ["--mode", "sideways"])
    assert res.exit_code == 2 and "'sideways' is not one of 'latent', 'reference', 'both'" in res.stderr  # usage error
    res = runner.invoke(app, _eval_args(tmp_path / "none.pt", phantom_manifest.path, classifier_pt, tmp_path / "o"))
    assert res.exit_code == 1 and "none.pt" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "o").exists()


def test_eval_cli_refuses_a_judge_blind_to_the_models_finding(checkpoint, phantom_manifest, tmp_path):
    from xraystyle.cohorts.manifest import write_manifest
    from xraystyle.evaluation.classifier_train import train_classifier

    df = phantom_manifest.df.copy()
    df["nodule"] = df["effusion"]  # any second finding column will do for this check
    m = write_manifest(df, tmp_path / "m.csv", root=phantom_manifest.root)
    train_classifier(m, ["nodule"], tmp_path / "nodule.pt", epochs=1, size=32, cache_dir=tmp_path / "t", progress=False)
    res = runner.invoke(app, _eval_args(checkpoint, phantom_manifest.path, tmp_path / "nodule.pt", tmp_path / "o"))
    _one_line_error(res, "does not predict 'effusion'", "nodule")


def test_summary_html_escapes_text(tmp_path):
    from xraystyle.evaluation.summary import write_html

    metrics = {"meta": {"classifier": {"name": "<script>alert(1)</script>.pt"}, "domains": ["normal", "effusion"],
                        "oracle": {"available": False, "reason": "a <b>reason</b>"}},
               "pairs": [{"source": "normal", "target": "effusion", "mode": "latent", "validity": 0.5,
                          "base_rate": 0.1}]}
    text = write_html(metrics, {}, {}, tmp_path / "s.html").read_text()
    assert "<script>" not in text and "&lt;script&gt;" in text and "<b>reason" not in text
