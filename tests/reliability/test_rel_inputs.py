"""Every malformed-file case of REFERENCE.md section 5, through the library reader and through
each CLI command that reads images: one line naming the file and the reason, exit code 1, no
traceback, no identifier from the file's header in the message, nothing half-written."""

from __future__ import annotations

import time
import tracemalloc

import pandas as pd
import pytest

from xraystyle.errors import InputError
from xraystyle.io import read_xray

from .conftest import cli, one_line_error
from .hostile import MALFORMED, scan_for_canaries, write_malformed

CASES = [c.name for c in MALFORMED]
REASON = {c.name: c.reason for c in MALFORMED}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_malformed(tmp_path_factory.mktemp("malformed"))


@pytest.mark.parametrize("name", CASES)
def test_read_xray_refuses_with_a_typed_one_line_error(corpus, name):
    path = corpus[name]
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(InputError) as err:
            read_xray(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert REASON[name] in err.value.reason
    assert not scan_for_canaries(texts=[message])
    # Refused from the header: no decompression, no allocation of declared sizes.
    assert peak < 50e6 and time.perf_counter() - start < 10


@pytest.mark.parametrize("name", CASES)
def test_inspect_cli_refuses_with_one_line(corpus, name):
    for extra in ([], ["--json"]):
        r = cli("inspect", corpus[name], *extra)
        line = one_line_error(r, corpus[name], REASON[name])
        assert not scan_for_canaries(texts=[line, r.stdout])


@pytest.mark.parametrize("name", CASES)
def test_convert_cli_refuses_with_one_line_and_writes_nothing(corpus, name, tmp_path):
    out = tmp_path / "out.png"
    r = cli("convert", corpus[name], out, "--size", 32)
    one_line_error(r, corpus[name], REASON[name])
    assert not out.exists() and not list(tmp_path.iterdir())


def test_cohort_check_lists_every_malformed_file_and_exits_1(corpus, tmp_path):
    from tests.io.conftest import build_dicom, chest_anatomy, save

    folder = next(iter(corpus.values())).parent
    save(build_dicom(chest_anatomy(), canaries=False), folder / "good.dcm")
    names = ["good.dcm", *CASES]
    rows = [{"path": n, "patient_id": f"p{i}", "study_id": "", "view": "PA", "split": "train"}
            for i, n in enumerate(names)]
    manifest = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    r = cli("cohort", "check", manifest, "--workers", 2)
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    lines = r.stdout.strip().splitlines()
    assert len(lines) == len(CASES)  # one line per bad file, the good one is not listed
    for row, name in enumerate(names[1:], start=2):
        line = next(x for x in lines if x.startswith(f"row {row}: "))
        assert line.startswith(f"row {row}: {name}: ") and REASON[name] in line
    assert r.stderr.strip().splitlines()[-1] == (
        f"xraystyle: error: {manifest}: {len(CASES)} of {len(names)} files failed the check")
    assert not scan_for_canaries(texts=[r.output])


@pytest.fixture
def special_files(tmp_path):
    """Things that are not regular files but carry image names. A FIFO would block a reader
    that opened it forever; a symlink loop raises ELOOP; a folder is not an image."""
    import os

    (tmp_path / "folder.png").mkdir()
    os.mkfifo(tmp_path / "fifo.dcm")
    os.symlink("loop.png", tmp_path / "loop.png")
    return {"folder.png": "not a regular file", "fifo.dcm": "not a regular file",
            "loop.png": "symbolic links"}


def test_special_files_are_refused_without_blocking(special_files, tmp_path):
    start = time.perf_counter()
    for name, reason in special_files.items():
        with pytest.raises(InputError, match=reason):
            read_xray(tmp_path / name)
        one_line_error(cli("inspect", tmp_path / name), tmp_path / name, reason)
    rows = [{"path": n, "patient_id": f"p{i}", "study_id": "", "view": "", "split": "train"}
            for i, n in enumerate(special_files)]
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    r = cli("cohort", "check", tmp_path / "m.csv")
    assert r.exit_code == 1 and len(r.stdout.strip().splitlines()) == 3, r.output
    assert time.perf_counter() - start < 30
