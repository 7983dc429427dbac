"""MIMIC-CXR-JPG: ``mimic-cxr-2.0.0-chexpert.csv(.gz)`` labels joined with
``mimic-cxr-2.0.0-metadata.csv(.gz)`` (``--metadata``) on ``subject_id`` + ``study_id``.

Labels are per study (CheXpert labeller, 1 / 0 / -1 / blank, uncertainty policy as for
CheXpert) and apply to every image of the study. Images whose study has no label row are left
out (an unlabelled study would otherwise count as "normal"). Path
``files/p{subject_id[:2]}/p{subject_id}/s{study_id}/{dicom_id}.jpg``; view from ``ViewPosition``.
"""

from __future__ import annotations

import logging

import pandas as pd

from ...errors import ConfigError, ManifestError
from ._common import (
    FRONTAL_VIEWS,
    SourceOptions,
    id_strings,
    label_column,
    norm_view,
    read_table,
    read_tables,
    require_csv,
    uncertain_policy,
)
from .chexpert import LABELS

log = logging.getLogger(__name__)

KEYS = ("subject_id", "study_id")
WHAT = "MIMIC-CXR mimic-cxr-2.0.0-chexpert.csv"
WHAT_META = "MIMIC-CXR mimic-cxr-2.0.0-metadata.csv"


def read(opts: SourceOptions) -> pd.DataFrame:
    policy = uncertain_policy(opts)
    paths = require_csv(opts, WHAT)
    if opts.metadata is None:
        raise ConfigError("source mimic needs --metadata (mimic-cxr-2.0.0-metadata.csv) for image ids and views")
    labels = read_tables(paths, KEYS, WHAT, dtype={"subject_id": str, "study_id": str})
    meta = read_table(opts.metadata, ("dicom_id",) + KEYS + ("ViewPosition",), WHAT_META,
                      dtype={"subject_id": str, "study_id": str, "dicom_id": str})
    present = [c for c in LABELS if c in labels.columns]
    if not present:
        raise ManifestError(paths[0], f"no label column (expected e.g. 'Pleural Effusion'): is this the {WHAT}?")
    for frame in (labels, meta):
        for key in KEYS:
            frame[key] = id_strings(frame[key])
    dup = labels.duplicated(list(KEYS))
    if dup.any():
        i = int(dup.to_numpy().nonzero()[0][0])
        raise ManifestError(paths[0], f"row {i + 1}: a second label row for the same study")

    # Convert on the label file itself so errors name its own row numbers.
    values = pd.DataFrame({LABELS[c]: label_column(labels[c], paths[0], c, policy) for c in present})
    values[list(KEYS)] = labels[list(KEYS)].to_numpy()
    joined = meta.merge(values, on=list(KEYS), how="inner", validate="many_to_one")
    if len(joined) < len(meta):
        log.warning("mimic: %d of %d images have no label row for their study: left out",
                    len(meta) - len(joined), len(meta))
    sid = joined["subject_id"]
    out = pd.DataFrame({
        "path": ("files/p" + sid.str[:2] + "/p" + sid + "/s" + joined["study_id"] + "/"
                 + id_strings(joined["dicom_id"]) + ".jpg"),
        "patient_id": sid,
        "study_id": joined["study_id"],
    })
    out["view"] = norm_view(joined["ViewPosition"])
    out["frontal"] = out["view"].isin(FRONTAL_VIEWS)
    for label in present:
        out[LABELS[label]] = joined[LABELS[label]].to_numpy(dtype=float)
    return out
