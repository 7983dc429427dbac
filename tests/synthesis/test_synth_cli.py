import csv
import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from tests.synthesis.helpers import write_canary_dicom, write_png
from xraystyle.cli import app
from xraystyle.cohorts.manifest import write_manifest

runner = CliRunner()
NAME = re.compile(r"^src-[0-9a-f]{8}_to-effusion_(z\d+|ref-[0-9a-f]{8})$")


def synth(*args):
    return runner.invoke(app, ["synth", "--no-progress", *map(str, args)])


def _index(out):
    with open(out / "index.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_latent_png_outputs_named_by_hash_with_sidecars(checkpoint, tmp_path):
    src = write_png(tmp_path / "in" / "patient_scan.png")
    out = tmp_path / "out"
    r = synth("--checkpoint", checkpoint, "--source", src, "--target", "effusion", "--n-styles", 3, "--out", out)
    assert r.exit_code == 0, r.output
    stems = sorted(p.stem for p in out.glob("*.png"))
    assert len(stems) == 3 and all(NAME.match(s) for s in stems)
    assert [s[-2:] for s in stems] == ["z0", "z1", "z2"]
    rows = _index(out)
    assert [r["output"] for r in rows] == [f"{stems[0][:-3]}_z{k}" for k in range(3)]
    assert "source" not in rows[0]  # no input paths without --keep-source-names
    with Image.open(out / f"{stems[0]}.png") as im:
        assert im.mode == "I;16" and im.size == (32, 32)
        assert im.text["Description"] == "SYNTHETIC - research use, not for diagnosis"
        assert "patient_scan" not in json.dumps(im.text)
    side = json.loads((out / f"{stems[1]}.json").read_text())
    for key in ("checkpoint_sha256", "config_sha256", "step", "seed", "target", "style_index", "mode",
                "source_sha256", "reference_sha256", "xraystyle_version"):
        assert key in side
    assert side["mode"] == "latent" and side["style_index"] == 1 and side["seed"] == 0 and side["step"] == 4
    assert side["source_sha256"].startswith(stems[0][4:12])
    assert "patient_scan" not in (out / f"{stems[1]}.json").read_text()


def test_keep_source_names_adds_the_input_path_to_the_index(checkpoint, tmp_path):
    src = write_png(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    r = synth("--checkpoint", checkpoint, "--source", src, "--target", "normal", "--out", out, "--keep-source-names")
    assert r.exit_code == 0, r.output
    assert _index(out)[0]["source"] == str(src)


@pytest.mark.parametrize("fmt,suffixes", [("png", {".png", ".json"}), ("dcm", {".dcm", ".json"}),
                                          ("both", {".png", ".dcm", ".json"})])
def test_formats(checkpoint, tmp_path, fmt, suffixes):
    out = tmp_path / "out"
    r = synth("--checkpoint", checkpoint, "--source", write_png(tmp_path / "a.png"), "--target", "effusion",
              "--out", out, "--format", fmt, "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert {p.suffix for p in out.iterdir() if p.name != "index.csv"} == suffixes


def test_folder_source_skips_unreadable_files_by_position_and_exits_1(checkpoint, tmp_path):
    folder = tmp_path / "in"
    write_png(folder / "a.png", seed=1)
    write_png(folder / "sub" / "c.png", seed=2)
    (folder / "Smith_Jane_b.dcm").write_text("not a dicom")
    (folder / "notes.txt").write_text("ignored, not an image")
    (folder / ".hidden.png").write_bytes(b"junk")
    out = tmp_path / "out"
    r = synth("--checkpoint", checkpoint, "--source", folder, "--target", "effusion", "--out", out)
    assert r.exit_code == 1
    assert len(list(out.glob("*.png"))) == 2
    assert "skipped input 1 of 3" in r.stderr  # sorted: Smith_Jane_b.dcm, a.png, sub/c.png
    assert "Smith_Jane" not in r.output + r.stderr
    assert r.stderr.strip().splitlines()[-1] == "xraystyle: error: 1 of 3 input(s) could not be read (listed above)"


def test_manifest_source(checkpoint, tmp_path):
    root = tmp_path / "cohort"
    for i in range(3):
        write_png(root / "img" / f"im{i}.png", seed=i, bright_bottom=bool(i % 2))
    rows = [{"path": f"img/im{i}.png", "patient_id": f"p{i}", "study_id": "", "view": "PA", "split": "test",
             "effusion": i % 2} for i in range(3)]
    manifest = write_manifest(pd.DataFrame(rows), root / "manifest.csv").path
    out = tmp_path / "out"
    r = synth("--checkpoint", checkpoint, "--source", manifest, "--target", "normal", "--out", out,
              "--n-styles", 2, "--batch-size", 2)
    assert r.exit_code == 0, r.output
    assert len(list(out.glob("*.png"))) == 6 and len(_index(out)) == 6


def test_byte_identical_across_runs(checkpoint, tmp_path):
    src = tmp_path / "in"
    write_png(src / "a.png", seed=3)
    write_canary_dicom(src / "b.dcm")
    outs = [tmp_path / "o1", tmp_path / "o2", tmp_path / "o3"]
    for out, bs in zip(outs, (2, 2, 1)):
        r = synth("--checkpoint", checkpoint, "--source", src, "--target", "effusion", "--n-styles", 2,
                  "--seed", 7, "--format", "both", "--out", out, "--batch-size", bs)
        assert r.exit_code == 0, r.output
    names = sorted(p.name for p in outs[0].iterdir())
    assert names == sorted(p.name for p in outs[1].iterdir()) and len(names) == 13
    for name in names:
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    # Another batch size: the same images up to float rounding in the convolutions.
    for p in outs[0].glob("*.png"):
        a, b = (np.asarray(Image.open(d / p.name), dtype=np.int64) for d in (outs[0], outs[2]))
        assert np.abs(a - b).max() <= 16
    other = tmp_path / "o4"
    synth("--checkpoint", checkpoint, "--source", src, "--target", "effusion", "--n-styles", 2, "--seed", 8,
          "--out", other)
    differs = [(outs[0] / p.name).read_bytes() != p.read_bytes() for p in other.glob("*.png")]
    assert len(differs) == 4 and all(differs)


def test_restore_geometry_gives_the_source_shape_and_levels(checkpoint, tmp_path):
    png = write_png(tmp_path / "a.png", shape=(50, 30))
    dcm = write_canary_dicom(tmp_path / "b.dcm")
    out = tmp_path / "out"
    for src in (png, dcm):
        r = synth("--checkpoint", checkpoint, "--source", src, "--target", "effusion", "--out", out,
                  "--format", "both", "--restore-geometry")
        assert r.exit_code == 0, r.output
    import pydicom

    shapes = {}
    for p in out.glob("*.png"):
        with Image.open(p) as im:
            shapes[p.stem] = im.size[::-1]
    dicoms = {p.stem: pydicom.dcmread(p) for p in out.glob("*.dcm")}
    assert sorted(shapes.values()) == [(48, 40), (50, 30)]
    for stem, ds in dicoms.items():
        assert (ds.Rows, ds.Columns) == shapes[stem]
    side = [json.loads(p.read_text()) for p in out.glob("*.json")]
    by_shape = {(s["dicom"]["rows"], s["dicom"]["columns"]): s for s in side}
    assert by_shape[(48, 40)]["dicom"]["intensity"] == "source-levels"
    assert by_shape[(48, 40)]["dicom"]["bits"] == 12
    assert by_shape[(48, 40)]["dicom"]["pixel_spacing"] == [0.143, 0.143]  # the source's own


def test_size_resamples_and_scales_pixel_spacing(checkpoint, tmp_path):
    out = tmp_path / "out"
    r = synth("--checkpoint", checkpoint, "--source", write_canary_dicom(tmp_path / "b.dcm"), "--target", "effusion",
              "--out", out, "--format", "dcm", "--size", 64)
    assert r.exit_code == 0, r.output
    import pydicom

    ds = pydicom.dcmread(next(out.glob("*.dcm")))
    assert (ds.Rows, ds.Columns) == (64, 64)
    # 48 rows -> 32 px canvas -> 64 px: spacing * 48 / 32 * 32 / 64
    assert float(ds.PixelSpacing[0]) == pytest.approx(0.143 * 48 / 64, rel=1e-4)


@pytest.mark.parametrize("ref_kind", ["dcm", "png"])
def test_reference_guided(checkpoint, tmp_path, ref_kind):
    ref = write_canary_dicom(tmp_path / "ref.dcm") if ref_kind == "dcm" else write_png(tmp_path / "ref.png", bright_bottom=True)
    out = tmp_path / "out"
    r = synth("--checkpoint", checkpoint, "--source", write_png(tmp_path / "a.png"), "--reference", ref,
              "--reference-domain", "effusion", "--out", out)
    assert r.exit_code == 0, r.output
    (png,) = out.glob("*.png")
    assert NAME.match(png.stem) and "_ref-" in png.stem
    side = json.loads(png.with_suffix(".json").read_text())
    assert side["mode"] == "reference" and side["reference_sha256"].startswith(png.stem[-8:])
    assert side["seed"] is None and side["style_index"] is None


def test_reference_domain_from_a_manifest(checkpoint, tmp_path):
    root = tmp_path / "refs"
    write_png(root / "img" / "r0.png", bright_bottom=True)
    rows = [{"path": "img/r0.png", "patient_id": "p0", "study_id": "", "view": "PA", "split": "train", "effusion": 1}]
    manifest = write_manifest(pd.DataFrame(rows), root / "manifest.csv").path
    out = tmp_path / "out"
    r = synth("--checkpoint", checkpoint, "--source", write_png(tmp_path / "a.png"), "--reference",
              root / "img" / "r0.png", "--reference-manifest", manifest, "--out", out)
    assert r.exit_code == 0, r.output
    assert "_to-effusion_ref-" in next(out.glob("*.png")).stem
    r = synth("--checkpoint", checkpoint, "--source", write_png(tmp_path / "a.png"), "--reference",
              write_png(tmp_path / "unlisted.png"), "--reference-manifest", manifest, "--out", out)
    assert r.exit_code == 1 and "not listed in the --reference-manifest" in r.stderr


def _one_line_error(r, *needles):
    assert r.exit_code == 1, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xraystyle: error: "), r.stderr
    assert "Traceback" not in r.output + r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_bad_checkpoints(checkpoint, tmp_path):
    src = write_png(tmp_path / "a.png")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    for ckpt, needle in ((garbage, "checkpoint"), (tmp_path / "missing.pt", "cannot read checkpoint"),
                         (foreign, "not an xraystyle checkpoint")):
        r = synth("--checkpoint", ckpt, "--source", src, "--target", "effusion", "--out", tmp_path / "o")
        _one_line_error(r, ckpt.name, needle)


def test_bad_options_and_inputs(checkpoint, tmp_path):
    src = write_png(tmp_path / "a.png")
    bad_ref = tmp_path / "Roe_Richard.dcm"
    bad_ref.write_text("hello")
    base = ["--checkpoint", checkpoint, "--source", src, "--out", tmp_path / "o"]
    _one_line_error(synth(*base, "--target", "pneumothorax"), "unknown target domain 'pneumothorax'")
    _one_line_error(synth(*base, "--target", "effusion", "--n-styles", 0), "--n-styles must be at least 1")
    _one_line_error(synth(*base, "--reference", bad_ref, "--reference-domain", "effusion"), "reference image:")
    assert "Roe_Richard" not in synth(*base, "--reference", bad_ref, "--reference-domain", "effusion").stderr
    _one_line_error(synth(*base, "--reference", src), "--reference needs --reference-domain")
    _one_line_error(synth(*base, "--reference", src, "--reference-domain", "cardiomegaly"), "unknown target domain")
    _one_line_error(synth(*base, "--target", "effusion", "--reference", src, "--reference-domain", "effusion"),
                    "either --target")
    r = synth(*base, "--target", "effusion", "--format", "jpg")  # a usage error: exit 2 (tests/cli/test_cli_choices.py)
    assert r.exit_code == 2 and "'jpg' is not one of 'png', 'dcm', 'both'" in r.stderr
    if not torch.cuda.is_available():
        _one_line_error(synth(*base, "--target", "effusion", "--device", "cuda"), "CUDA is not available")
    _one_line_error(synth(*base, "--target", "effusion", "--size", 64, "--restore-geometry"), "exclude each other")
    _one_line_error(synth("--checkpoint", checkpoint, "--source", tmp_path / "Doe_Jane.png", "--target", "effusion",
                          "--out", tmp_path / "o"), "--source: no such file or folder")
    assert "Doe_Jane" not in synth("--checkpoint", checkpoint, "--source", tmp_path / "Doe_Jane.png", "--target",
                                   "effusion", "--out", tmp_path / "o").stderr


def test_png_levels_follow_the_model_output(model, tmp_path):
    """Full-range export: [-1, 1] -> 0..65535, monotone (air dark, bone bright)."""
    from xraystyle.reporting.export import render
    from xraystyle.synthesis import SynthResult, load_source

    src = load_source(write_png(tmp_path / "a.png"), model.preprocess)
    ramp = torch.linspace(-1, 1, 32).repeat(32, 1)[None]
    rendered = render(SynthResult(src, "effusion", "latent", 0, ramp, 0), bits=16)
    row = rendered.stored[0].astype(int)
    assert row[0] == 0 and row[-1] == 65535 and np.all(np.diff(row) > 0)
