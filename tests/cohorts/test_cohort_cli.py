"""`xraystyle cohort build / summary / check` through CliRunner, and cohort definitions."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from xraystyle.cli import app
from xraystyle.cohorts.check import check_manifest
from xraystyle.cohorts.definition import parse_definition, read_definition, resolve_cohort
from xraystyle.cohorts.manifest import load_manifest
from xraystyle.errors import ConfigError, ManifestError

from .test_cohort_sources import NIH_ROWS, make_folder, nih_csv

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    err = result.stderr.strip()
    assert err.startswith("xraystyle: error: ") and "\n" not in err and "Traceback" not in result.output, err
    for f in fragments:
        assert f in err, err
    return err


def test_build_and_summary(tmp_path):
    out = tmp_path / "m.csv"
    r = invoke("cohort", "build", "nih", "--csv", nih_csv(tmp_path), "--out", out, "--findings", "effusion",
               "--views", "all", "--split-seed", 3)
    assert r.exit_code == 0, r.output
    assert f"wrote {out}: 5 images, 4 patients" in r.stdout and "findings: effusion" in r.stdout
    r = invoke("cohort", "summary", out)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert any(l.split()[:2] == ["all", "5"] for l in lines)
    eff = [l.split() for l in lines if l.startswith("effusion")]
    assert len(eff) == 3 and sum(int(l[2]) for l in eff) == 2 and sum(int(l[3]) for l in eff) == 3
    assert any(l.split()[:1] == ["AP"] and l.split()[-1] == "2" for l in lines)
    assert "00000001" not in r.stdout  # counts only, no identifiers


@pytest.mark.parametrize("args, fragments", [
    (["nih", "--csv", "{tmp}/absent.csv"], ["absent.csv: file not found"]),
    (["nih", "--csv", "{csv}", "--split", "0.9,0.2,0.1"], ["split: fractions must sum to 1"]),
    (["nih", "--csv", "{csv}", "--findings", "efusion"], ["'efusion' not in the vocabulary"]),
    (["nih", "--csv", "{csv}", "--uncertain", "positive"], ["--uncertain applies to chexpert and mimic only"]),
    (["nih", "--csv", "{csv}", "--images", "{tmp}/nowhere"], ["nowhere: image folder not found"]),
    (["--csv", "{csv}"], ["give a SOURCE"]),
    (["mimic", "--csv", "{csv}"], ["needs --metadata"]),
])
def test_build_errors_are_one_line(tmp_path, args, fragments):
    csv = nih_csv(tmp_path)
    args = [a.format(csv=csv, tmp=tmp_path) for a in args]
    one_line_error(invoke("cohort", "build", *args, "--out", tmp_path / "m.csv"), *fragments)
    assert not (tmp_path / "m.csv").exists()


def test_summary_of_bad_manifest_is_one_line(tmp_path):
    bad = tmp_path / "m.csv"
    bad.write_text("path,patient_id,study_id,view,split\n../x.png,1,,,train\n")
    one_line_error(invoke("cohort", "summary", bad), "row 1: path:", "'..'")
    one_line_error(invoke("cohort", "summary", tmp_path / "none.csv"), "none.csv: file not found")
    one_line_error(invoke("cohort", "check", bad), "row 1: path:", "'..'")


def test_documented_cohort_yaml_path(tmp_path):
    images = make_folder(tmp_path / "data" / "nih", [f"images_00{i % 2 + 1}/images/{r.split(',')[0]}"
                                                      for i, r in enumerate(NIH_ROWS)])
    nih_csv(images)  # Data_Entry_2017_v2020.csv inside the image folder, as released
    out = tmp_path / "runs" / "m.csv"
    r = invoke("cohort", "build", "--cohort", REPO / "cohorts" / "nih-effusion.yaml", "--images", images, "--out", out)
    assert r.exit_code == 0, r.output
    m = load_manifest(out)
    assert m.findings == ["effusion", "no_finding"] and set(m.df["view"]) == {"PA"} and len(m) == 3
    assert all(m.resolve(p).is_file() for p in m.df["path"])
    # an explicit --csv wins over the YAML's file name; options override the YAML
    r = invoke("cohort", "build", "--cohort", REPO / "cohorts" / "nih-effusion.yaml", "--csv", nih_csv(tmp_path),
               "--views", "all", "--out", tmp_path / "m2.csv")
    assert r.exit_code == 0 and "5 images" in r.stdout
    one_line_error(invoke("cohort", "build", "chexpert", "--cohort", REPO / "cohorts" / "nih-effusion.yaml",
                          "--out", tmp_path / "m3.csv"), "defines source nih, but the command names chexpert")


def test_cohort_yaml_csv_not_found_is_one_line(tmp_path):
    one_line_error(invoke("cohort", "build", "--cohort", REPO / "cohorts" / "nih-effusion.yaml",
                          "--images", tmp_path, "--out", tmp_path / "m.csv"),
                   "source file 'Data_Entry_2017_v2020.csv' not found")


@pytest.mark.parametrize("yaml_file", sorted((REPO / "cohorts").glob("*.yaml")), ids=lambda p: p.name)
def test_repo_cohort_definitions_are_valid(yaml_file):
    data = read_definition(yaml_file)
    if data["source"] == "phantom":
        pytest.skip("phantom definitions are validated by the phantom generator's signature")
    d = parse_definition(yaml_file, data)
    assert d.name == yaml_file.stem


def test_definition_refuses_unknown_keys_and_values(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("source: nih\nfindigns: [effusion]\n")
    with pytest.raises(ConfigError, match="unknown config key.*findigns"):
        parse_definition(y, read_definition(y))
    y.write_text("source: nih\nsplit: [0.5, 0.5]\n")
    with pytest.raises(ConfigError, match="expected three"):
        parse_definition(y, read_definition(y))
    y.write_text("findings: [effusion]\n")
    with pytest.raises(ConfigError, match="needs 'source:"):
        read_definition(y)


# ---------------------------------------------------------------------------------- resolve_cohort


def test_resolve_cohort_builds_once_into_the_cache(tmp_path):
    images = make_folder(tmp_path / "nih", [r.split(",")[0] for r in NIH_ROWS])
    src = nih_csv(images)
    y = tmp_path / "c.yaml"
    y.write_text("name: my cohort\nsource: nih\ncsv: Data_Entry_2017_v2020.csv\nfindings: effusion\nviews: all\n")
    cache = tmp_path / "cache"
    first = resolve_cohort(y, images=images, cache_dir=cache)
    assert first.parent == cache and first.name.startswith("my_cohort-") and len(load_manifest(first)) == 5
    stamp = first.stat().st_mtime_ns
    assert resolve_cohort(y, images=images, cache_dir=cache) == first and first.stat().st_mtime_ns == stamp
    src.write_text(src.read_text().replace("00000004_000.png,Mass|Nodule|Effusion", "00000004_000.png,Mass"))
    second = resolve_cohort(y, images=images, cache_dir=cache)
    assert second != first and load_manifest(second).df["effusion"].sum() == 1
    assert resolve_cohort(second) == second  # a manifest is returned as is, validated


def test_resolve_cohort_refusals(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("source: nih\ncsv: /abs/Data_Entry.csv\n")
    with pytest.raises(ConfigError, match="needs its image folder"):
        resolve_cohort(y, cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="expected a manifest .csv or a cohort definition .yaml"):
        resolve_cohort(tmp_path / "x.txt")
    bad = tmp_path / "m.csv"
    bad.write_text("path,patient_id\n")
    with pytest.raises(ManifestError, match="missing required column"):
        resolve_cohort(bad)


def test_resolve_cohort_phantom_passes_keys_through(tmp_path, monkeypatch):
    calls = []

    def generate_phantom_cohort(out_dir, n=100, size=64, seed=0, findings=("effusion",), fmt="png", prevalence=0.5):
        calls.append(dict(n=n, size=size, seed=seed, findings=findings, fmt=fmt, prevalence=prevalence))
        out_dir = Path(out_dir)
        (out_dir / "images").mkdir()
        (out_dir / "manifest.csv").write_text("path,patient_id,study_id,view,split,effusion\n"
                                             "images/0.png,ph0,,PA,train,1\nimages/1.png,ph1,,PA,val,0\n")
        return out_dir / "manifest.csv"

    monkeypatch.setitem(sys.modules, "xraystyle.phantom.generator",
                        types.SimpleNamespace(generate_phantom_cohort=generate_phantom_cohort))
    y = tmp_path / "phantom.yaml"
    y.write_text("name: phantom\nsource: phantom\nn: 2\nsize: 32\nseed: 4\nfindings: [effusion]\nfmt: png\n"
                 "prevalence: 0.5\n")
    m = resolve_cohort(y, cache_dir=tmp_path / "cache")
    assert calls == [dict(n=2, size=32, seed=4, findings=["effusion"], fmt="png", prevalence=0.5)]
    assert m.name == "manifest.csv" and len(load_manifest(m)) == 2
    assert resolve_cohort(y, cache_dir=tmp_path / "cache") == m and len(calls) == 1  # cached
    # No scratch left; the generation lock file stays (removing it would race).
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == [m.parent.name]
    y.write_text("source: phantom\nn: 2\nsizes: 32\n")
    with pytest.raises(ConfigError, match="phantom cohort:.*sizes"):
        resolve_cohort(y, cache_dir=tmp_path / "cache")


# -------------------------------------------------------------------------------------------- check


def checked_cohort(tmp_path):
    root = tmp_path / "cohort"
    (root / "img").mkdir(parents=True)
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(root / "img" / "a.png")
    Image.fromarray(np.arange(200, 136, -1, dtype=np.uint8).reshape(8, 8)).save(root / "img" / "b.png")
    (root / "img" / "c.png").write_text("this is not a PNG")
    (root / "img" / "d").mkdir()
    m = root / "m.csv"
    m.write_text("path,patient_id,study_id,view,split,effusion\n"
                 "img/a.png,PAT-1,,PA,train,1\nimg/b.png,PAT-2,,PA,train,0\nimg/c.png,PAT-3,,PA,val,0\n"
                 "img/missing.png,PAT-4,,PA,test,1\nimg/d,PAT-5,,PA,test,0\n")
    return m


def test_check_library_collects_all_failures(tmp_path):
    m = load_manifest(checked_cohort(tmp_path))
    seen = []

    def reader(path):
        seen.append(path.name)
        if path.name == "c.png":
            raise ValueError("cannot decode\nat all")
        return np.zeros((2, 2)), None

    n, failures = check_manifest(m, workers=2, reader=reader)
    assert n == 5 and sorted(seen) == ["a.png", "b.png", "c.png"]
    assert [(f.row, f.path) for f in failures] == [(3, "img/c.png"), (4, "img/missing.png"), (5, "img/d")]
    assert failures[0].reason == "ValueError: cannot decode at all"
    assert failures[1].reason == "file not found" and failures[2].reason == "not a file"


def test_check_cli_lists_failures_and_exits_1(tmp_path):
    pytest.importorskip("xraystyle.io", reason="needs the readers").read_xray
    r = invoke("cohort", "check", checked_cohort(tmp_path), "--workers", 2)
    assert r.exit_code == 1, r.output
    rows = [l for l in r.stdout.splitlines() if l.startswith("row ")]
    assert [l.split(":")[0] for l in rows] == ["row 3", "row 4", "row 5"]
    assert rows[1] == "row 4: img/missing.png: file not found"
    assert "PAT-" not in r.output  # never patient ids
    assert r.stderr.strip().splitlines()[-1].endswith("3 of 5 files failed the check")


def test_check_cli_all_good(tmp_path):
    pytest.importorskip("xraystyle.io", reason="needs the readers").read_xray
    m = checked_cohort(tmp_path)
    m.write_text("\n".join(m.read_text().splitlines()[:3]) + "\n")
    r = invoke("cohort", "check", m)
    assert r.exit_code == 0, r.output
    assert "all 2 files exist and decode" in r.stdout
