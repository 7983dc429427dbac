"""Text summary of a manifest: images and patients per split, finding x split counts, views."""

from __future__ import annotations

import numpy as np

from .manifest import SPLITS, Manifest


def _table(header: list[str], rows: list[list]) -> list[str]:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[j]) for r in cells) for j in range(len(header))]

    def fmt(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths)))

    return [fmt(r) for r in cells]


def summarize(manifest: Manifest) -> str:
    """Counts only: never identifiers."""
    df = manifest.df
    lines = [f"manifest: {manifest.path}", f"image root: {manifest.root}", ""]
    rows = []
    for split in SPLITS + ("all",):
        part = df if split == "all" else df[df["split"] == split]
        rows.append([split, len(part), part["patient_id"].nunique()])
    lines += _table(["split", "images", "patients"], rows) + [""]

    if manifest.findings:
        rows = []
        for finding in manifest.findings:
            for split in SPLITS:
                v = df.loc[df["split"] == split, finding].to_numpy()
                rows.append([finding, split, int((v == 1).sum()), int((v == 0).sum()), int(np.isnan(v).sum())])
        lines += _table(["finding", "split", "positive", "negative", "unknown"], rows) + [""]
    else:
        lines += ["no finding columns", ""]

    views = df["view"].replace("", "(blank)")
    rows = []
    for view in sorted(views.unique()):
        sel = views == view
        rows.append([view] + [int((sel & (df["split"] == s)).sum()) for s in SPLITS] + [int(sel.sum())])
    lines += _table(["view", *SPLITS, "all"], rows)
    return "\n".join(lines)
