"""RSNA Pneumonia Detection Challenge (``stage_2_train_labels.csv``, Kaggle).

One row per box (or one row with ``Target`` 0); an image is positive for ``pneumonia`` when any
of its rows has ``Target`` 1 (the challenge's "Lung Opacity" class: opacities suspicious for
pneumonia), negative otherwise. ``patientId`` names one image: it is patient, study and file
(``<patientId>.dcm``). The labels file has no view; ``--metadata`` may name a CSV of DICOM
headers with ``PatientID`` (or ``patientId``) and ``ViewPosition`` (optional ``PatientSex``,
``PatientAge``), such as torchxrayvision's ``kaggle_stage_2_train_images_dicom_headers.csv``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...errors import ManifestError
from ._common import (
    FRONTAL_VIEWS,
    SourceOptions,
    id_strings,
    norm_sex,
    norm_view,
    read_table,
    read_tables,
    refuse,
    require_csv,
)

WHAT = "RSNA stage_2_train_labels.csv"
WHAT_META = "CSV of DICOM headers with PatientID and ViewPosition"
IMAGE_PATH = "{patient_id}.dcm"


def read(opts: SourceOptions) -> pd.DataFrame:
    refuse(opts, metadata=False)
    paths = require_csv(opts, WHAT)
    src = read_tables(paths, ("patientId", "Target"), WHAT, dtype={"patientId": str})
    target = pd.to_numeric(src["Target"], errors="coerce")
    bad = ~target.isin([0, 1])
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise ManifestError(paths[0], f"row {i + 1}: 'Target' = {str(src['Target'].iloc[i])!r}: expected 0 or 1")
    ids = id_strings(src["patientId"])
    per_image = target.groupby(ids.to_numpy(), sort=False).max()

    out = pd.DataFrame({"path": [IMAGE_PATH.format(patient_id=i) for i in per_image.index],
                        "patient_id": per_image.index.astype(object),
                        "study_id": per_image.index.astype(object)})
    out["view"] = ""
    out["frontal"] = True  # the challenge images are all frontal (PA / AP)
    if opts.metadata is not None:
        _add_headers(out, opts.metadata)
    out["pneumonia"] = per_image.to_numpy(dtype=np.float64)
    return out


def _add_headers(out: pd.DataFrame, path) -> None:
    meta = read_table(path, ("ViewPosition",), WHAT_META, dtype=str)
    key = "PatientID" if "PatientID" in meta.columns else "patientId"
    if key not in meta.columns:
        raise ManifestError(path, f"missing column 'PatientID': is this the {WHAT_META}?")
    meta = meta.drop_duplicates(key)
    meta = meta.set_index(id_strings(meta[key]).to_numpy())
    found = out["patient_id"].isin(meta.index)
    ids = out["patient_id"][found]
    view = norm_view(meta["ViewPosition"]).reindex(ids).to_numpy()
    out.loc[found, "view"] = view
    out["frontal"] = ~found | out["view"].isin(FRONTAL_VIEWS)
    if "PatientSex" in meta.columns:
        out["sex"] = ""
        out.loc[found, "sex"] = norm_sex(meta["PatientSex"], {"M": "M", "F": "F"}).reindex(ids).to_numpy()
    if "PatientAge" in meta.columns:
        out["age"] = np.nan
        out.loc[found, "age"] = pd.to_numeric(meta["PatientAge"], errors="coerce").reindex(ids).to_numpy()
