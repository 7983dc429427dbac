"""Training the judge: real training-split images only, NaN labels masked, a weights_only .pt."""

import numpy as np
import pytest
import torch

from xraystyle.cohorts.manifest import write_manifest
from xraystyle.errors import CheckpointError, ConfigError, ManifestError
from xraystyle.evaluation.classifier import load_classifier
from xraystyle.evaluation.classifier_train import train_classifier


def test_trained_classifier_file_is_plain_and_useful(classifier_pt, phantom_manifest, session_cache):
    payload = torch.load(classifier_pt, weights_only=True)
    assert payload["format"] == "xraystyle-classifier" and payload["arch"] == "small"
    assert payload["findings"] == ["effusion"] and payload["input_size"] == 32
    assert set(payload["val_auc"]) == {"effusion"} and "Youden" in payload["threshold_rule"]
    assert payload["preprocess"]["size"] == 32 and payload["train"]["n_train"] == 72
    clf = load_classifier(str(classifier_pt))
    assert clf.findings == ["effusion"] and clf.thresholds.shape == (1,)
    # Judged on the test split (never seen), it separates effusion from normal.
    from xraystyle.data.cache import build_tensor_cache
    from xraystyle.evaluation.roc import auc
    from xraystyle.transforms import PreprocessConfig

    test = phantom_manifest.subset("test")
    cache = build_tensor_cache(test, PreprocessConfig(size=32), session_cache / "tensors", progress=False)
    x = torch.from_numpy(np.asarray(cache.images, dtype=np.float32))
    p = clf.predict_proba(x)[:, 0].numpy()
    assert auc(p, test.finding_matrix(["effusion"])[:, 0]) > 0.75
    # Any input size: resized internally.
    big = torch.nn.functional.interpolate(x[:2], size=64, mode="bilinear")
    assert clf.predict_proba(big).shape == (2, 1)


def test_unknown_labels_are_masked_not_negatives(phantom_manifest, tmp_path):
    df = phantom_manifest.df.copy()
    train_rows = np.flatnonzero(df["split"].to_numpy() == "train")
    df.loc[train_rows[:6], "effusion"] = np.nan
    m = write_manifest(df, tmp_path / "m.csv", root=phantom_manifest.root)
    summary = train_classifier(m, ["effusion"], tmp_path / "c.pt", epochs=1, size=32, batch_size=16,
                               cache_dir=tmp_path / "t", progress=False)
    assert summary["train"]["n_train"] == len(train_rows) - 6


def test_synthetic_manifests_and_bad_requests_are_refused(phantom_manifest, tmp_path):
    df = phantom_manifest.df.copy()
    df["meta_synthetic"] = ""
    df.loc[3, "meta_synthetic"] = "1"
    m = write_manifest(df, tmp_path / "synth.csv", root=phantom_manifest.root)
    with pytest.raises(ManifestError, match="row 4: marked synthetic"):
        train_classifier(m, ["effusion"], tmp_path / "c.pt", progress=False)
    with pytest.raises(ManifestError, match="unknown finding 'nodule'"):
        train_classifier(phantom_manifest, ["nodule"], tmp_path / "c.pt", progress=False)
    with pytest.raises(ConfigError, match="unknown classifier arch"):
        train_classifier(phantom_manifest, ["effusion"], tmp_path / "c.pt", arch="vgg", progress=False)
    assert not (tmp_path / "c.pt").exists()


def test_foreign_or_missing_classifier_files(tmp_path):
    with pytest.raises(CheckpointError, match="classifier file not found"):
        load_classifier(str(tmp_path / "none.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="not a readable classifier file"):
        load_classifier(str(tmp_path / "junk.pt"))
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an xraystyle classifier"):
        load_classifier(str(tmp_path / "other.pt"))
