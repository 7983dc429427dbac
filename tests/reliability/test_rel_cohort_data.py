"""Cohorts and data under concurrency and hostile content (issue #18): two runs generating one
phantom cohort, a batch that fails in the prefetch thread, patient ids and files that differ
only in spelling, spreadsheet formulas in written CSVs, scratch files of killed cache builds."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from xraystyle.errors import ManifestError

from .conftest import REPO, cli, one_line_error, subprocess_env

# ---------------------------------------------------------------------------------------------
# 1. two processes resolving the same phantom cohort

RACE_SCRIPT = r"""
import json, sys, time
from pathlib import Path
import xraystyle.phantom.generator as ph

spec, cache, log, me, other = sys.argv[1:6]
real = ph.generate_phantom_cohort

def counted(out_dir, *args, **kwargs):
    with open(log, "a") as fh:
        fh.write(f"{me} {out_dir}\n")
    time.sleep(1.0)  # widen the window in which the other process looks at the cache
    return real(out_dir, *args, **kwargs)

ph.generate_phantom_cohort = counted
from PIL import Image
from xraystyle.phantom.default import default_phantom_manifest
from xraystyle.cohorts.definition import resolve_cohort
from xraystyle.cohorts.manifest import load_manifest

def sync(phase):
    Path(f"{me}.{phase}").touch()
    deadline = time.time() + 120
    while not Path(f"{other}.{phase}").exists():
        if time.time() > deadline:
            sys.exit("the other process never arrived")
        time.sleep(0.005)

def unreadable(manifest):
    m = load_manifest(manifest)
    bad = 0
    for _ in range(5):  # read repeatedly while the other process may still be finishing
        for rel in m.df["path"]:
            try:
                with Image.open(m.resolve(rel)) as im:
                    im.load()
            except Exception:
                bad += 1
        time.sleep(0.2)
    return len(m), bad

sync("yaml")
a = resolve_cohort(spec, cache_dir=Path(cache) / "cohorts")
n_a, bad_a = unreadable(a)
sync("default")
b = default_phantom_manifest(32, Path(cache) / "default", n=4, findings=["effusion"],
                             prevalence={"effusion": 0.5})
