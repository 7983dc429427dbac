import numpy as np
import pytest
import torch

import xraystyle.io as xio
from xraystyle.errors import InputError, UnsupportedImageError
from xraystyle.io.meta import XrayMeta
from xraystyle.transforms import (
    IDENTITY,
    AugmentConfig,
    LoadXrayd,
    PreprocessConfig,
    collate_samples,
    eval_pipeline,
    preprocess_array,
    train_pipeline,
)

from .conftest import chest_like, to_np, write_png16

ALL_ON = AugmentConfig(exposure_prob=1, exposure_range=(-0.3, 0.3), contrast_prob=1, contrast_range=(0.6, 1.6),
                       gamma_prob=1, gamma_range=(0.5, 2.0), noise_prob=1, noise_range=(0.02, 0.05),
                       blur_prob=1, blur_range=(0.5, 1.5))


def test_load_gives_channel_first_image_mask_and_identifier_free_meta(tmp_path, fake_reader):
    raw = chest_like(30, 20).round().astype(np.uint16)
    raw[:, :3] = 0
    path = write_png16(tmp_path / "a.png", raw)
    d = LoadXrayd(reader_kwargs={"pad_value": 0})({"path": path, "label": 1})
    assert d["image"].shape == (1, 30, 20) and d["image"].dtype == np.float32
    assert d["valid_mask"].shape == (1, 30, 20) and d["valid_mask"].dtype == bool
    assert not d["valid_mask"][..., :3].any() and d["valid_mask"][..., 3:].all()
    assert d["meta"]["source_format"] == "png" and d["meta"]["valid_fraction"] == pytest.approx(17 / 20)
    assert d["path"] == str(path) and d["label"] == 1
    np.testing.assert_array_equal(d["image"][0], raw)


def test_load_rejects_non_2d_arrays(monkeypatch):
    monkeypatch.setattr(xio, "read_xray", lambda p: (np.zeros((3, 4, 4)), XrayMeta("png", 4, 4)), raising=False)
    with pytest.raises(UnsupportedImageError, match="2-D"):
        LoadXrayd()({"path": "vol.nii"})


def test_eval_pipeline_output_contract(tmp_path, fake_reader):
    path = write_png16(tmp_path / "a.png", chest_like(60, 40))
    d = eval_pipeline(PreprocessConfig(size=32))({"path": str(path)})
    img = d["image"]
    assert type(img) is torch.Tensor and img.dtype == torch.float32 and img.shape == (1, 32, 32)
    assert img.min() == -1 and 0.8 < img.max() <= 1 and "physics" not in d
    assert d["valid_mask"].dtype == torch.bool and d["geometry"]["original_shape"] == (60, 40)
    assert (img[..., :5] == -1).all()  # canvas padding of a portrait image is air


def test_eval_pipeline_respects_padding_mask(tmp_path, fake_reader):
    raw = chest_like(64, 64)
    raw[:, :16] = 65535  # bright padding would wreck the window if it were counted
    path = write_png16(tmp_path / "p.png", raw)
    d = eval_pipeline(PreprocessConfig(size=32), reader_kwargs={"pad_value": 65535})({"path": path})
    assert (d["image"][..., :8] == -1).all()
    assert d["window"]["high"] < 3000 and d["image"][..., 8:].max() > 0.8


def test_train_pipeline_records_physics_and_is_seed_deterministic(tmp_path, fake_reader):
    path = write_png16(tmp_path / "a.png", chest_like())
    cfg = PreprocessConfig(size=32)

    def run(seed):
        pipe = train_pipeline(cfg)
        pipe.set_random_state(seed)
        return [pipe({"path": path}) for _ in range(3)]

    a, b, c = run(11), run(11), run(12)
    for da, db in zip(a, b):
        assert set(da["physics"]) == set(IDENTITY)
        assert da["physics"] == db["physics"] and torch.equal(da["image"], db["image"])
    assert [d["physics"] for d in a] != [d["physics"] for d in c]
    assert all(-1 <= d["image"].min() and d["image"].max() <= 1 for d in a)


def test_pipeline_lets_reader_errors_through_unwrapped(monkeypatch):
    def broken(path, **kw):
        raise InputError(path, "not a DICOM file (no preamble)")

    monkeypatch.setattr(xio, "read_xray", broken, raising=False)
    with pytest.raises(InputError, match="bad.dcm: not a DICOM file"):
        eval_pipeline()({"path": "bad.dcm"})


