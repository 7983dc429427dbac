import json
import os
import signal

import pytest
import torch

from xraystyle.errors import CheckpointError, ConfigError, TrainingError
from xraystyle.training import trainer as trainer_mod
from xraystyle.training.accel import make_accel
from xraystyle.training.checkpoint import load_latest
from xraystyle.training.trainer import training_loop

CPU = make_accel("reference", torch.device("cpu"))


def train(cfg, run_dir, manifest, tmp_path, **kw):
    return training_loop(cfg, run_dir, manifest, cache_dir=tmp_path / "cache", accel=CPU,
                         progress=False, **kw)


def test_run_folder_contents(tiny_cfg, png_cohort, tmp_path):
    run = tmp_path / "run"
    result = train(tiny_cfg, run, png_cohort, tmp_path)
    assert result.step == 4 and result.signal is None
    assert (run / "config.yaml").exists()
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [s["step"] for s in stats] == [1, 2, 3, 4]
    for key in ("D/latent_real", "D/ref_r1", "G/latent_adv", "G/ref_cyc", "G/latent_ds", "lambda_ds", "it_per_s"):
        assert key in stats[0]
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "latent_0000002.png", "latent_0000004.png", "reference_0000002.png", "reference_0000004.png"]
    payload, path = load_latest(run)
    assert payload["step"] == 4 and path == result.checkpoint
    assert payload["model_args"]["domains"] == ["normal", "effusion"]
    assert "sampler" not in payload and "domains" not in payload  # written once, never read: gone
    assert set(payload["state"]["ema"]) == {"G", "F", "E"}


def _weights(run):
    payload, _ = load_latest(run)
    return payload["state"]


def _assert_same_state(a, b):
    for group in ("nets", "ema"):
        for net in a[group]:
            for k, v in a[group][net].items():
                assert torch.equal(v, b[group][net][k]), f"{group}.{net}.{k}"
    for net in a["optims"]:
        for pid, st in a["optims"][net]["state"].items():
            for k, v in st.items():
                assert torch.equal(v, b["optims"][net]["state"][pid][k])


def test_resume_is_bitwise_equal_to_uninterrupted(tiny_cfg, png_cohort, tmp_path):
    full = tmp_path / "full"
    train(tiny_cfg, full, png_cohort, tmp_path)
    part = tmp_path / "part"
    tiny_cfg.train.iters = 2
    train(tiny_cfg, part, png_cohort, tmp_path)
    tiny_cfg.train.iters = 4
    result = train(tiny_cfg, part, png_cohort, tmp_path, resume=True)
    assert result.step == 4
    _assert_same_state(_weights(full), _weights(part))


def test_resume_refuses_incompatible_config(tiny_cfg, png_cohort, tmp_path):
    run = tmp_path / "run"
    tiny_cfg.train.iters = 2
    train(tiny_cfg, run, png_cohort, tmp_path)
    tiny_cfg.model.style_dim = 8
    tiny_cfg.loss.lambda_cyc = 2.0
    with pytest.raises(ConfigError, match="loss.lambda_cyc, model.style_dim"):
        train(tiny_cfg, run, png_cohort, tmp_path, resume=True)


def test_existing_run_needs_resume_and_resume_needs_checkpoint(tiny_cfg, png_cohort, tmp_path):
    run = tmp_path / "run"
    tiny_cfg.train.iters = 2
    with pytest.raises(CheckpointError, match="no readable checkpoint"):
        train(tiny_cfg, run, png_cohort, tmp_path, resume=True)
    train(tiny_cfg, run, png_cohort, tmp_path)
    with pytest.raises(ConfigError, match="already has checkpoints"):
        train(tiny_cfg, run, png_cohort, tmp_path)


def test_changed_manifest_refused_on_resume(tiny_cfg, png_cohort, tmp_path):
    from .conftest import write_png_cohort

    run = tmp_path / "run"
    tiny_cfg.train.iters = 2
    train(tiny_cfg, run, png_cohort, tmp_path)
    other = write_png_cohort(tmp_path / "other", n=28)
    with pytest.raises(CheckpointError, match="manifest changed"):
        train(tiny_cfg, run, other, tmp_path, resume=True)


def _patched_step(monkeypatch, at_step, action):
    real = trainer_mod.train_step

    def step(state, *a, **k):
        terms = real(state, *a, **k)
        if state.step == at_step:
            return action(terms)
        return terms

    monkeypatch.setattr(trainer_mod, "train_step", step)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_cfg, png_cohort, tmp_path, monkeypatch):
    run = tmp_path / "run"
    _patched_step(monkeypatch, 3, lambda t: {**t, "G/latent_adv": torch.tensor(float("nan"))})
    with pytest.raises(TrainingError, match=r"non-finite loss \(G/latent_adv\).*step_0000002.pt"):
        train(tiny_cfg, run, png_cohort, tmp_path)
    payload, _ = load_latest(run)
    assert payload["step"] == 2
    assert not (run / "checkpoints" / "step_0000003.pt").exists()


