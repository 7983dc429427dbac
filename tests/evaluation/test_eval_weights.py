"""Pretrained weights come only from local caches; a missing file is one clear line."""

import pytest
import torch

from xraystyle.errors import ConfigError, MissingWeightsError
from xraystyle.evaluation.classifier import XRV_TO_VOCAB, load_classifier, xrv_weights_file

WEIGHTS = "densenet121-res224-all"


def _xrv_densenet():
    import torchxrayvision as xrv

    torch.manual_seed(0)
    return xrv.models.DenseNet(weights=None)


def test_missing_xrv_weights_name_the_file_and_folder(tmp_path):
    empty = tmp_path / "weights"
    empty.mkdir()
    with pytest.raises(MissingWeightsError) as err:
        load_classifier(f"xrv:{WEIGHTS}", weights_dir=empty)
    msg = str(err.value)
    assert "\n" not in msg
    assert xrv_weights_file(WEIGHTS) in msg and str(empty) in msg and "never downloads" in msg
    assert not any(empty.iterdir())  # nothing fetched


def test_default_cache_is_torchxrayvision_own(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError, match=r"\.torchxrayvision/models_data"):
        load_classifier(f"xrv:{WEIGHTS}")


def test_unknown_xrv_weights_and_bad_spec():
    with pytest.raises(ConfigError, match="unknown torchxrayvision weights"):
        load_classifier("xrv:densenet999")
    with pytest.raises(ConfigError, match="expected xrv:<weights>"):
        load_classifier("not-a-classifier")


@pytest.mark.parametrize("form", ["state_dict", "whole_module"])
def test_xrv_weights_load_offline_from_the_expected_file(tmp_path, form):
    import torchxrayvision as xrv

    net = _xrv_densenet()
    target = tmp_path / xrv_weights_file(WEIGHTS)
    # torchxrayvision's DenseNet release files are pickled modules; ResNet ones state dicts.
    torch.save(net.state_dict() if form == "state_dict" else net, target)
    clf = load_classifier(f"xrv:{WEIGHTS}", weights_dir=tmp_path)
    labels = xrv.models.model_urls[WEIGHTS]["labels"]
    assert clf.findings == [XRV_TO_VOCAB[name] for name in labels]
    assert {"effusion", "lung_opacity", "pleural_thickening", "enlarged_cardiomediastinum"} <= set(clf.findings)
    assert clf.input_size == 224
    op = xrv.models.model_urls[WEIGHTS]["op_threshs"]
    assert clf.thresholds.tolist() == pytest.approx(op)
    x = torch.rand(2, 1, 64, 64) * 2 - 1
    p = clf.predict_proba(x)
    assert p.shape == (2, 18) and ((p >= 0) & (p <= 1)).all()
    assert clf.features(x).shape == (2, 1024)
    # Same numbers as torchxrayvision's own forward on its [-1024, 1024], 224 px input.
    ref = torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False) * 1024
    with torch.no_grad():
        expected = torch.sigmoid(net.eval()(ref))
    assert torch.allclose(p, expected, atol=1e-4)
    cal = clf.calibrated_proba(x)
    assert ((cal >= 0.5) == (p >= clf.thresholds)).all()


def test_inception_and_lpips_unavailable_without_cached_files():
    from xraystyle.evaluation.diversity import load_lpips
    from xraystyle.evaluation.features import load_inception

    for loader, name in ((load_inception, "inception_v3_google"), (load_lpips, "alexnet-owt")):
        with pytest.raises(MissingWeightsError) as err:
            loader()
        assert name in str(err.value) and "hub/checkpoints" in str(err.value) and "\n" not in str(err.value)


def test_lpips_and_inception_build_from_cached_files(tmp_path):
    import torchvision

    from xraystyle.evaluation.diversity import ALEXNET_FILE, load_lpips
    from xraystyle.evaluation.features import INCEPTION_FILE, load_inception, torch_hub_checkpoints

    folder = torch_hub_checkpoints()  # under the test's TORCH_HOME
    folder.mkdir(parents=True)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), folder / ALEXNET_FILE)
    torch.save(torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(),
               folder / INCEPTION_FILE)
    lp = load_lpips()
    x = torch.rand(3, 1, 64, 64) * 2 - 1
    assert lp.diversity(x) > 0
    assert lp.diversity(x[:1].repeat(3, 1, 1, 1)) == pytest.approx(0.0, abs=1e-6)
    inc = load_inception()
    assert inc(x[:2]).shape == (2, 2048)