def _left_right_score(img) -> float:
    """> 0 when the image's left half is brighter than its right half (the heart-like blob)."""
    a = to_np(img)[0]
    return float(a[:, : a.shape[1] // 2].mean() - a[:, a.shape[1] // 2:].mean())


def test_never_flips_with_all_augmentations_forced_on(tmp_path, fake_reader, kind):
    raw = chest_like(48, 40)
    path = write_png16(tmp_path / "asym.png", raw)
    ref = to_np(eval_pipeline(PreprocessConfig(size=32))({"path": path})["image"])[0]
    assert _left_right_score(ref[None]) > 0.1
    pipe = train_pipeline(PreprocessConfig(size=32, augment=ALL_ON))
    for seed in range(6):
        pipe.set_random_state(seed)
        out = pipe({"path": path})
        assert all(out["physics"][k] != IDENTITY[k] for k in IDENTITY)
        img = to_np(out["image"])[0]
        assert _left_right_score(img[None]) > 0
        keep = np.corrcoef(img.ravel(), ref.ravel())[0, 1]
        flip = np.corrcoef(img.ravel(), ref[:, ::-1].ravel())[0, 1]
        assert keep > 0.8 and keep > flip + 0.2
        arr = preprocess_array(kind(raw), None, PreprocessConfig(size=32, augment=ALL_ON), train=True, seed=seed)
        assert _left_right_score(arr["image"]) > 0 and arr["physics"] == out["physics"]


def test_preprocess_array_matches_file_pipeline_and_accepts_both_types(tmp_path, fake_reader, kind):
    raw = chest_like(50, 30).round()
    path = write_png16(tmp_path / "a.png", raw)
    cfg = PreprocessConfig(size=24)
    from_file = eval_pipeline(cfg)({"path": path})["image"]
    from_array = preprocess_array(kind(raw), None, cfg)
    torch.testing.assert_close(from_array["image"], from_file)
    assert "physics" not in from_array
    mask = np.ones_like(raw, dtype=bool)
    mask[:10] = False
    masked = preprocess_array(kind(raw[None]), kind(mask), cfg)
    assert (masked["image"][:, :4] == -1).all() and not masked["valid_mask"][:, :4].any()
    with pytest.raises(ValueError):
        preprocess_array(np.zeros((2, 4, 4)), None, cfg)


def test_real_reader_png_if_available(tmp_path):
    if not callable(getattr(xio, "read_xray", None)):
        pytest.skip("xraystyle.io.read_xray not written yet")
    path = write_png16(tmp_path / "real.png", chest_like(40, 30).round())
    d = eval_pipeline(PreprocessConfig(size=16))({"path": path})
    assert d["image"].shape == (1, 16, 16) and d["image"].max() > 0.5 and _left_right_score(d["image"]) > 0


def test_collate_samples_batches_pipeline_outputs_for_a_dataloader(tmp_path, fake_reader):
    import pickle

    paths = [write_png16(tmp_path / f"{i}.png", chest_like(40 + 8 * i, 32)) for i in range(3)]
    pipe = pickle.loads(pickle.dumps(train_pipeline(PreprocessConfig(size=16))))  # spawn-safe workers
    pipe.set_random_state(0)
    samples = [pipe({"path": p}) for p in paths]
    assert samples[0]["meta"]["pixel_spacing"] is None  # what default_collate cannot batch
    batch = collate_samples(samples)
    assert batch["image"].shape == (3, 1, 16, 16) and batch["valid_mask"].dtype == torch.bool
    assert batch["physics"]["gamma"].shape == (3,) and batch["geometry"]["original_shape"][0].tolist() == [40, 48, 56]
    assert [m["rows"] for m in batch["meta"]] == [40, 48, 56] and batch["path"] == [str(p) for p in paths]


def test_real_reader_dicom_monochrome1_with_padding_if_available(tmp_path):
    if not callable(getattr(xio, "read_xray", None)):
        pytest.skip("xraystyle.io.read_xray not written yet")
    pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    dense_left = chest_like(60, 48)  # bright (dense) blob on the left, MONOCHROME2 sense
    stored = (4000 - dense_left).round().astype(np.uint16)  # MONOCHROME1: dense = low
    stored[:, -8:] = 4095  # PixelPaddingValue strip on the right
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    fm.MediaStorageSOPInstanceUID = generate_uid()
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = fm
    ds.SOPClassUID, ds.SOPInstanceUID = fm.MediaStorageSOPClassUID, fm.MediaStorageSOPInstanceUID
    ds.Modality, ds.PhotometricInterpretation, ds.SamplesPerPixel = "DX", "MONOCHROME1", 1
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelPaddingValue = 4095
    ds.PixelData = stored.tobytes()
    path = tmp_path / "m1.dcm"
    ds.save_as(path, enforce_file_format=True)
    d = eval_pipeline(PreprocessConfig(size=32))({"path": path})
    img = d["image"][0].numpy()
    pad = ~d["valid_mask"][0].numpy()
    assert pad[:, -4:].all() and (img[pad] == -1).all()
    assert _left_right_score(d["image"]) > 0.1  # polarity fixed: dense tissue bright, on the left
    assert d["meta"]["valid_fraction"] == pytest.approx(40 / 48)
