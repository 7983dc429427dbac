import os
import subprocess
import sys

import pytest
import torch
import yaml
from typer.testing import CliRunner

from xraystyle.cli import app
from xraystyle.training.checkpoint import load_latest

runner = CliRunner()


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XRAYSTYLE_CACHE", str(tmp_path / "cache"))


def invoke(*args):
    return runner.invoke(app, ["train", *map(str, args)])


def test_dry_run_prints_resolved_config():
    r = invoke("--config", "tiny", "--domains", "normal,nodule", "--iters", "7", "--dry-run")
    assert r.exit_code == 0, r.output
    cfg = yaml.safe_load(r.output)
    assert cfg["domains"] == ["normal", "nodule"] and cfg["train"]["iters"] == 7
    assert cfg["model"]["img_size"] == 32


def test_default_configs_are_the_truth_benchmark_winner(png_cohort):
    """Real cohorts default to xray-256 and the phantom demo to demo.yaml, both with issue #16's
    winner (residual G, matching-aware D learning 4x as fast as G, cross-domain targets,
    equalised E input, D augmentation, fixed normal, the reference's side with E in the reference
    phase: reports/phantom-truth.md); paper-256 stays the published arithmetic."""
    winner = {("model", "generator_output"): "residual", ("model", "style_input"): "equalized",
              ("model", "normal_style"): "fixed", ("loss", "lambda_mismatch"): 1.0,
              ("physics", "d_augment"): True, ("physics", "e_augment"): False, ("physics", "lambda_inv"): 0.0,
              ("train", "target_policy"): "toggle", ("loss", "lambda_laterality"): 1.0, ("loss", "e_ref"): True}
    published = {("model", "generator_output"): "image", ("model", "style_input"): "image",
                 ("model", "normal_style"): "sampled", ("loss", "lambda_mismatch"): 0.0,
                 ("physics", "d_augment"): False, ("physics", "e_augment"): False, ("physics", "lambda_inv"): 0.0,
                 ("train", "target_policy"): "mixed", ("loss", "lambda_laterality"): 0.0, ("loss", "e_ref"): False}
    for args, size, expected, d_over_g in ((("--cohort", png_cohort.path), 256, winner, 4.0),
                                           ((), 64, winner, 4.0),
                                           (("--config", "paper-256"), 256, published, None)):
        r = invoke(*args, "--dry-run")
        assert r.exit_code == 0, r.output
        cfg = yaml.safe_load(r.output)
        assert cfg["model"]["img_size"] == size
        assert {k: cfg[k[0]][k[1]] for k in expected} == expected, args
        d_lr = cfg["optim"]["d_lr"]
        assert (d_lr is None) if d_over_g is None else d_lr == pytest.approx(d_over_g * cfg["optim"]["lr"]), args


