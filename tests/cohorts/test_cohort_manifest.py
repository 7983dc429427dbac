"""Manifest schema: loading, every refusal, domain labels, hashing, writing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xraystyle.cohorts.manifest import FINDINGS, load_manifest, write_manifest
from xraystyle.errors import ManifestError

HEADER = "path,patient_id,study_id,view,split,sex,age,effusion,cardiomegaly"
ROWS = [
    "img/a.png,P001,S1,PA,train,M,61,1,0",
    "img/b.png,P001,S2,PA,train,M,62,0,",
    "img/c.png,P002,S3,AP,val,F,45,0,1",
    "img/d.png,P003,S4,PA,test,,,1,1",
    "img/e.png,P004,S5,,train,F,30,,",
]


def write(tmp_path: Path, rows=ROWS, header=HEADER, name="m.csv", preamble="") -> Path:
    p = tmp_path / name
    p.write_text(preamble + header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return p


def refused(path: Path, *fragments: str) -> str:
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(path))
    for f in fragments:
        assert f in msg, msg
    return msg


def test_valid_manifest_loads_typed(tmp_path):
    m = load_manifest(write(tmp_path))
    assert len(m) == 5 and m.root == tmp_path and m.findings == ["effusion", "cardiomegaly"]
    assert m.df["effusion"].tolist()[:2] == [1.0, 0.0] and np.isnan(m.df["effusion"].iloc[4])
    assert m.df["age"].dtype == np.float64 and np.isnan(m.df["age"].iloc[3])
    assert m.df["patient_id"].iloc[0] == "P001"  # ids stay text (leading zeros kept)
    assert m.resolve("img/a.png") == tmp_path / "img" / "a.png"
    np.testing.assert_array_equal(m.finding_matrix(["cardiomegaly"])[:, 0], [0, np.nan, 1, 1, np.nan])


def test_subset_keeps_file_row_numbers(tmp_path):
    m = load_manifest(write(tmp_path))
    train = m.subset(split="train")
    assert len(train) == 3 and list(train.df.index) == [0, 1, 4]
    assert len(m.subset()) == 5
    with pytest.raises(ManifestError, match="unknown split 'dev'"):
        m.subset(split="dev")


def test_domain_labels_single_label(tmp_path):
    m = load_manifest(write(tmp_path))
    np.testing.assert_array_equal(m.domain_labels(["normal", "effusion"]), [1, 0, 0, 1, 0])
    # d is positive for both named findings: ambiguous; e is blank (not positive): normal
    np.testing.assert_array_equal(m.domain_labels(["normal", "effusion", "cardiomegaly"]), [1, 0, 2, -1, 0])
    # without "normal", rows positive for none of the domains are excluded
    np.testing.assert_array_equal(m.domain_labels(["effusion", "cardiomegaly"]), [0, -1, 1, -1, -1])
    # unknown="exclude": rows blank for a named finding are excluded
    np.testing.assert_array_equal(m.domain_labels(["normal", "cardiomegaly"], unknown="exclude"),
                                  [0, -1, 1, 1, -1])


def test_domain_labels_unknown_domain_names_it_and_the_available(tmp_path):
    m = load_manifest(write(tmp_path))
    with pytest.raises(ManifestError, match=r"unknown domain 'nodule' \(available: effusion, cardiomegaly, normal\)"):
        m.domain_labels(["normal", "nodule"])
    with pytest.raises(ManifestError, match="unknown finding 'mass'"):
        m.finding_matrix(["mass"])


def test_content_hash_ignores_row_order_and_root_but_not_values(tmp_path):
    a = load_manifest(write(tmp_path, name="a.csv"))
    b = load_manifest(write(tmp_path, rows=ROWS[::-1], name="b.csv", preamble="# root: /elsewhere\n"))
    assert a.content_hash() == b.content_hash()
    changed = [ROWS[0].replace(",1,0", ",0,0")] + ROWS[1:]
    assert load_manifest(write(tmp_path, rows=changed, name="c.csv")).content_hash() != a.content_hash()


def test_write_manifest_roundtrip_and_normalises(tmp_path):
    df = pd.DataFrame({"path": ["x/1.png", "x/2.png"], "patient_id": [7, 8], "study_id": ["s", ""],
                       "view": ["PA", "AP"], "split": ["train", "test"], "effusion": [1.0, np.nan],
                       "phys_kvp": [80.0, 102.5], "mask_effusion": ["m/1.png", ""]})
    m = write_manifest(df, tmp_path / "out" / "m.csv")
    text = (tmp_path / "out" / "m.csv").read_text()
    assert text.splitlines()[0] == "path,patient_id,study_id,view,split,effusion,mask_effusion,phys_kvp"
    assert text.splitlines()[1] == "x/1.png,7,s,PA,train,1,m/1.png,80"
    again = load_manifest(tmp_path / "out" / "m.csv")
    assert again.content_hash() == m.content_hash()
    assert again.df["phys_kvp"].tolist() == [80.0, 102.5]


def test_write_manifest_refuses_invalid_and_leaves_no_file(tmp_path):
    df = pd.DataFrame({"path": ["../x.png"], "patient_id": ["1"], "study_id": [""], "view": [""],
                       "split": ["train"]})
    with pytest.raises(ManifestError, match="'..'"):
        write_manifest(df, tmp_path / "m.csv")
    assert list(tmp_path.iterdir()) == []


def test_root_header_absolute_and_relative(tmp_path):
    images = tmp_path / "data"
    (images / "img").mkdir(parents=True)
    runs = tmp_path / "runs"
    runs.mkdir()
    p = write(runs, preamble=f"# root: {images}\n")
    assert load_manifest(p).root == images
    p2 = write(runs, name="rel.csv", preamble="# a comment\n# root: ../data\n")
    m = load_manifest(p2)
    assert m.root == images and m.resolve("img/a.png") == images / "img" / "a.png"


def test_vocabulary_is_snake_case_and_unique():
    assert len(set(FINDINGS)) == len(FINDINGS)
    assert all(f.replace("_", "").isalpha() and f == f.lower() for f in FINDINGS)
    assert "normal" not in FINDINGS


# ------------------------------------------------------------------------------------ refusals


def test_refuses_missing_file(tmp_path):
    refused(tmp_path / "nope.csv", "file not found")


def test_refuses_folder(tmp_path):
    refused(tmp_path, "is a folder")


def test_refuses_empty_file(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("")
    refused(p, "empty CSV")


def test_refuses_header_only(tmp_path):
    refused(write(tmp_path, rows=[]), "no rows")


def test_refuses_binary(tmp_path):
    p = tmp_path / "m.csv"
    p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    refused(p, "not UTF-8")


def test_refuses_nul_bytes(tmp_path):
    p = tmp_path / "m.csv"
    p.write_bytes(b"path\x00,x\n")
    refused(p, "NUL")


def test_refuses_ragged_csv(tmp_path):
    refused(write(tmp_path, rows=ROWS + ["a,b,c,d,e,f,g,h,i,j,k,l"]), "not a readable CSV")


def test_refuses_missing_required_columns_naming_them(tmp_path):
    header = "path,study_id,view,effusion"
    refused(write(tmp_path, header=header, rows=["a.png,s,PA,1"]), "missing required column(s): patient_id, split")


def test_refuses_duplicate_column(tmp_path):
    refused(write(tmp_path, header=HEADER + ",effusion", rows=[r + ",1" for r in ROWS]), "duplicate column 'effusion'")


def test_refuses_duplicate_paths(tmp_path):
    rows = ROWS + ["img/./a.png,P009,S9,PA,train,M,1,0,0"]
    refused(write(tmp_path, rows=rows), "duplicate path at row 1 and row 6")


def test_refuses_unknown_finding_with_suggestion(tmp_path):
    header = HEADER.replace("effusion", "efusion")
    refused(write(tmp_path, header=header), "unknown column 'efusion'", "did you mean 'effusion'")


def test_refuses_source_style_finding_name(tmp_path):
    header = HEADER.replace("effusion", "Pleural Effusion")
    refused(write(tmp_path, header=header), "unknown column 'Pleural Effusion'")


@pytest.mark.parametrize("value", ["-1", "2", "yes", "NaN", "0.5"])
def test_refuses_bad_finding_values(tmp_path, value):
    rows = list(ROWS)
    rows[2] = f"img/c.png,P002,S3,AP,val,F,45,{value},1"
    refused(write(tmp_path, rows=rows), f"row 3: effusion = '{value}'", "1 (positive), 0 (negative) or blank")


def test_accepts_float_style_and_padded_finding_values(tmp_path):
    rows = list(ROWS)
    rows[0] = "img/a.png,P001,S1,PA,train,M,61,1.0, 0"
    m = load_manifest(write(tmp_path, rows=rows))
    assert m.df["effusion"].iloc[0] == 1.0 and m.df["cardiomegaly"].iloc[0] == 0.0


@pytest.mark.parametrize("value", ["training", "TEST", "valid"])
def test_refuses_bad_split(tmp_path, value):
    rows = list(ROWS)
    rows[1] = ROWS[1].replace(",train,", f",{value},")
    refused(write(tmp_path, rows=rows), f"row 2: split '{value}' is not one of train, val, test")


def test_refuses_empty_patient_id(tmp_path):
    rows = list(ROWS)
    rows[3] = ROWS[3].replace("P003", "")
    refused(write(tmp_path, rows=rows), "row 4: empty patient_id")


def test_refuses_patient_in_two_splits_without_naming_the_patient(tmp_path):
    rows = list(ROWS)
    rows[1] = ROWS[1].replace(",train,", ",test,")
    msg = refused(write(tmp_path, rows=rows), "1 patient(s) appear in more than one split", "row 2")
    assert "P001" not in msg


def test_refuses_bad_sex_and_age_and_phys(tmp_path):
    rows = list(ROWS)
    rows[0] = ROWS[0].replace(",M,61,", ",male,61,")
    refused(write(tmp_path, rows=rows, name="a.csv"), "row 1: sex 'male'")
    rows[0] = ROWS[0].replace(",M,61,", ",M,-3,")
    refused(write(tmp_path, rows=rows, name="b.csv"), "row 1: age = '-3' is not a non-negative number")
    p = write(tmp_path, header=HEADER + ",phys_kvp", rows=[r + ",80" for r in ROWS[:-1]] + [ROWS[-1] + ",high"],
              name="c.csv")
    refused(p, "row 5: phys_kvp = 'high' is not a number")


def test_refuses_bad_extra_column_name(tmp_path):
    refused(write(tmp_path, header=HEADER + ",phys_", rows=[r + ",1" for r in ROWS]), "unknown column 'phys_'")


def test_refuses_two_root_lines(tmp_path):
    refused(write(tmp_path, preamble="# root: /a\n# root: /b\n"), "more than one '# root:' line")


ESCAPES = {
    "absolute": ("/etc/passwd", "absolute"),
    "dotdot": ("../secret.png", "'..'"),
    "inner_dotdot": ("img/../../secret.png", "'..'"),
    "backslash_dotdot": ("img\\..\\..\\secret.png", "'..'"),
    "nul": ("img/a\x00.png", "NUL byte"),
    "http_url": ("http://example.org/a.png", "URL"),
    "file_url": ("file:///etc/passwd", "URL"),
    "s3_url": ("s3://bucket/a.png", "URL"),
    "drive_backslash": ("C:\\images\\a.png", "drive letter"),
    "drive_slash": ("c:/images/a.png", "drive letter"),
    "unc": ("\\\\server\\share\\a.png", "absolute"),
    "home": ("~/a.png", "'~'"),
    "backslash_separators": ("img\\a.png", "'\\' separators"),
    "newline": ("img/a\n.png", "control characters"),
}


@pytest.mark.parametrize("case", sorted(ESCAPES))
def test_refuses_path_escaping_the_root(tmp_path, case):
    bad, fragment = ESCAPES[case]
    df = pd.DataFrame({"path": ["ok.png", bad], "patient_id": ["1", "2"], "study_id": "", "view": "",
                       "split": "train"})
    df.to_csv(tmp_path / "m.csv", index=False)  # written by pandas: quoting handled
    refused(tmp_path / "m.csv", "row 2: path:", fragment)


def test_refuses_mask_path_escaping_the_root(tmp_path):
    p = write(tmp_path, header=HEADER + ",mask_effusion", rows=[r + "," for r in ROWS[:-1]] + [ROWS[-1] + ",../m.png"])
    refused(p, "row 5: mask_effusion:", "'..'")


def test_refuses_file_symlink_pointing_out(tmp_path):
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"x")
    root = tmp_path / "cohort"
    (root / "img").mkdir(parents=True)
    os.symlink(outside, root / "img" / "c.png")
    refused(write(root), "row 3: path: path escapes the image root through a symbolic link")


def test_refuses_folder_symlink_pointing_out(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    root = tmp_path / "cohort"
    root.mkdir()
    os.symlink(tmp_path / "elsewhere", root / "img")
    refused(write(root), "row 1: path: path escapes the image root through a symbolic link")


def test_accepts_symlink_inside_root_and_resolve_rechecks(tmp_path):
    root = tmp_path / "cohort"
    (root / "real").mkdir(parents=True)
    os.symlink(root / "real", root / "img")
    m = load_manifest(write(root))
    assert m.resolve("img/a.png") == root / "img" / "a.png"
    # a link created after loading is still caught by resolve()
    os.symlink(tmp_path, root / "late")
    with pytest.raises(ManifestError, match="symbolic link"):
        m.resolve("late/x.png")
    with pytest.raises(ManifestError, match="'..'"):
        m.resolve("../x.png")
