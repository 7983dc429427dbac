"""Phantom cohorts: determinism, manifest layout, label / mask consistency, validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from xraystyle.errors import ConfigError
from xraystyle.phantom.generator import FINDINGS, generate_phantom_cohort, render_phantom


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def png_cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("png")
    generate_phantom_cohort(out, 12, size=64, seed=3, prevalence={f: 0.5 for f in FINDINGS})
    return out


@pytest.mark.parametrize("fmt", ["png", "dcm"])
def test_same_seed_gives_identical_bytes(tmp_path, fmt):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_phantom_cohort(a, 4, size=48, seed=7, fmt=fmt, prevalence={f: 0.5 for f in FINDINGS})
    generate_phantom_cohort(b, 4, size=48, seed=7, fmt=fmt, prevalence={f: 0.5 for f in FINDINGS})
    generate_phantom_cohort(c, 4, size=48, seed=8, fmt=fmt, prevalence={f: 0.5 for f in FINDINGS})
    files_a, files_b, files_c = _files(a), _files(b), _files(c)
    assert files_a == files_b
    assert any(k.startswith("masks/") for k in files_a)
    images = [k for k in files_a if k.startswith("images/")]
    assert len(images) == 4 and all(k.endswith(f".{fmt}") for k in images)
    assert all(files_a[k] != files_c.get(k) for k in images)


def test_worker_count_does_not_change_output(tmp_path):
    # workers first: they decode lung templates themselves, from their own zip handle
    generate_phantom_cohort(tmp_path / "two", 6, size=32, seed=5, workers=2)
    generate_phantom_cohort(tmp_path / "one", 6, size=32, seed=5, workers=1)
    assert _files(tmp_path / "one") == _files(tmp_path / "two")


def test_image_content_does_not_depend_on_cohort_size(tmp_path):
    generate_phantom_cohort(tmp_path / "small", 2, size=32, seed=1)
    generate_phantom_cohort(tmp_path / "big", 5, size=32, seed=1)
    for name in ("images/phantom-00000.png", "images/phantom-00001.png"):
        assert (tmp_path / "small" / name).read_bytes() == (tmp_path / "big" / name).read_bytes()


def test_manifest_layout(png_cohort):
    m = pd.read_csv(png_cohort / "manifest.csv", keep_default_na=False)
    head = ["path", "patient_id", "study_id", "view", "split", "sex", "age", *FINDINGS]
    assert list(m.columns[: len(head)]) == head
    assert [c for c in m.columns if c.startswith("mask_")] == [f"mask_{f}" for f in FINDINGS]
    phys = [c for c in m.columns if c.startswith("phys_")]
    assert {"phys_exposure", "phys_contrast", "phys_gamma", "phys_noise", "phys_scatter", "phys_bit_depth",
            "phys_monochrome1"} <= set(phys)
    assert m.patient_id.is_unique and m.study_id.is_unique
    assert m.patient_id.str.fullmatch(r"phantom-\d{5}").all()
    assert set(m.view) == {"PA"} and set(m.split) <= {"train", "val", "test"}
    assert (m.split == "train").sum() == 10 and (m.split == "val").sum() == 1 and (m.split == "test").sum() == 1
    assert set(m.sex) <= {"F", "M"} and m.age.between(18, 90).all()
    for rel in m.path:
        assert not Path(rel).is_absolute() and (png_cohort / rel).is_file()
    truth = pd.read_csv(png_cohort / "phantom_truth.csv", dtype=str, keep_default_na=False)
    assert list(truth.columns[:5]) == ["path", "lung_template", "ctr", "heart_width_px", "thorax_width_px"]
    assert {"effusion_side", "effusion_volume", "nodule_radius", "pneumothorax_size"} <= set(truth.columns)
    assert list(truth.path) == list(m.path)
    assert all(v == "" or v.isdigit() for v in truth.effusion_area_px)  # integers stay integers


def test_mask_nonempty_exactly_when_label_is_one(png_cohort):
    m = pd.read_csv(png_cohort / "manifest.csv", keep_default_na=False)
    assert set(np.unique(m[list(FINDINGS)].to_numpy())) == {0, 1}
    for _, row in m.iterrows():
        for f in FINDINGS:
            if row[f] == 1:
                mask = np.asarray(Image.open(png_cohort / row[f"mask_{f}"]))
                assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
            else:
                assert row[f"mask_{f}"] == ""
                assert not (png_cohort / f"masks/{row.patient_id}_{f}.png").exists()
    masks = sorted(p.name for p in (png_cohort / "masks").iterdir())
    assert len(masks) == int(m[list(FINDINGS)].to_numpy().sum())


def test_png_is_16_bit_with_the_drawn_bit_depth(png_cohort):
    m = pd.read_csv(png_cohort / "manifest.csv")
    for _, row in m.head(4).iterrows():
        with Image.open(png_cohort / row.path) as im:
            assert im.mode == "I;16" and im.size == (64, 64)
            v = np.asarray(im).astype(np.int64)
        top = (1 << int(row.phys_bit_depth)) - 1
        stored = np.round(v * top / 65535)
        assert np.array_equal((stored * 65535 + top // 2) // top, v)  # exactly on the b-bit grid
        assert row.phys_monochrome1 == 0


def test_heart_mask_on_image_right_for_every_cardiomegaly(png_cohort):
    m = pd.read_csv(png_cohort / "manifest.csv", keep_default_na=False)
    truth = pd.read_csv(png_cohort / "phantom_truth.csv")
    assert (m.cardiomegaly == 1).sum() >= 2
    for (_, row), (_, t) in zip(m.iterrows(), truth.iterrows()):
        assert t.path == row.path
        if row.cardiomegaly == 1:
            heart = np.asarray(Image.open(png_cohort / row.mask_cardiomegaly)) > 0
            assert np.nonzero(heart)[1].mean() > 32
            assert t.ctr > 0.5
        else:
            assert 0.35 < t.ctr < 0.5


def test_prevalence_zero_and_one(tmp_path):
    man = generate_phantom_cohort(tmp_path, 6, size=32, findings=["effusion", "nodule"],
                                  prevalence={"effusion": 1.0, "nodule": 0.0})
    m = pd.read_csv(man, keep_default_na=False)
    assert (m.effusion == 1).all() and (m.nodule == 0).all()
    assert "cardiomegaly" not in m.columns and "mask_pneumothorax" not in m.columns


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n": 0}, "n must be"),
        ({"size": 31}, "size must be"),
        ({"size": 1025}, "size must be"),
        ({"findings": ["effusion", "atelectasis"]}, "unknown finding"),
        ({"findings": ["nodule", "nodule"]}, "twice"),
        ({"fmt": "jpg"}, "format must be"),
        ({"prevalence": {"nodule": 1.5}}, "prevalence of nodule"),
        ({"prevalence": {"edema": 0.2}}, "not among the findings"),
        ({"split": (0.5, 0.5, 0.5)}, "split"),
        ({"workers": 0}, "workers"),
        ({"seed": -1}, "seed"),
    ],
)
def test_invalid_arguments_raise_config_error(tmp_path, kwargs, match):
    args = {"n": 2, "size": 32, **kwargs}
    with pytest.raises(ConfigError, match=match):
        generate_phantom_cohort(tmp_path / "x", **args)
    assert not (tmp_path / "x").exists()


def test_manifest_passes_the_toolkit_validator(png_cohort):
    manifest = pytest.importorskip("xraystyle.cohorts.manifest")
    m = manifest.load_manifest(png_cohort / "manifest.csv")
    assert len(m) == 12 and m.findings == list(FINDINGS)


def test_yaml_definition_matches_the_generator_signature():
    import inspect

    import yaml

    spec = Path(__file__).resolve().parents[2] / "cohorts" / "phantom.yaml"
    data = yaml.safe_load(spec.read_text())
    assert data["source"] == "phantom"
    kwargs = {k: v for k, v in data.items() if k not in ("name", "description", "source")}
    inspect.signature(generate_phantom_cohort).bind(Path("."), **kwargs)
    assert 64 <= kwargs["size"] <= 128 and set(kwargs["findings"]) == set(FINDINGS)


def test_render_phantom_reproduces_cohort_images(png_cohort):
    """A cohort case re-rendered from its seed, labels and phys_* values gives the same pixels,
    so evaluations can re-render the same patient with other physics or findings."""
    from xraystyle.phantom.generator import case_seed
    from xraystyle.phantom.physics import quantize

    m = pd.read_csv(png_cohort / "manifest.csv", keep_default_na=False)
    for i in (0, 5):
        row = m.iloc[i]
        physics = {c[len("phys_"):]: row[c] for c in m.columns if c.startswith("phys_")}
        sample = render_phantom(case_seed(3, i), 64, {f: bool(row[f]) for f in FINDINGS}, physics)
        top = (1 << int(row.phys_bit_depth)) - 1
        stored = np.round(np.asarray(Image.open(png_cohort / row.path)).astype(np.float64) * top / 65535)
        assert np.array_equal(stored, quantize(sample.image, row.phys_bit_depth))
        for f in FINDINGS:
            if row[f]:
                assert np.array_equal(np.asarray(Image.open(png_cohort / row[f"mask_{f}"])) > 0, sample.masks[f])