@pytest.mark.parametrize("config", [None, "xray-256"])
def test_packaged_defaults_drop_the_side_term_without_a_normal_domain(config, tmp_path):
    """The side term compares adds to normal images: a packaged default given domains without
    'normal' trains without it and without E in the reference phase, and says so; with 'normal',
    multi-label, or the user's own config (refused in one line) nothing is dropped."""
    chosen = () if config is None else ("--config", config)
    r = invoke(*chosen, "--domains", "effusion,nodule", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "no 'normal' domain" in r.stderr and "loss.lambda_laterality" in r.stderr
    loss = yaml.safe_load(r.stdout)["loss"]
    assert loss["lambda_laterality"] == 0 and loss["e_ref"] is False
    for names in (("--domains", "normal,nodule"), ("--findings", "effusion,nodule")):
        r = invoke(*chosen, *names, "--dry-run")
        assert r.exit_code == 0 and "no 'normal' domain" not in r.stderr, r.output
        loss = yaml.safe_load(r.stdout)["loss"]
        assert loss["lambda_laterality"] == 1.0 and loss["e_ref"] is True
    own = tmp_path / "own.yaml"
    own.write_text(yaml.safe_dump({"loss": {"lambda_laterality": 1.0, "e_ref": True}}))
    r = invoke("--config", own, "--domains", "effusion,nodule", "--dry-run")
    assert r.exit_code != 0 and "loss.lambda_laterality" in r.output and "Traceback" not in r.output


def test_train_then_resume_to_more_steps(png_cohort, tmp_path):
    run = tmp_path / "run"
    r = invoke("--config", "tiny", "--cohort", png_cohort.path, "--iters", 2, "--out", run, "--no-progress")
    assert r.exit_code == 0, r.output
    assert load_latest(run)[0]["step"] == 2
    r = invoke("--config", "tiny", "--cohort", png_cohort.path, "--iters", 3, "--out", run, "--resume", "--no-progress")
    assert r.exit_code == 0, r.output
    assert load_latest(run)[0]["step"] == 3


@pytest.mark.parametrize("args,message", [
    (["--config", "nope"], "nope: no such config file"),
    (["--domains", "normal"], "domains: need at least two domains"),
    (["--domains", "normal,Effusion"], "is not a finding name"),
    (["--domains", "normal,../x"], "is not a finding name"),
    (["--iters", "0"], "train.iters: must be >= 1"),
    (["--device", "cuda"], "CUDA is not available"),
])
def test_bad_options_give_one_line_errors(png_cohort, tmp_path, args, message):
    if "--device" in args and torch.cuda.is_available():
        pytest.skip("CUDA present")
    base = ["--config", "tiny", "--cohort", png_cohort.path, "--out", tmp_path / "run", "--no-progress"]
    r = invoke(*base, *args)
    assert r.exit_code == 1, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xraystyle: error:") and message in lines[0], r.output


def test_bad_config_file_and_manifest(tmp_path, png_cohort):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  img_sise: 32\n")
    r = invoke("--config", bad, "--cohort", png_cohort.path, "--dry-run")
    assert r.exit_code == 1 and "unknown config key(s): model.img_sise" in r.output
    missing = tmp_path / "missing.csv"
    r = invoke("--config", "tiny", "--cohort", missing, "--out", tmp_path / "r")
    assert r.exit_code == 1 and "missing.csv" in r.output and "Traceback" not in r.output
    r = invoke("--config", "tiny", "--cohort", png_cohort.path, "--domains", "normal,nodule", "--out", tmp_path / "r")
    assert r.exit_code == 1 and "unknown domain 'nodule'" in r.output


def test_corrupt_checkpoint_on_resume_is_one_line(png_cohort, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "step_0000002.pt").write_bytes(b"garbage")
    r = invoke("--config", "tiny", "--cohort", png_cohort.path, "--out", run, "--resume", "--no-progress")
    assert r.exit_code == 1 and "no readable checkpoint" in r.output


@pytest.mark.slow
def test_torchrun_two_processes_match_single_process(png_cohort, tmp_path):
    """2 gloo processes with half the batch each make the same first update as 1 process."""
    env = {**os.environ, "XRAYSTYLE_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    common = ["train", "--config", "tiny", "--cohort", str(png_cohort.path), "--iters", "1", "--no-progress",
              "--device", "cpu"]
    single = subprocess.run([sys.executable, "-m", "xraystyle", *common, "--out", str(tmp_path / "one")],
                            env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    multi = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                            "-m", "xraystyle", *common, "--out", str(tmp_path / "two")],
                           env=env, capture_output=True, text=True, timeout=300)
    assert multi.returncode == 0, multi.stderr[-3000:]
    a, b = load_latest(tmp_path / "one")[0]["state"], load_latest(tmp_path / "two")[0]["state"]
    diff = torch.cat([(v - b["nets"][net][k]).abs().reshape(-1)
                      for net in ("G", "F", "E", "D") for k, v in a["nets"][net].items()])
    # Gradients agree to float rounding (summation order differs). Adam divides by sqrt(v), so a
    # parameter whose true gradient is ~0 (e.g. a bias in front of instance norm) can take a
    # +-lr step on rounding noise alone: allow that on a tiny fraction, bounded by 2 G updates.
    assert (diff <= 1e-5).float().mean() > 0.999, diff.max()
    assert diff.max() <= 5e-4
    # and the update really moved the weights (the comparison is not vacuous)
    from xraystyle.models.networks import build_networks
    from xraystyle.paths import resolve_config
    from xraystyle.training.config import load_config

    cfg = load_config(resolve_config("tiny"))
    torch.manual_seed(cfg.train.seed)
    init = build_networks(cfg.model, 2).state_dict()
    assert not torch.equal(init["D.trunk.0.weight"], a["nets"]["D"]["trunk.0.weight"])