n_b, bad_b = unreadable(b)
print(json.dumps({"yaml": [str(a), n_a, bad_a], "default": [str(b), n_b, bad_b]}))
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_processes_resolving_one_phantom_cohort_generate_it_once(tmp_path):
    spec = tmp_path / "race.yaml"
    spec.write_text("name: race\nsource: phantom\nn: 4\nsize: 32\nseed: 3\nfindings: [effusion]\n")
    cache, log = tmp_path / "cache", tmp_path / "generated.log"
    script = tmp_path / "race.py"
    script.write_text(RACE_SCRIPT)
    me = [str(tmp_path / "p0"), str(tmp_path / "p1")]
    procs = [subprocess.Popen([sys.executable, str(script), str(spec), str(cache), str(log), me[i], me[1 - i]],
                              cwd=REPO, env=subprocess_env(cache), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    for key in ("yaml", "default"):
        (path0, n0, bad0), (path1, n1, bad1) = results[0][key], results[1][key]
        assert path0 == path1 and n0 == n1 == 4
        assert bad0 == bad1 == 0, f"{key}: images unreadable while the other process finished"
    generated = log.read_text().splitlines()
    assert len(generated) == 2, generated  # once for the YAML cohort, once for the default one
    # No scratch folder is left behind; the lock files may stay (tiny, and removing them races).
    leftovers = [p.name for p in cache.rglob("*") if ".tmp" in p.name or ".stale" in p.name]
    assert not leftovers, leftovers


def test_phantom_folder_without_its_complete_marker_is_regenerated(tmp_path, monkeypatch):
    """A folder at the final name without ``.complete`` (deleted by hand to force a rebuild) is
    replaced, not reused and not an error."""
    import xraystyle.phantom.generator as ph
    from xraystyle.cohorts.definition import resolve_cohort

    calls = []

    def fake(out_dir, n=4, size=32, seed=0, findings=("effusion",)):
        calls.append(out_dir)
        (Path(out_dir) / "images").mkdir()
        (Path(out_dir) / "images" / "a.png").write_bytes(b"x")
        pd.DataFrame([{"path": "images/a.png", "patient_id": "1", "study_id": "", "view": "PA",
                       "split": "train"}]).to_csv(Path(out_dir) / "manifest.csv", index=False)
        return Path(out_dir) / "manifest.csv"

    monkeypatch.setattr(ph, "generate_phantom_cohort", fake)
    spec = tmp_path / "p.yaml"
    spec.write_text("name: p\nsource: phantom\nn: 4\n")
    first = resolve_cohort(spec, cache_dir=tmp_path / "c")
    assert resolve_cohort(spec, cache_dir=tmp_path / "c") == first and len(calls) == 1
    (first.parent / ".complete").unlink()
    assert resolve_cohort(spec, cache_dir=tmp_path / "c") == first and len(calls) == 2
    names = sorted(p.name for p in (tmp_path / "c").iterdir() if not p.name.endswith(".lock"))
    assert names == [first.parent.name]


# ---------------------------------------------------------------------------------------------
# 2. a batch that fails in the prefetch thread


def _tiny_batch():
    from xraystyle.data.fetcher import Batch

    t = torch.zeros(1, 1, 2, 2)
    y = torch.zeros(1, dtype=torch.long)
    z = torch.zeros(1, 2)
    return Batch(x_real=t, y_org=y, x_ref=t, x_ref2=t, y_trg=y, z_trg=z, z_trg2=z, y_ref=y)


class _BadBatch(ValueError):
    pass


@pytest.mark.timeout(30)
@pytest.mark.parametrize("prefetch", [1, 3])
def test_prefetch_error_reaches_the_consumer_with_its_type_and_message(prefetch):
    from xraystyle.data.fetcher import iterate_batches

    def fetch(step):
        if step == 3:
            raise _BadBatch(f"cannot prepare step {step}")
        return _tiny_batch()

    before = set(threading.enumerate())
    seen = []
    with pytest.raises(_BadBatch, match="cannot prepare step 3"):
        for step, _ in iterate_batches(fetch, 0, 10, torch.device("cpu"), prefetch=prefetch):
            seen.append(step)
    assert seen == [0, 1, 2]
    _assert_threads_end(before)


@pytest.mark.timeout(30)
def test_closing_the_batch_iterator_early_ends_the_prefetch_thread():
    from xraystyle.data.fetcher import iterate_batches

    before = set(threading.enumerate())
    it = iterate_batches(lambda step: _tiny_batch(), 0, 1000, torch.device("cpu"), prefetch=2)
    assert next(it)[0] == 0
    time.sleep(0.2)  # the worker fills the queue and waits to put the next batch
    it.close()
    _assert_threads_end(before)
    # And when the consumer stops with its own error (a failing training step).
    it = iterate_batches(lambda step: _tiny_batch(), 0, 1000, torch.device("cpu"), prefetch=1)
    with pytest.raises(RuntimeError, match="step failed"):
        for step, _ in it:
            if step == 2:
                raise RuntimeError("step failed")
    it.close()
    _assert_threads_end(before)


def _assert_threads_end(before, within: float = 5.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not alive:
            return
        time.sleep(0.02)
    raise AssertionError(f"prefetch thread(s) still running: {alive}")


# ---------------------------------------------------------------------------------------------
# 3. patient ids and files that differ only in spelling

E_ACUTE = "Jos\u00e9"  # composed (NFC)
E_DECOMPOSED = unicodedata.normalize("NFD", E_ACUTE)


def test_split_assignment_normalises_patient_ids():
    from xraystyle.cohorts.splits import assign_splits

    base = [f"p{i}" for i in range(60)] + [E_ACUTE]
    variants = [f" p{i}" if i % 3 == 0 else f"p{i} " if i % 3 == 1 else f"\tp{i}\u00a0" for i in range(60)]
    variants.append(E_DECOMPOSED)
    a = assign_splits(base, seed=0, fractions=(0.5, 0.25, 0.25))
    b = assign_splits(variants, seed=0, fractions=(0.5, 0.25, 0.25))
    assert list(a) == list(b)


@pytest.mark.parametrize("first,second", [("p7", "p7 "), (" p7", "p7"), (E_ACUTE, E_DECOMPOSED)],
                         ids=["trailing-space", "leading-space", "nfc-nfd"])
def test_patient_in_two_splits_is_caught_whatever_the_spelling(tmp_path, first, second):
    from xraystyle.cohorts.manifest import load_manifest

    m = tmp_path / "m.csv"
    m.write_text(f"path,patient_id,study_id,view,split\na.png,{first},s1,PA,train\nb.png,{second},s2,PA,test\n",
                 encoding="utf-8")
    leak = r"1 patient\(s\) appear in more than one split \(e\.g\. row 2\)"
    with pytest.raises(ManifestError, match=leak) as e:
        load_manifest(m)
    assert "p7" not in str(e.value) and "Jos" not in str(e.value)
    # The loaded ids are normalised, so one patient is one id everywhere downstream.
    m.write_text(f"path,patient_id,study_id,view,split\na.png,{first},s1,PA,test\nb.png,{second},s2,PA,test\n",
                 encoding="utf-8")
    assert load_manifest(m).df["patient_id"].nunique() == 1


def test_blank_patient_id_after_stripping_is_empty(tmp_path):
    from xraystyle.cohorts.manifest import load_manifest

    m = tmp_path / "m.csv"
    m.write_text("path,patient_id,study_id,view,split\na.png,p1,,PA,train\nb.png,\" \",,PA,train\n")
    with pytest.raises(ManifestError, match="row 2: empty patient_id"):
        load_manifest(m)


def _link(kind: str, root: Path) -> tuple[str, str]:
    """Two manifest paths that are one file; returns them."""
    (root / "img").mkdir(parents=True)
    (root / "img" / "a.png").write_bytes(b"\x89PNG not really")
    if kind == "symlink":
        os.symlink("a.png", root / "img" / "b.png")
        return "img/a.png", "img/b.png"
    if kind == "hardlink":
        os.link(root / "img" / "a.png", root / "img" / "b.png")
        return "img/a.png", "img/b.png"
    os.symlink("img", root / "alias")  # a linked folder inside the root
    return "img/a.png", "alias/a.png"


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "folder-link"])
def test_two_rows_naming_one_file_through_links_are_refused(tmp_path, kind):
    from xraystyle.cohorts.manifest import load_manifest

    a, b = _link(kind, tmp_path)
    m = tmp_path / "m.csv"
    m.write_text(f"path,patient_id,study_id,view,split\nimg/other.png,pid-secret-1,,PA,train\n"
                 f"{a},pid-secret-2,,PA,train\n{b},pid-secret-3,,PA,test\n")
    with pytest.raises(ManifestError, match="row 2 and row 3 are the same file") as e:
        load_manifest(m)
    assert "secret" not in str(e.value)
    one_line_error(cli("cohort", "check", m), "row 2 and row 3 are the same file")
    # Rows whose files do not exist are not compared (a manifest may be built before the images).
    m.write_text(f"path,patient_id,study_id,view,split\nimg/x.png,1,,PA,train\nimg/y.png,2,,PA,train\n"
                 f"{a},3,,PA,train\n")
    assert len(load_manifest(m)) == 3


# ---------------------------------------------------------------------------------------------
# 4. spreadsheet formulas in written CSVs

FORMULAS = ['=HYPERLINK("http://evil.example/x","click")', "@SUM(1+1)*cmd|' /C calc'!A0", "+cmd|' /C calc'!A0",
            "-2+3+cmd|' /C calc'!A0", "\t=1+1", "\r=1+1", "-", "'=1+1"]


def _cells(path: Path) -> list[list[str]]:
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines(keepends=True) if not ln.startswith("#")]
    return list(csv.reader(io.StringIO("".join(lines))))


