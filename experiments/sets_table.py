"""Markdown table of multi-label evaluations (``xraystyle eval`` on finding-set models).

    python experiments/sets_table.py NAME=eval/metrics.json [NAME=...] [--mode latent] [--kinds set]

One row per (run, task): the judge's validity and target rate next to the phantom oracle's,
the share of outputs in which each finding appeared (oracle), identity outside the edited
findings and the exposure spread. Rows of several seeds of one design can be averaged with
``--group`` (the part of NAME before the last ``-s``).
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

KEYS = [("validity", "judge validity"), ("target_rate", "judge target rate"), ("oracle_validity", "oracle validity"),
        ("oracle_target_rate", "oracle target rate")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="NAME=path/to/metrics.json")
    p.add_argument("--mode", default="latent")
    p.add_argument("--kinds", default="add,remove,set")
    p.add_argument("--group", action="store_true", help="average runs named DESIGN-sSEED over seeds")
    a = p.parse_args()
    kinds = a.kinds.split(",")
    cells: dict[tuple[str, str], list[dict]] = defaultdict(list)
    findings: list[str] = []
    for spec in a.runs:
        name, path = spec.split("=", 1)
        m = json.loads(Path(path).read_text())
        findings = m["meta"]["domains"]
        group = name.rsplit("-s", 1)[0] if a.group else name
        for r in m["pairs"]:
            if r["mode"] == a.mode and r["kind"] in kinds and "validity" in r:
                label = r["target"] + (" (held out)" if r.get("held_out") else "")
                cells[(group, label)].append(r)
    keys = KEYS + [(f"judge_present/{f}", f"{f} (judge)") for f in findings] + [
        (f"oracle_added/{f}", f"{f} appeared (oracle)") for f in findings] + [
        ("identity_ssim", "SSIM outside"), ("exposure_spread_ratio", "exposure spread / real")]
    print("| run | task | n | " + " | ".join(k[1] for k in keys) + " |")
    print("|---|---|---|" + "---|" * len(keys))
    for (group, label), rows in cells.items():
        vals = []
        for k, _ in keys:
            v = np.array([r.get(k, math.nan) for r in rows], float)
            v = v[np.isfinite(v)]
            vals.append("–" if not len(v) else f"{v.mean():.2f}" + (f" ± {v.std(ddof=1):.2f}" if len(v) > 1 else ""))
        print(f"| {group} | {label} | {len(rows)} | " + " | ".join(vals) + " |")


if __name__ == "__main__":
    main()
