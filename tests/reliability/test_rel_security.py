"""Security: pickled code in checkpoints and caches never runs, manifest paths and names never
leave their folders, and patient identifiers never reach an output, a log or a file name."""

from __future__ import annotations

import json
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xraystyle.errors import CheckpointError

from .conftest import cli, one_line_error, train_args, write_config, write_evil_checkpoint
from .hostile import IDENTIFYING_STEM, PicklePayload, canary_dicom, scan_for_canaries

# ---------------------------------------------------------------------------------------------
# pickle payloads in checkpoints


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / "PWNED"
    file, run = write_evil_checkpoint(tmp_path / "evil", marker)
    return file, run, marker


def test_pickle_checkpoint_refused_by_load_trained_model(evil):
    from xraystyle.trained import load_trained_model

    file, run, marker = evil
    with pytest.raises(CheckpointError, match="refused: checkpoint contains pickled objects"):
        load_trained_model(file)
    with pytest.raises(CheckpointError, match="no readable checkpoint"):
        load_trained_model(run)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_legacy_raw_pickle_checkpoint_refused(tmp_path):
    from xraystyle.trained import load_trained_model

    marker = tmp_path / "PWNED"
    path = tmp_path / "legacy.pt"
    path.write_bytes(pickle.dumps({"format": 1, "state": PicklePayload(marker)}))  # not torch's zip format
    with pytest.raises(CheckpointError):
        load_trained_model(path)
    assert not marker.exists()


def test_pickle_latest_snapshot_is_skipped_for_the_previous_good_one(reference_run, tmp_path, caplog):
    from xraystyle.trained import load_trained_model

    from .conftest import ITERS, copy_run, sha256

    run = copy_run(reference_run, tmp_path / "run")
    marker = tmp_path / "PWNED"
    evil_file, _ = write_evil_checkpoint(tmp_path / "evil", marker)
    latest = run / "checkpoints" / f"step_{ITERS:07d}.pt"
    latest.write_bytes(evil_file.read_bytes())
    index = run / "checkpoints" / "index.json"
    entries = json.loads(index.read_text())
    entries[-1]["sha256"] = sha256(latest)  # the checksum passes: only the safe loader refuses it
    index.write_text(json.dumps(entries))
    with caplog.at_level("WARNING"):
        model = load_trained_model(run)
    assert model.step == ITERS - 2 and "pickled objects" in caplog.text
    assert not marker.exists()


def test_pickle_checkpoint_refused_by_train_resume(evil, cohort, fault_config, tmp_path):
    file, run, marker = evil
    r = cli(*train_args(fault_config, cohort.path, run, 8, "--resume"))
    one_line_error(r, "no readable checkpoint")
    assert not marker.exists()


