"""The inference contract: a checkpoint carries its model arguments and synthesis rebuilds from
those alone, so training-config keys this version does not know (or lacks) never stop it loading."""

import io

import pytest
import torch
from typer.testing import CliRunner

from tests.synthesis.helpers import write_png
from xraystyle.cli import app

runner = CliRunner()


def _rewrite(checkpoint, out, edit):
    """A copy of ``checkpoint`` with ``edit(payload)`` applied (outside the run folder: no index)."""
    payload = torch.load(checkpoint, weights_only=True)
    edit(payload)
    buf = io.BytesIO()
    torch.save(payload, buf)
    out.write_bytes(buf.getvalue())
    return out


def _unknown_and_missing_train_keys(payload):
    payload["config"]["train"]["a_key_from_a_later_version"] = 3
    payload["config"]["eval"] = {"renamed_section": True}
    del payload["config"]["train"]["log_every"]
    del payload["config"]["loss"]


def _legacy(payload):  # written before checkpoints carried model_args
    del payload["model_args"]


def _legacy_with_foreign_train_keys(payload):
    _legacy(payload)
    _unknown_and_missing_train_keys(payload)


@pytest.mark.parametrize("edit", [_unknown_and_missing_train_keys, _legacy, _legacy_with_foreign_train_keys])
def test_checkpoint_loads_for_synthesis_whatever_its_training_config(checkpoint, model, tmp_path, edit):
    from xraystyle.trained import load_trained_model

    assert "model_args" in torch.load(checkpoint, weights_only=True)
    path = _rewrite(checkpoint, tmp_path / "edited.pt", edit)
    loaded = load_trained_model(path)
    assert loaded.args == model.args and loaded.step == model.step
    x = torch.zeros(2, 1, model.size, model.size)
    z = torch.randn(2, model.latent_dim, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([1, 1])
    from xraystyle.models.translate import translate_latent

    assert torch.equal(translate_latent(loaded.nets, x, y, z), translate_latent(model.nets, x, y, z))
    src = write_png(tmp_path / "in" / "a.png")
    r = runner.invoke(app, ["synth", "--no-progress", "--checkpoint", str(path), "--source", str(src),
                            "--target", "effusion", "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output


def test_model_arguments_this_version_cannot_honour_are_refused_in_one_line(checkpoint, tmp_path):
    from xraystyle.errors import CheckpointError
    from xraystyle.trained import load_trained_model

    def future_model(payload):
        payload["model_args"]["model"]["attention_blocks"] = 2

    path = _rewrite(checkpoint, tmp_path / "future.pt", future_model)
    with pytest.raises(CheckpointError, match=r"future\.pt: .*model arguments: unknown config key\(s\): model\.attention_blocks"):
        load_trained_model(path)


def test_in_memory_networks_and_a_loaded_checkpoint_are_one_kind_of_model(checkpoint, model):
    from xraystyle.evaluation.runner import as_trained_model
    from xraystyle.trained import TrainedModel

    assert as_trained_model(model) is model
    same = TrainedModel.from_networks(model.nets, model.args, step=4)
    assert same.domains == model.domains and same.checkpoint is None and same.size == model.size


@pytest.mark.parametrize("config", [[1], "normal,effusion", {"domains": ["normal", "effusion"], "data": [1]}])
def test_a_legacy_checkpoint_with_a_malformed_config_is_refused_in_one_line(checkpoint, tmp_path, config):
    """No model_args, and a config that is not a mapping (or whose data section is not): a
    CheckpointError, not an AttributeError traceback from the fallback reader."""
    from xraystyle.errors import CheckpointError
    from xraystyle.trained import load_trained_model

    def malformed(payload):
        _legacy(payload)
        payload["config"] = config

    path = _rewrite(checkpoint, tmp_path / "malformed.pt", malformed)
    with pytest.raises(CheckpointError, match=r"malformed\.pt: checkpoint does not hold a usable model"):
        load_trained_model(path)