def _formula(cell: str) -> bool:
    if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", cell):
        return False
    return cell[:1] in ("=", "+", "-", "@", "\t", "\r")


def test_manifest_writer_neutralises_formulas_and_round_trips(tmp_path):
    from xraystyle.cohorts.manifest import load_manifest, write_manifest

    n = len(FORMULAS)
    df = pd.DataFrame({
        "path": [f"img/{i}.png" for i in range(n - 2)] + ["@eaDir/x.png", "-x.png"],
        "patient_id": FORMULAS, "study_id": FORMULAS[::-1], "view": ["PA"] * n, "split": ["train"] * n,
        "age": [40.0] * n, "effusion": [1.0, 0.0] * (n // 2),
        "phys_offset": [-1.0, -0.5, 2.0, -3.0, 0.0, 1e-7, -2.5e10, np.nan], "meta_note": FORMULAS,
    })
    written = write_manifest(df, tmp_path / "m.csv")
    cells = [c for row in _cells(tmp_path / "m.csv") for c in row]
    assert not [c for c in cells if _formula(c)], [c for c in cells if _formula(c)]
    assert {"-1", "-0.5", "-3", "1e-07", "-25000000000"} <= set(cells)  # numbers untouched
    loaded = load_manifest(tmp_path / "m.csv")
    pd.testing.assert_frame_equal(loaded.df, written.df)
    assert list(loaded.df["patient_id"]) == [unicodedata.normalize("NFC", v).strip() for v in FORMULAS]
    assert list(loaded.df["meta_note"]) == FORMULAS
    assert loaded.content_hash() == written.content_hash()
    assert loaded.resolve(loaded.df["path"].iloc[-2]) == tmp_path / "@eaDir" / "x.png"


@pytest.mark.parametrize("col", ["path", "mask_effusion"])
def test_a_path_that_is_a_formula_is_refused_when_writing(tmp_path, col):
    from xraystyle.cohorts.manifest import write_manifest

    row = {"path": "img/a.png", "patient_id": "pid-secret", "study_id": "", "view": "PA", "split": "train",
           "mask_effusion": ""}
    rows = [dict(row), dict(row, path="img/b.png")]
    rows[1][col] = '=HYPERLINK("http://evil.example","x")'
    with pytest.raises(ManifestError, match=f"row 2: {col}: .*spreadsheet formula") as e:
        write_manifest(pd.DataFrame(rows), tmp_path / "m.csv")
    assert "secret" not in str(e.value) and not (tmp_path / "m.csv").exists()


def test_cohort_build_output_has_no_formula_cells(tmp_path):
    from xraystyle.cohorts.manifest import load_manifest

    images = tmp_path / "images"
    for domain in ("normal", "effusion"):
        (images / domain).mkdir(parents=True)
    names = [f"{d}/{i}.png" for d in ("normal", "effusion") for i in range(3)]
    for name in names:
        (images / name).write_bytes(b"x")
    ids = ['=HYPERLINK("http://evil.example","x")', "@SUM(A1)", "+1+cmd", "-cmd", "ok-1", "=1"]
    src = tmp_path / "ids.csv"
    pd.DataFrame({"path": names, "patient_id": ids, "study_id": ids[::-1], "view": ["=cmd"] * 6}).to_csv(
        src, index=False)
    out = tmp_path / "out" / "m.csv"
    r = cli("cohort", "build", "folder", "--images", images, "--csv", src, "--views", "all", "--out", out)
    assert r.exit_code == 0, r.output
    cells = [c for row in _cells(out) for c in row]
    assert not [c for c in cells if _formula(c)]
    m = load_manifest(out)
    assert sorted(m.df["patient_id"]) == sorted(ids) and set(m.df["view"]) == {"=CMD"}


def test_synthesis_index_neutralises_formulas_and_keeps_numbers(tmp_path):
    from xraystyle.reporting.export import write_index

    rows = [{"output": "src-1_to-effusion_z0", "target": "effusion", "mode": "latent", "style_index": 0,
             "seed": -1, "source_sha256": "ab", "reference_sha256": None,
             "source": '=HYPERLINK("http://evil.example","x")'},
            {"output": "src-2_to-effusion_z0", "target": "effusion", "mode": "latent", "style_index": -3,
             "seed": 7, "source_sha256": "cd", "reference_sha256": None, "source": "@cmd"}]
    path = write_index(rows, tmp_path, keep_source_names=True)
    cells = _cells(path)
    assert not [c for row in cells for c in row if _formula(c)]
    header = cells[0]
    assert cells[1][header.index("seed")] == "-1" and cells[2][header.index("style_index")] == "-3"
    assert cells[1][header.index("source")] == "'" + rows[0]["source"]


def test_csv_safety_helper():
    from xraystyle.csvsafe import neutralise, restore

    for v in FORMULAS + ["''=x", "'''@x"]:
        assert neutralise(v).startswith("'") and restore(neutralise(v)) == v
    for v in ["-1.0", "-1", "+3", "1e-5", "-.5", "abc", "img/a.png", "", "'quoted", "a=b", "p-1", "-inf"]:
        if v != "-inf":
            assert neutralise(v) == v and restore(v) == v
        assert restore(neutralise(v)) == v
    assert neutralise(-1.0) == -1.0 and neutralise(None) is None


# ---------------------------------------------------------------------------------------------
# 5. scratch files of killed tensor-cache builds


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_cache_build_removes_scratch_files_of_dead_processes_only(cohort, tmp_path):
    from xraystyle.data.cache import build_tensor_cache
    from xraystyle.transforms import PreprocessConfig

    cache = tmp_path / "tensors"
    cache.mkdir()
    dead = _dead_pid()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        key = "0123456789abcdef0123"
        stale = [cache / f"tensors-{key}.tmp{dead}.npy", cache / f"tensors-{key}.ok.tmp{dead}.npy"]
        kept = [cache / f"tensors-{key}.tmp{live.pid}.npy", cache / f"tensors-{key}.tmp{os.getpid()}.npy",
                cache / "notes.tmp1.txt"]
        for p in stale + kept:
            p.write_bytes(b"\0" * 64)
        c = build_tensor_cache(cohort, PreprocessConfig(size=32), cache, progress=False)
        assert c.ok.all()
        assert not [p.name for p in stale if p.exists()]
        assert all(p.exists() for p in kept)
    finally:
        live.kill()
        live.wait()
