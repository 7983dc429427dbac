"""Ideal counterfactuals (xraystyle.phantom.ideal): truth rows re-render their stored pixels
exactly, findings are added / removed on the same patient, physics variants change the image and
nothing else, and bad truth tables are refused with one line."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from scipy import ndimage as ndi

from xraystyle.errors import ConfigError
from xraystyle.phantom.findings import FINDINGS, draw_finding_params
from xraystyle.phantom.generator import case_seed, case_streams, generate_phantom_cohort, render_phantom
from xraystyle.phantom.ideal import (
    case_row,
    ideal_counterfactual,
    physics_variant,
    read_truth,
    rerender,
    stored,
)
from xraystyle.phantom.physics import quantize


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ideal")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XRAYSTYLE_CACHE", str(root / "cache"))
        generate_phantom_cohort(root / "png", 16, size=48, seed=11, prevalence={f: 0.5 for f in FINDINGS})
        generate_phantom_cohort(root / "dcm", 8, size=32, seed=4, fmt="dcm", findings=("effusion", "nodule"),
                                prevalence={"effusion": 0.5, "nodule": 0.5})
    return root


@pytest.fixture(scope="module")
def rows(cohorts):
    out = read_truth(cohorts / "png")
    for f in FINDINGS:  # the cohort has rows with and without every finding
        assert 0 < sum(r.labels[f] for r in out) < len(out), f
    return out


def _file_pixels(path):
    if path.suffix == ".png":
        return np.asarray(Image.open(path))
    return pydicom.dcmread(path).pixel_array


def _mask(path):
    return np.asarray(Image.open(path)) > 0


@pytest.mark.parametrize("fmt", ["png", "dcm"])
def test_stored_equals_the_written_file_for_every_row(cohorts, fmt):
    rows = read_truth(cohorts / fmt / "manifest.csv")
    assert [r.path for r in rows] == list(pd.read_csv(cohorts / fmt / "manifest.csv").path)
    assert fmt != "dcm" or {r.physics["monochrome1"] for r in rows} == {0, 1}  # both encodings seen
    for r in rows:
        pixels = stored(r)
        assert pixels.dtype == np.uint16
        assert np.array_equal(pixels, _file_pixels(r.image_file)), r.path
        assert np.array_equal(stored(r, encoded=False), quantize(rerender(r).image, r.physics["bit_depth"]))


def test_rerender_gives_masks_lung_masks_and_truth_as_written(rows):
    for r in rows:
        s = rerender(r)
        assert s.labels == dict(r.labels)
        for f in FINDINGS:
            if r.labels[f]:
                assert np.array_equal(s.masks[f], _mask(r.mask_file(f))), (r.path, f)
            else:
                assert r.mask_file(f) is None and not s.masks[f].any()
        for side in ("lung_right", "lung_left"):  # lung masks: written, and re-derived exactly
            assert np.array_equal(s.anatomy_masks[side], _mask(r.mask_file(side))), (r.path, side)
            assert s.anatomy_masks[side].any()
        for key, value in r.truth.items():
            assert s.truth[key] == value, (r.path, key)
        assert s.finding_params.keys() == r.params.keys()


def test_truth_table_records_every_renderer_input(rows, cohorts):
    truth = pd.read_csv(cohorts / "png" / "phantom_truth.csv", keep_default_na=False)
    assert {"cohort_seed", "case_index", "size", "mask_lung_right", "mask_lung_left", "param_effusion_density",
            "param_nodule_u", "param_nodule_v", "param_cardiomegaly_ctr", "param_pneumothorax_lucency"} <= set(truth)
    for r in rows:
        # the cohort's own draws: the same as the case's streams give
        streams = case_streams(11, r.case_index)
        for f in FINDINGS:
            drawn = draw_finding_params(f, streams[f])
            if r.labels[f]:
                assert r.params[f] == drawn
        assert r.seed.spawn_key == case_seed(11, r.case_index).spawn_key
        # case_row: the same row without files
        c = case_row(11, r.case_index, 48, {f: True for f in r.present})
        assert (dict(c.params), dict(c.physics), c.lung_template) == (dict(r.params), dict(r.physics), r.lung_template)
        assert np.array_equal(stored(c), stored(r))


def test_remove_everything_then_add_it_back(rows):
    r = next(r for r in rows if len(r.present) >= 2)
    clean = ideal_counterfactual(r, remove=r.present)
    plain = render_phantom(r.seed, r.size, {}, dict(r.physics))
    assert np.array_equal(clean.image, plain.image)
    assert not any(m.any() for m in clean.masks.values()) and not any(clean.labels.values())
    back = ideal_counterfactual(clean_row := case_row(r.cohort_seed, r.case_index, r.size), add=r.params,
                                physics=dict(r.physics))
    assert clean_row.present == ()
    assert np.array_equal(back.image, rerender(r).image)
    assert np.array_equal(quantize(back.image, r.physics["bit_depth"]), stored(r, encoded=False))
    # a no-op counterfactual is the row itself
    assert np.array_equal(ideal_counterfactual(r).image, rerender(r).image)


def test_added_left_effusion_changes_only_the_left_lung(rows):
    r = next(r for r in rows if not r.labels["effusion"] and not r.labels["pneumothorax"])
    before = ideal_counterfactual(r, physics=None)  # neutral physics: no blur, scatter or noise
    after = ideal_counterfactual(r, add={"effusion": {"side": "left"}}, physics=None)
    mask = after.masks["effusion"]
    lung_left = after.anatomy_masks["lung_left"]
    assert mask.any() and not (mask & ~lung_left).any()
    assert after.truth["effusion_side"] == "left" and after.labels["effusion"] == 1
    changed = after.image != before.image
    assert changed[mask].all()  # the fluid itself
    midline = after.anatomy["midline"] * r.size
    left_half = np.arange(r.size)[None, :] + 0.5 >= midline
    assert not (changed & ~left_half).any()  # the patient's right (image left) is untouched
    assert not (changed & ~ndi.binary_dilation(lung_left, iterations=2)).any()  # lung (+ its soft border)
    for f in ("nodule", "cardiomegaly"):  # other findings and the anatomy stay put
        assert np.array_equal(after.masks[f], before.masks[f])
    assert np.array_equal(after.anatomy_masks["heart"], before.anatomy_masks["heart"])


def test_added_finding_is_the_one_this_patient_would_have_had(rows):
    r = next(r for r in rows if not r.labels["nodule"])
    own = draw_finding_params("nodule", case_streams(r.cohort_seed, r.case_index)["nodule"])
    assert ideal_counterfactual(r, add={"nodule": True}).finding_params["nodule"] == own
    bigger = ideal_counterfactual(r, add={"nodule": {"radius": 0.08}})
    assert bigger.finding_params["nodule"] == {**own, "radius": 0.08}
    assert bigger.truth["nodule_radius"] == 0.08 and bigger.masks["nodule"].sum() > 20
    # changing an attribute of a finding the row has keeps its other attributes
    w = next(r for r in rows if r.labels["effusion"])
    moved = ideal_counterfactual(w, add={"effusion": {"volume": 0.6}})
    assert moved.finding_params["effusion"] == {**w.params["effusion"], "volume": 0.6}


def test_effusion_volume_is_monotonic(rows):
    r = next(r for r in rows if not r.labels["effusion"] and not r.labels["cardiomegaly"])
    areas = [int(ideal_counterfactual(r, add={"effusion": {"side": "left", "volume": v}}).masks["effusion"].sum())
             for v in (0.1, 0.25, 0.4, 0.55, 0.7)]
    assert all(a < b for a, b in zip(areas, areas[1:])), areas


def test_cardiomegaly_ctr_and_pneumothorax_side_as_asked(rows):
    r = next(r for r in rows if not r.labels["cardiomegaly"] and not r.labels["pneumothorax"])
    for ctr in (0.56, 0.62, 0.7):
        s = ideal_counterfactual(r, add={"cardiomegaly": {"ctr": ctr}})
        assert abs(s.truth["ctr"] - ctr) <= 1.5 / s.truth["thorax_width_px"]
    for side in ("right", "left"):
        s = ideal_counterfactual(r, add={"pneumothorax": {"side": side, "rim": 0.25}})
        assert s.masks["pneumothorax"].any() and not (s.masks["pneumothorax"] & ~s.anatomy_masks[f"lung_{side}"]).any()


def test_physics_variants_change_the_image_not_the_masks(rows):
    r = next(r for r in rows if r.labels["effusion"])
    own = rerender(r)
    v0, v1 = physics_variant(r, 0), physics_variant(r, 1)
    assert v0 == physics_variant(r, 0) and v0 != v1 and v0 != dict(r.physics) and v0["monochrome1"] == 0
    other = ideal_counterfactual(r, physics=v0)
    assert other.physics == v0
    assert not np.array_equal(other.image, own.image)
    for f in FINDINGS:
        assert np.array_equal(other.masks[f], own.masks[f])
    for k in own.anatomy_masks:
        assert np.array_equal(other.anatomy_masks[k], own.anatomy_masks[k])
    assert np.allclose(ideal_counterfactual(r, physics=None).image, np.clip(own.attenuation, 0, 1), atol=1e-5)
    quiet = ideal_counterfactual(r, physics={"noise": 0.0})  # a partial mapping: over the row's own
    assert {k: v for k, v in quiet.physics.items() if k != "noise"} == {k: v for k, v in r.physics.items()
                                                                         if k != "noise"}
    assert ideal_counterfactual(r, size=64).image.shape == (64, 64)


@pytest.mark.parametrize("kwargs, match", [
    ({"add": {"atelectasis": True}}, "unknown finding 'atelectasis'"),
    ({"remove": ["atelectasis"]}, "unknown finding 'atelectasis'"),
    ({"add": {"effusion": {"volume": 1.7}}}, r"effusion: volume must be a number in \(0, 1\]"),
    ({"add": {"effusion": {"side": "middle"}}}, "effusion: side must be one of"),
    ({"add": {"nodule": {"diameter": 0.1}}}, "nodule: unknown parameter"),
    ({"add": {"cardiomegaly": {"ctr": 0.45}}}, r"ctr must be in \(0.5, 0.9\)"),
    ({"add": {"effusion": False}}, "use remove="),
    ({"add": {"nodule": True}, "remove": "nodule"}, "both added and removed"),
    ({"physics": "drawn"}, "physics must be 'own'"),
    ({"physics": {"kvp": 90}}, "unknown key"),
    ({"size": 16}, "size must be an integer in 32..1024"),
])
def test_bad_counterfactual_arguments(rows, kwargs, match):
    with pytest.raises(ConfigError, match=match) as e:
        ideal_counterfactual(rows[0], **kwargs)
    assert "\n" not in str(e.value)


def _broken_copy(src, dst, edit_truth=None, edit_manifest=None):
    dst.mkdir()
    for name, edit in (("phantom_truth.csv", edit_truth), ("manifest.csv", edit_manifest)):
        if edit is None:
            shutil.copy(src / name, dst / name)
        else:
            t = pd.read_csv(src / name, dtype=str, keep_default_na=False)
            t = edit(t)
            t.to_csv(dst / name, index=False)
    return dst


def _first(t, col):
    return int(np.flatnonzero(t[col] != "")[0])


def _set_first(col, value):
    def edit(t):
        t.loc[_first(t, col), col] = value
        return t
    return edit


@pytest.mark.parametrize("edit_truth, edit_manifest, match", [
    (lambda t: t.drop(columns=["param_effusion_density"]), None,
     r"phantom_truth.csv: missing column\(s\) param_effusion_density"),
    (lambda t: t.drop(columns=["cohort_seed", "case_index", "size"]), None,
     "missing column.*cohort_seed, case_index, size .*older generator"),
    (None, lambda m: m.drop(columns=["phys_gamma"]), r"manifest.csv: missing column\(s\) phys_gamma"),
    (lambda t: t.assign(param_atelectasis_size=""), None, "unknown finding"),
    (None, lambda m: m.assign(mask_atelectasis=""), "unknown finding"),
    (_set_first("param_effusion_volume", "1.7"), None,
     r"phantom_truth.csv line \d+ \(images/phantom-\d+\.png\): param_effusion_\*: effusion: volume must be"),
    (_set_first("param_nodule_side", "middle"), None, r"line \d+ .*nodule: side must be one of right, left"),
    (_set_first("param_nodule_u", "x"), None, r"line \d+ .*nodule: u must be a number"),
    (_set_first("param_effusion_density", ""), None, r"line \d+ .*effusion is 1 but param_effusion_density blank"),
    (_set_first("cohort_seed", "-3"), None, r"line \d+ .*cohort_seed must be >= 0"),
    (_set_first("size", "8"), None, r"line \d+ .*size must be in 32..1024"),
    (None, _set_first("phys_scatter", "1.5"), r"line \d+ .*scatter must be in \[0, 1\)"),
    (None, _set_first("effusion", "2"), r"line \d+ .*label effusion must be in 0..1"),
    (lambda t: t.drop(index=3), None, r"manifest.csv line 5: 'images/phantom-00003.png' has no row"),
])
def test_bad_truth_tables_are_refused_in_one_line(cohorts, tmp_path, edit_truth, edit_manifest, match):
    folder = _broken_copy(cohorts / "png", tmp_path / "broken", edit_truth, edit_manifest)
    with pytest.raises(ConfigError, match=match) as e:
        read_truth(folder)
    assert "\n" not in str(e.value)


def test_missing_files_and_foreign_lung_templates(cohorts, rows, tmp_path):
    (tmp_path / "b").mkdir()
    shutil.copy(cohorts / "png" / "manifest.csv", tmp_path / "b")
    with pytest.raises(ConfigError, match="phantom_truth.csv: no such file"):
        read_truth(tmp_path / "b")
    r = rows[0]
    foreign = type(r)(**{**r.__dict__, "lung_template": "not-a-template.png"})
    with pytest.raises(ConfigError, match="cannot be re-rendered exactly"):
        rerender(foreign)
