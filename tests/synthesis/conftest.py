import pytest
import torch

from tests.synthesis.helpers import trained_checkpoint


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    torch.set_num_threads(1)
    monkeypatch.setenv("XRAYSTYLE_CACHE", str(tmp_path / "xcache"))


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """Tiny trained checkpoint, shared with tests/reporting (same folder, trained once)."""
    return trained_checkpoint(tmp_path_factory.getbasetemp() / "xraystyle-tiny-model")


@pytest.fixture(scope="session")
def model(checkpoint):
    from xraystyle.trained import load_trained_model

    return load_trained_model(checkpoint)
