"""Adapters on the REAL public metadata shipped in torchxrayvision's package folder.

Expected counts are computed here independently (csv / gzip / zipfile on the raw file), never
through the adapters' code, and compared exactly.
"""

from __future__ import annotations

import ast
import csv
import gzip
import io
import os
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xraystyle.cohorts.build import build_manifest

txv = pytest.importorskip("torchxrayvision")
DATA = Path(os.path.dirname(txv.__file__)) / "data"


def real(name: str) -> Path:
    p = DATA / name
    if not p.exists():
        pytest.skip(f"{name} not shipped with this torchxrayvision")
    return p


def gz_rows(path: Path):
    with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
        yield from csv.DictReader(fh)


def counts(m, finding):
    v = m.df[finding].to_numpy()
    return int((v == 1).sum()), int((v == 0).sum()), int(np.isnan(v).sum())


def no_leak(m):
    return bool((m.df.groupby("patient_id")["split"].nunique() == 1).all())


def test_nih_effusion_pa_and_ap(tmp_path):
    src = real("Data_Entry_2017_v2020.csv.gz")
    pos = defaultdict(int)
    total = defaultdict(int)
    patients = set()
    for row in gz_rows(src):
        view = row["View Position"]
        total[view] += 1
        pos[view] += "Effusion" in row["Finding Labels"].split("|")
        patients.add(row["Patient ID"])
    assert pos["PA"] == 6589 and pos["AP"] == 6728  # docs/REFERENCE.md
    m, _ = build_manifest("nih", tmp_path / "m.csv", csv=[src], findings="effusion,no_finding", views="all")
    for view in ("PA", "AP"):
        v = m.df.loc[m.df["view"] == view, "effusion"].to_numpy()
        assert ((v == 1).sum(), (v == 0).sum()) == (pos[view], total[view] - pos[view])
    assert len(m) == 112120 and m.df["patient_id"].nunique() == len(patients) == 30805 and no_leak(m)
    split_share = m.df["split"].value_counts(normalize=True)
    assert abs(split_share["train"] - 0.8) < 0.02 and abs(split_share["test"] - 0.1) < 0.02


def test_chexpert_effusion_frontal_ignore(tmp_path):
    src = real("chexpert_train.csv.gz")
    raw = pd.read_csv(src, usecols=["Path", "Frontal/Lateral", "Pleural Effusion"])
    frontal = raw[raw["Frontal/Lateral"] == "Frontal"]
    n = len(frontal)
    pos = int((frontal["Pleural Effusion"] == 1.0).sum())
    neg = int((frontal["Pleural Effusion"] == 0.0).sum())
    patients = set(frontal["Path"].str.split("/").str[2])
    assert n == 191027
    m, _ = build_manifest("chexpert", tmp_path / "m.csv", csv=[src], findings="effusion", uncertain="ignore")
    assert len(m) == n and counts(m, "effusion") == (pos, neg, n - pos - neg)
    assert m.df["patient_id"].nunique() == len(patients) and no_leak(m)


def test_vindr_any_reader(tmp_path):
    src = real("vinbigdata-train.csv.gz")
    marked = defaultdict(set)
    images = set()
    for row in gz_rows(src):
        images.add(row["image_id"])
        marked[row["class_name"]].add(row["image_id"])
    abnormal = set().union(*(ids for name, ids in marked.items() if name != "No finding"))
    m, _ = build_manifest("vindr", tmp_path / "m.csv", csv=[src], views="all")
    assert len(m) == len(images) == 15000
    assert counts(m, "effusion") == (len(marked["Pleural effusion"]), 15000 - len(marked["Pleural effusion"]), 0)
    assert counts(m, "nodule")[0] == len(marked["Nodule/Mass"])
    assert counts(m, "fibrosis")[0] == len(marked["Pulmonary fibrosis"])
    assert counts(m, "no_finding")[0] == 15000 - len(abnormal)


def test_rsna_pneumonia(tmp_path):
    src = real("kaggle_stage_2_train_labels.csv.zip")
    with zipfile.ZipFile(src) as z:
        text = z.read(z.namelist()[0]).decode("utf-8")
    positive, ids = set(), set()
    for row in csv.DictReader(io.StringIO(text)):
        ids.add(row["patientId"])
        if row["Target"] == "1":
            positive.add(row["patientId"])
    headers = real("kaggle_stage_2_train_images_dicom_headers.csv.gz")
    views = defaultdict(int)
    for row in gz_rows(headers):
        if row["PatientID"] in ids:
            views[row["ViewPosition"]] += 1
    m, _ = build_manifest("rsna", tmp_path / "m.csv", csv=[src], metadata=headers, views="all")
    assert len(m) == len(ids) == 26684 and counts(m, "pneumonia") == (len(positive), len(ids) - len(positive), 0)
    assert len(positive) == 6012
    assert m.df["view"].value_counts().to_dict() == dict(views)


@pytest.mark.slow
def test_padchest_effusion_pa(tmp_path):
    src = real("PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz")
    effusion = {"pleural effusion", "loculated pleural effusion", "loculated fissural effusion", "hydropneumothorax"}
    n = pos = normal = 0
    for row in gz_rows(src):
        if row["Projection"] != "PA" or row["Labels"].strip() in ("", "nan"):
            continue
        labels = {str(x).strip().lower() for x in ast.literal_eval(row["Labels"])}
        n += 1
        pos += bool(labels & effusion)
        normal += "normal" in labels
    m, _ = build_manifest("padchest", tmp_path / "m.csv", csv=[src], findings="effusion,no_finding", views="PA")
    assert len(m) == n and counts(m, "effusion") == (pos, n - pos, 0)
    assert counts(m, "no_finding")[0] == normal and no_leak(m)