@pytest.mark.slow
def test_pickle_payload_refused_with_unsafe_torch_env(background, rel_base):
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 turns weights_only off for callers that leave it
    unset: the toolkit passes it explicitly everywhere, so the payload must still be refused."""
    results = background.unsafe_env_results()
    assert "refused" in results["file"] and "pickled objects" in results["file"]
    assert "no readable checkpoint" in results["run"]
    for command in ("train", "synth", "report"):
        code, output = results[command]
        assert code == 1 and "Traceback" not in output, (command, output)
        assert "checkpoint" in output, (command, output)
    assert not (rel_base / "evil-unsafe" / "PWNED").exists()
    assert not (rel_base / "evil-unsafe" / "out").exists()


# ---------------------------------------------------------------------------------------------
# .npy tensor cache: read without pickle


@pytest.fixture
def small_cache(cohort, tmp_path):
    from xraystyle.cohorts.manifest import write_manifest
    from xraystyle.data.cache import build_tensor_cache
    from xraystyle.transforms import PreprocessConfig

    m = write_manifest(cohort.df.iloc[:4], tmp_path / "m.csv", root=cohort.root)
    cfg = PreprocessConfig(size=32)
    first = build_tensor_cache(m, cfg, tmp_path / "cache", progress=False)
    return m, cfg, tmp_path / "cache", np.array(first.images), first.key


@pytest.mark.parametrize("which", ["images", "ok"])
def test_tensor_cache_with_pickled_object_array_is_rebuilt_not_unpickled(small_cache, tmp_path, caplog, which):
    from xraystyle.data.cache import build_tensor_cache

    m, cfg, cache_dir, images, key = small_cache
    marker = tmp_path / "PWNED"
    target = cache_dir / (f"tensors-{key}.npy" if which == "images" else f"tensors-{key}.ok.npy")
    np.save(target, np.array([PicklePayload(marker)] * 4, dtype=object), allow_pickle=True)
    with caplog.at_level("WARNING"):
        again = build_tensor_cache(m, cfg, cache_dir, progress=False)
    assert not marker.exists()
    assert "unreadable" in caplog.text and "rebuilding" in caplog.text
    np.testing.assert_array_equal(np.array(again.images), images)
    assert again.ok.all()


# ---------------------------------------------------------------------------------------------
# manifest paths that try to leave the image root


@pytest.fixture
def escape_setup(tmp_path):
    """An image root holding one good image, and a readable image OUTSIDE it (an escape would
    succeed silently if it were not refused)."""
    from PIL import Image

    root = tmp_path / "root"
    (root / "img").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    pixels = (np.arange(40 * 36).reshape(40, 36) * 40).astype(np.uint16)
    for where in (root / "img" / "good.png", outside / "secret.png"):
        Image.fromarray(pixels).save(where)
    os.symlink(outside / "secret.png", root / "img" / "link.png")
    os.symlink(outside, root / "linkdir")
    return root, outside


ESCAPES = {
    "dotdot": ("../outside/secret.png", "'..'"),
    "dotdot-backslash": ("img\\..\\..\\outside\\secret.png", "'..'"),
    "absolute": ("{outside}/secret.png", "absolute"),
    "url": ("file://{outside}/secret.png", "URL"),
    "http": ("http://example.org/secret.png", "URL"),
    "home": ("~/secret.png", "'~'"),
    "drive": ("C:/secret.png", "drive letter"),
    "nul": ("img/good.png\x00../../outside/secret.png", "NUL"),
    "symlink-file": ("img/link.png", "symbolic link"),
    "symlink-dir": ("linkdir/secret.png", "symbolic link"),
}


def _escape_manifest(root: Path, outside: Path, kind: str) -> Path:
    bad = ESCAPES[kind][0].format(outside=outside)
    rows = [{"path": "img/good.png", "patient_id": "p1", "study_id": "", "view": "PA", "split": "train",
             "effusion": 0},
            {"path": bad, "patient_id": "p2", "study_id": "", "view": "PA", "split": "train", "effusion": 1}]
    path = root / "manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("kind", list(ESCAPES))
@pytest.mark.parametrize("command", ["cohort-check", "train", "synth"])
def test_manifest_path_escaping_the_root_is_refused(escape_setup, kind, command, fault_config, reference_run,
                                                    tmp_path):
    root, outside = escape_setup
    manifest = _escape_manifest(root, outside, kind)
    out = tmp_path / "out"
    if command == "cohort-check":
        r = cli("cohort", "check", manifest)
    elif command == "train":
        r = cli(*train_args(fault_config, manifest, out, 2))
    else:
        r = cli("synth", "--checkpoint", reference_run, "--source", manifest, "--out", out, "--target", "effusion",
                "--no-progress")
    line = one_line_error(r, "row 2", ESCAPES[kind][1])
    if command != "synth":  # synth does not repeat the --source path (it may hold identifiers)
        assert str(manifest) in line
    assert not out.exists()


def test_symlink_planted_after_loading_is_caught_on_use(escape_setup):
    from xraystyle.cohorts.check import check_manifest
    from xraystyle.cohorts.manifest import load_manifest
    from xraystyle.errors import ManifestError

    root, outside = escape_setup
    rows = [{"path": "img/late.png", "patient_id": "p1", "study_id": "", "view": "PA", "split": "train"}]
    pd.DataFrame(rows).to_csv(root / "m.csv", index=False)
    m = load_manifest(root / "m.csv")  # the file does not exist yet: nothing to follow
    os.symlink(outside / "secret.png", root / "img" / "late.png")
    with pytest.raises(ManifestError, match="symbolic link"):
        m.resolve("img/late.png")
    _, failures = check_manifest(m, workers=1)
    assert len(failures) == 1 and "symbolic link" in failures[0].reason


# ---------------------------------------------------------------------------------------------
# names that become file or folder names


@pytest.mark.parametrize("option,value", [("--domains", "normal,../../etc"), ("--domains", "normal,a/b"),
                                          ("--findings", "../x"), ("--domains", "normal,..")])
def test_domain_and_finding_names_cannot_form_paths(option, value, cohort, fault_config, tmp_path, monkeypatch):
    work = tmp_path / "work" / "deeper"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)  # no --out: the run folder would be runs/<domains> under here
    r = cli("train", "--config", fault_config, "--cohort", cohort.path, "--iters", 2, "--no-progress", option, value)
    one_line_error(r, "is not a finding name")
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("*")] == [Path("work"), Path("work/deeper")]


@pytest.mark.parametrize("column", ["mask_../../x", "meta_/etc", "phys_a/b", "../effusion"])
def test_manifest_column_names_cannot_form_paths(column, tmp_path):
    rows = [{"path": "a.png", "patient_id": "p", "study_id": "", "view": "", "split": "train", column: "1"}]
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    one_line_error(cli("cohort", "check", tmp_path / "m.csv"), "unknown column")


def test_cohort_definition_name_cannot_escape_the_cache(tmp_path):
    from xraystyle.cohorts import resolve_cohort

    images = tmp_path / "images"
    (images / "normal").mkdir(parents=True)
    (images / "effusion").mkdir()
    from PIL import Image

    for i, domain in enumerate(["normal", "effusion", "normal", "effusion"]):
        Image.fromarray(np.full((8, 8), i * 60, np.uint8)).save(images / domain / f"x{i}.png")
    spec = tmp_path / "c.yaml"
    spec.write_text("name: ../../../escaped\nsource: folder\n")
    cache = tmp_path / "a" / "b" / "cache"
    manifest = resolve_cohort(spec, images=images, cache_dir=cache)
    assert manifest.resolve().parent == cache.resolve()
    assert not list(tmp_path.glob("escaped*")) and not list((tmp_path / "a").glob("escaped*"))


# ---------------------------------------------------------------------------------------------
# identifier canaries: DICOM header identifiers, a private tag, and identifying file names


@pytest.fixture(scope="module")
def canary_cohort(tmp_path_factory):
    """10 identifier-laden DICOMs whose FILE NAMES are identifiers too, with canary patient ids."""
    base = tmp_path_factory.mktemp("canary")
    scans = base / "scans"
    scans.mkdir()
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(10):
            name = f"{IDENTIFYING_STEM}_{i:02d}.dcm"
            (scans / name).write_bytes(canary_dicom(seed=i))
            rows.append({"path": f"scans/{name}", "patient_id": f"CANARYPID{i}", "study_id": f"CANARYPID{i}_1",
                         "view": "PA", "split": "train", "effusion": i % 2})
    manifest = base / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return base, manifest, sorted(scans.iterdir())


def test_no_identifier_in_inspect_output(canary_cohort):
    _, _, files = canary_cohort
    for extra in ([], ["--json"]):
        r = cli("inspect", files[0], *extra)
        assert r.exit_code == 0, r.output
        assert "PA" in r.stdout  # the whitelisted metadata is there ...
        assert not scan_for_canaries(texts=[r.output])  # ... identifiers and the file name are not


def test_no_identifier_in_convert_output(canary_cohort, tmp_path):
    _, _, files = canary_cohort
    out = tmp_path / "converted.png"
    r = cli("convert", files[0], out, "--size", 32)
    assert r.exit_code == 0, r.output
    assert not scan_for_canaries([tmp_path], [r.output])


def test_no_identifier_in_cohort_check_output(canary_cohort):
    _, manifest, _ = canary_cohort
    r = cli("cohort", "check", manifest, "--workers", 2)
    assert r.exit_code == 0 and "all 10 files exist and decode" in r.stdout, r.output
    assert not scan_for_canaries(texts=[r.output])


def test_no_identifier_in_any_training_output_log_or_file_name(canary_cohort, tmp_path, caplog, monkeypatch):
    base, manifest, _ = canary_cohort
    cache = tmp_path / "cache"
    monkeypatch.setenv("XRAYSTYLE_CACHE", str(cache))
    config = write_config(tmp_path / "cfg.yaml", iters=2, ckpt_every=1, sample_every=1)
    run = tmp_path / "run"
    with caplog.at_level("DEBUG"):
        r = cli("-vv", *train_args(config, manifest, run, 2))
    assert r.exit_code == 0, r.output
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "stats.jsonl", "samples", "checkpoints"}
    assert len(list((run / "checkpoints").glob("step_*.pt"))) == 2 and list((run / "samples").glob("*.png"))
    log_text = "\n".join(f"{rec.name} {rec.getMessage()}" for rec in caplog.records)
    assert "training images per label" in log_text  # the debug/info log was captured
    assert not scan_for_canaries([run, cache], [r.output, log_text])
