"""VinDr-CXR, from either of its two public label layouts:

- boxes (Kaggle ``vinbigdata`` ``train.csv``, PhysioNet ``annotations_train.csv``): one row per
  box per reader, ``image_id, class_name, rad_id, ...``;
- image labels (PhysioNet ``image_labels_train.csv`` / ``_test.csv``): one row per image and
  reader (or per image in the test consensus), one 0/1 column per class.

Image-level rule: a finding is positive when ANY reader marks it, negative otherwise (every
reader reads every image, so labels are complete). ``no_finding`` is 1 exactly when no other
class is positive after that rule. VinDr releases no patient ids: each image is its own patient
and study. All VinDr-CXR images are frontal (adult PA); the view column stays blank.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...errors import ManifestError
from ._common import SourceOptions, read_tables, refuse, require_csv

# Keys are lower case: the Kaggle and PhysioNet files differ in capitalisation.
CLASSES = {
    "aortic enlargement": "aortic_enlargement",
    "atelectasis": "atelectasis",
    "calcification": "calcification",
    "cardiomegaly": "cardiomegaly",
    "clavicle fracture": "fracture",
    "consolidation": "consolidation",
    "edema": "edema",
    "emphysema": "emphysema",
    "enlarged pa": "enlarged_pa",
    "ild": "ild",
    "infiltration": "infiltration",
    "lung opacity": "lung_opacity",
    "lung cavity": "lung_cavity",
    "lung cyst": "lung_cyst",
    "mediastinal shift": "mediastinal_shift",
    "nodule/mass": "nodule",
    "pleural effusion": "effusion",
    "pleural thickening": "pleural_thickening",
    "pneumothorax": "pneumothorax",
    "pulmonary fibrosis": "fibrosis",
    "rib fracture": "fracture",
    "other lesion": "other_lesion",
    "copd": "copd",
    "lung tumor": "lung_tumor",
    "pneumonia": "pneumonia",
    "tuberculosis": "tuberculosis",
    "other diseases": "other_disease",
    "other disease": "other_disease",
}
NO_FINDING = "no finding"
BOX_FINDINGS = ("aortic_enlargement", "atelectasis", "calcification", "cardiomegaly", "consolidation",
                "ild", "infiltration", "lung_opacity", "nodule", "other_lesion", "effusion",
                "pleural_thickening", "pneumothorax", "fibrosis")
WHAT = "VinDr-CXR train.csv / annotations_train.csv / image_labels_train.csv"
IMAGE_PATH = "train/{image_id}.dicom"


def read(opts: SourceOptions) -> pd.DataFrame:
    refuse(opts)
    paths = require_csv(opts, WHAT)
    src = read_tables(paths, ("image_id",), WHAT, dtype={"image_id": str})
    src["image_id"] = src["image_id"].astype("string").fillna("").str.strip()
    if "class_name" in src.columns:
        positive, findings = _from_boxes(src, paths[0])
    else:
        positive, findings = _from_image_labels(src, paths[0])

    images = pd.Index(pd.unique(src["image_id"]))
    out = pd.DataFrame({"path": [IMAGE_PATH.format(image_id=i) for i in images],
                        "patient_id": images.astype(object), "study_id": images.astype(object)})
    out["view"] = ""
    out["frontal"] = True
    any_positive = np.zeros(len(images), dtype=bool)
    for finding in findings:
        col = images.isin(positive.get(finding, set()))
        any_positive |= col
        out[finding] = col.astype(np.float64)
    out["no_finding"] = (~any_positive).astype(np.float64)
    return out


def _from_boxes(src: pd.DataFrame, path) -> tuple[dict[str, set], list[str]]:
    names = src["class_name"].astype("string").fillna("").str.strip()
    lower = names.str.lower()
    unknown = sorted(set(names[~lower.isin(set(CLASSES) | {NO_FINDING})]))
    if unknown:
        raise ManifestError(path, f"unknown class_name(s) {', '.join(map(repr, unknown[:5]))}")
    positive: dict[str, set] = {}
    for cls, ids in src["image_id"].groupby(lower.to_numpy()):
        if cls != NO_FINDING:
            positive.setdefault(CLASSES[cls], set()).update(ids)
    # The box layout's 14 classes are always defined; further ones only if the file has them.
    findings = list(BOX_FINDINGS) + sorted(set(positive) - set(BOX_FINDINGS))
    return positive, findings


def _from_image_labels(src: pd.DataFrame, path) -> tuple[dict[str, set], list[str]]:
    cols = {c: CLASSES[c.strip().lower()] for c in src.columns if c.strip().lower() in CLASSES}
    if not cols:
        raise ManifestError(path, f"neither 'class_name' nor class columns such as 'Pleural effusion': "
                                  f"is this the {WHAT}?")
    positive: dict[str, set] = {}
    for col, finding in cols.items():
        values = pd.to_numeric(src[col], errors="coerce")
        bad = ~values.isin([0, 1])
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise ManifestError(path, f"row {i + 1}: {col!r} = {str(src[col].iloc[i])!r}: expected 0 or 1")
        positive.setdefault(finding, set()).update(src["image_id"][values.to_numpy() == 1])
    findings = list(dict.fromkeys(cols.values()))
    return positive, findings