def test_sigterm_writes_checkpoint_and_stops(tiny_cfg, png_cohort, tmp_path, monkeypatch):
    run = tmp_path / "run"
    tiny_cfg.train.ckpt_every = 100

    def kill(terms):
        os.kill(os.getpid(), signal.SIGTERM)
        return terms

    _patched_step(monkeypatch, 1, kill)
    result = train(tiny_cfg, run, png_cohort, tmp_path)
    assert result.signal == signal.SIGTERM and result.step == 1
    assert load_latest(run)[0]["step"] == 1
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored


def test_domain_without_images_is_refused(tiny_cfg, png_cohort, tmp_path):
    tiny_cfg.data.split = "test"
    png_cohort.df.loc[png_cohort.df["split"] == "test", "effusion"] = 0.0
    with pytest.raises(TrainingError, match="no usable test images for domain"):
        train(tiny_cfg, tmp_path / "run", png_cohort, tmp_path)


def test_unreadable_images_are_counted_and_limited(tiny_cfg, png_cohort, tmp_path):
    (png_cohort.root / "img" / "im000.png").write_bytes(b"not a png")
    with pytest.raises(TrainingError, match="1 of 20 images could not be read"):
        train(tiny_cfg, tmp_path / "run", png_cohort, tmp_path)
    tiny_cfg.data.max_bad_fraction = 0.1
    assert train(tiny_cfg, tmp_path / "run", png_cohort, tmp_path).step == 4


def test_periodic_evaluation_writes_into_stats(tiny_cfg, png_cohort, tmp_path):
    from xraystyle.evaluation.classifier_train import train_classifier

    clf = tmp_path / "clf.pt"
    train_classifier(png_cohort, ["effusion"], clf, arch="small", epochs=1, size=32, batch_size=8,
                     device="cpu", cache_dir=tmp_path / "cache", progress=False)
    tiny_cfg.eval.every, tiny_cfg.eval.classifier, tiny_cfg.eval.split = 2, str(clf), "test"
    tiny_cfg.eval.limit, tiny_cfg.eval.n_styles = 2, 2
    train(tiny_cfg, tmp_path / "run", png_cohort, tmp_path)
    lines = [json.loads(line) for line in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    evals = [line for line in lines if any(k.startswith("eval/") for k in line)]
    assert [e["step"] for e in evals] == [2, 4]
    assert any("validity" in k for k in evals[0])


def test_resume_accepts_checkpoint_lacking_newer_default_keys(tiny_cfg, png_cohort, tmp_path):
    import io

    from xraystyle.training.checkpoint import INDEX

    run = tmp_path / "run"
    tiny_cfg.train.iters = 2
    train(tiny_cfg, run, png_cohort, tmp_path)
    # Simulate a snapshot written before the "eval" section existed.
    path = run / "checkpoints" / "step_0000002.pt"
    payload = torch.load(path, weights_only=True)
    del payload["config"]["eval"]
    buf = io.BytesIO()
    torch.save(payload, buf)
    path.write_bytes(buf.getvalue())
    (run / "checkpoints" / INDEX).unlink()  # the old checksum no longer applies
    tiny_cfg.train.iters = 3
    assert train(tiny_cfg, run, png_cohort, tmp_path, resume=True).step == 3


def test_stats_are_interval_means_and_lazy_r1_is_reported(tiny_cfg, png_cohort, tmp_path):
    tiny_cfg.loss.r1_interval, tiny_cfg.train.log_every = 2, 2
    train(tiny_cfg, tmp_path / "run", png_cohort, tmp_path)
    stats = [json.loads(line) for line in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    # steps 0 and 2 apply R1; each logged interval (2 steps) holds one of them
    assert [s["step"] for s in stats] == [2, 4]
    assert all(s["D/latent_r1"] is not None and s["D/latent_r1"] > 0 for s in stats)


def test_a_residual_run_loads_as_a_residual_generator(tiny_cfg, png_cohort, tmp_path):
    """model.generator_output travels in the checkpoint's model arguments: the loaded G adds its
    output to the source, as the trained one did (same tensors from both)."""
    from xraystyle.trained import load_trained_model

    tiny_cfg.model.generator_output = "residual"
    tiny_cfg.train.iters = 2
    train(tiny_cfg, tmp_path / "run", png_cohort, tmp_path)
    model = load_trained_model(tmp_path / "run")
    assert model.args.model.generator_output == "residual" and model.nets["G"].residual
    payload, _ = load_latest(tmp_path / "run")
    G = type(model.nets["G"])(tiny_cfg.model)
    G.load_state_dict(payload["state"]["ema"]["G"])
    x, s = torch.rand(2, 1, 32, 32) * 2 - 1, torch.randn(2, tiny_cfg.model.style_dim)
    assert torch.equal(model.nets["G"](x, s), G(x, s))
    tiny_cfg.model.generator_output = "image"  # the same weights without the skip: another G
    paper = type(model.nets["G"])(tiny_cfg.model)
    paper.load_state_dict(payload["state"]["ema"]["G"])
    assert torch.allclose(G(x, s) - paper(x, s), x)
