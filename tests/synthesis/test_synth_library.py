import numpy as np
import pytest
import torch

from tests.io.conftest import build_dicom, chest_anatomy, save
from tests.synthesis.helpers import write_png
from xraystyle.errors import InputError, XrayStyleError
from xraystyle.synthesis import ReferenceImage, list_sources, load_source, pixel_sha256, style_latents, synthesize


def test_kth_style_does_not_depend_on_the_number_of_styles():
    a, b = style_latents(3, 2, 8), style_latents(3, 5, 8)
    assert torch.equal(a, b[:2]) and not torch.equal(b[0], b[1])
    assert not torch.equal(style_latents(4, 1, 8)[0], a[0])
    with pytest.raises(XrayStyleError, match="at least 1"):
        style_latents(0, 0, 8)


def test_pixel_hash_ignores_the_header(tmp_path):
    pixels = chest_anatomy(16, 16)
    a = save(build_dicom(pixels, PatientName="A^B"), tmp_path / "a.dcm")
    b = save(build_dicom(pixels, canaries=False), tmp_path / "b.dcm")
    from xraystyle.io import read_xray

    assert pixel_sha256(read_xray(a)[0]) == pixel_sha256(read_xray(b)[0])
    assert pixel_sha256(np.zeros((2, 3))) != pixel_sha256(np.zeros((3, 2)))


def test_list_sources_folder_file_and_missing(tmp_path):
    write_png(tmp_path / "d" / "b.png")
    write_png(tmp_path / "d" / "a" / "x.png")
    (tmp_path / "d" / "manifest.csv").write_text("path\n")
    (tmp_path / "d" / ".DS_Store").write_bytes(b"\0")
    specs = list_sources(tmp_path / "d")
    assert [s.label for s in specs] == [str(tmp_path / "d" / "a" / "x.png"), str(tmp_path / "d" / "b.png")]
    assert [s.position for s in specs] == [1, 2]
    assert len(list_sources(tmp_path / "d" / "b.png")) == 1
    with pytest.raises(InputError, match="no such file"):
        list_sources(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image files"):
        list_sources(tmp_path / "empty")


def test_synthesize_modes_and_errors(model, tmp_path):
    src = load_source(write_png(tmp_path / "a.png"), model.preprocess)
    assert src.image.shape == (1, 32, 32) and src.geometry["original_shape"] == (40, 36)
    results = list(synthesize(model, [src, src], target="effusion", n_styles=2, batch_size=1))
    assert [(r.style_index, r.mode) for r in results] == [(0, "latent"), (1, "latent")] * 2
    assert torch.equal(results[0].image, results[2].image)  # same source, same style
    assert results[0].image.shape == (1, 32, 32) and float(results[0].image.abs().max()) <= 1
    with pytest.raises(XrayStyleError, match="unknown target domain"):
        list(synthesize(model, [src], target="nodule"))
    with pytest.raises(XrayStyleError, match="target domain or a reference"):
        list(synthesize(model, [src]))
    with pytest.raises(XrayStyleError, match="batch-size"):
        list(synthesize(model, [src], target="normal", batch_size=0))


def test_fixed_normal_style_gives_one_answer_for_normal_and_diversity_elsewhere(checkpoint, tmp_path):
    from xraystyle.trained import load_trained_model

    model = load_trained_model(checkpoint)
    model.args.model.normal_style = "fixed"  # as trained with model.normal_style: fixed
    src = load_source(write_png(tmp_path / "a.png"), model.preprocess)
    normal = [r.image for r in synthesize(model, [src], target="normal", n_styles=3)]
    assert torch.equal(normal[0], normal[1]) and torch.equal(normal[0], normal[2])
    effusion = [r.image for r in synthesize(model, [src], target="effusion", n_styles=2)]
    assert not torch.equal(effusion[0], effusion[1])
    ref = load_source(write_png(tmp_path / "r.png", seed=5), model.preprocess)
    by_ref = next(synthesize(model, [src], reference=ReferenceImage(ref.image, "normal", ref.sha256))).image
    assert torch.equal(by_ref, normal[0])  # a normal reference gives the same deterministic style
