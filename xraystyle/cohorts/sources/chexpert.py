"""CheXpert (``train.csv`` / ``valid.csv`` of CheXpert-v1.0 or CheXpert-v1.0-small).

Labels are 1.0 positive, 0.0 negative, -1.0 uncertain and blank (not mentioned = unknown); the
uncertainty policy maps -1 to blank (``ignore``, default), 1 or 0. Patient and study come from
the ``patientNNNNN`` / ``studyN`` parts of ``Path``; ``frontal`` is ``Frontal/Lateral ==
Frontal`` and the view is the ``AP/PA`` column for frontal images, ``LATERAL`` otherwise.
"""

from __future__ import annotations

import pandas as pd

from ...errors import ManifestError
from ._common import (
    SourceOptions,
    label_column,
    norm_sex,
    norm_view,
    read_tables,
    refuse,
    require_csv,
    uncertain_policy,
)

# Shared with MIMIC-CXR, whose labels come from the same CheXpert labeller.
LABELS = {
    "No Finding": "no_finding",
    "Enlarged Cardiomediastinum": "enlarged_cardiomediastinum",
    "Cardiomegaly": "cardiomegaly",
    "Lung Opacity": "lung_opacity",
    "Lung Lesion": "lung_lesion",
    "Edema": "edema",
    "Consolidation": "consolidation",
    "Pneumonia": "pneumonia",
    "Atelectasis": "atelectasis",
    "Pneumothorax": "pneumothorax",
    "Pleural Effusion": "effusion",
    "Pleural Other": "pleural_other",
    "Fracture": "fracture",
    "Support Devices": "support_devices",
}
COLUMNS = ("Path", "Frontal/Lateral", "AP/PA")
WHAT = "CheXpert train.csv / valid.csv"


def read(opts: SourceOptions) -> pd.DataFrame:
    refuse(opts, uncertain=False)
    policy = uncertain_policy(opts)
    paths = require_csv(opts, WHAT)
    src = read_tables(paths, COLUMNS, WHAT)
    present = [c for c in LABELS if c in src.columns]
    if not present:
        raise ManifestError(paths[0], f"no label column (expected e.g. 'Pleural Effusion'): is this the {WHAT}?")

    path = src["Path"].astype("string").fillna("").str.strip()
    ids = path.str.extract(r"(?:^|/)(patient\d+)/(study\d+)/")
    bad = ids[0].isna()
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise ManifestError(paths[0], f"row {i + 1}: 'Path' has no patientNNNNN/studyN/ part")
    out = pd.DataFrame({"path": path.astype(object), "patient_id": ids[0].astype(object)})
    out["study_id"] = (ids[0] + "_" + ids[1]).astype(object)
    frontal = src["Frontal/Lateral"].astype("string").fillna("").str.strip().str.lower() == "frontal"
    out["view"] = norm_view(src["AP/PA"]).where(frontal.to_numpy(), "LATERAL")
    out["frontal"] = frontal.to_numpy()
    if "Sex" in src:
        out["sex"] = norm_sex(src["Sex"], {"Male": "M", "Female": "F"})
    if "Age" in src:
        out["age"] = pd.to_numeric(src["Age"], errors="coerce").astype(float)
    for label in present:
        out[LABELS[label]] = label_column(src[label], paths[0], label, policy)
    return out
