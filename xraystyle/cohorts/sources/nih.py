"""NIH ChestX-ray14 (``Data_Entry_2017_v2020.csv`` or the original ``Data_Entry_2017.csv``).

``Finding Labels`` lists the report-mined labels separated by ``|``; a label not listed is
negative (the labels are complete per image), ``No Finding`` maps to ``no_finding``. Patient from
``Patient ID``, study from ``Follow-up #`` (per patient), view from ``View Position`` (PA / AP).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...errors import ManifestError
from ._common import (
    FRONTAL_VIEWS,
    SourceOptions,
    id_strings,
    indicator,
    norm_sex,
    norm_view,
    read_tables,
    refuse,
    require_csv,
)

LABELS = {
    "Atelectasis": "atelectasis",
    "Cardiomegaly": "cardiomegaly",
    "Consolidation": "consolidation",
    "Edema": "edema",
    "Effusion": "effusion",
    "Emphysema": "emphysema",
    "Fibrosis": "fibrosis",
    "Hernia": "hernia",
    "Infiltration": "infiltration",
    "Mass": "mass",
    "Nodule": "nodule",
    "Pleural_Thickening": "pleural_thickening",
    "Pneumonia": "pneumonia",
    "Pneumothorax": "pneumothorax",
    "No Finding": "no_finding",
}
COLUMNS = ("Image Index", "Finding Labels", "Follow-up #", "Patient ID", "View Position")
WHAT = "NIH ChestX-ray14 Data_Entry_2017 CSV"


def read(opts: SourceOptions) -> pd.DataFrame:
    refuse(opts)
    paths = require_csv(opts, WHAT)
    src = read_tables(paths, COLUMNS, WHAT, dtype={"Patient ID": str, "Image Index": str})
    src = src.reset_index(drop=True)
    labels = src["Finding Labels"].fillna("").astype(str).str.split("|").explode().str.strip()
    labels = labels[labels != ""]
    unknown = sorted(set(labels) - set(LABELS))
    if unknown:
        raise ManifestError(paths[0], f"unknown label(s) in 'Finding Labels': {', '.join(map(repr, unknown[:5]))} "
                                      f"(expected {', '.join(LABELS)})")
    onehot = indicator(labels.index.to_numpy(), labels.to_numpy(), len(src))
    unlabelled = ~src.index.isin(labels.index)

    out = pd.DataFrame({
        "path": src["Image Index"].astype(str).str.strip(),
        "patient_id": id_strings(src["Patient ID"]),
    })
    followup = pd.to_numeric(src["Follow-up #"], errors="coerce")
    out["study_id"] = [f"{p}_{int(f)}" if pd.notna(f) else "" for p, f in zip(out["patient_id"], followup)]
    out["view"] = norm_view(src["View Position"])
    out["frontal"] = out["view"].isin(FRONTAL_VIEWS)
    if "Patient Gender" in src:
        out["sex"] = norm_sex(src["Patient Gender"], {"M": "M", "F": "F"})
    if "Patient Age" in src:
        out["age"] = _age(src["Patient Age"])
    for label, finding in LABELS.items():
        col = onehot[label].copy() if label in onehot else np.zeros(len(src))
        col[unlabelled] = np.nan  # an empty Finding Labels cell says nothing
        out[finding] = col
    return out


def _age(values: pd.Series) -> pd.Series:
    """Years; the 2017 release wrote '058Y' / '011M' / '020D' and has a few ages over 120
    (data-entry errors fixed in the 2020 release), which become unknown."""
    text = values.astype("string").fillna("").str.strip().str.upper()
    parts = text.str.extract(r"^(\d+(?:\.\d+)?)([YMD]?)$")
    num = pd.to_numeric(parts[0], errors="coerce")
    unit = parts[1].map({"": 1.0, "Y": 1.0, "M": 1 / 12, "D": 1 / 365.25})
    age = num * unit
    return age.where(age <= 120).astype(np.float64)
