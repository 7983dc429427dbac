"""Accuracy of the phantom's attribute oracle (xraystyle/phantom/attributes.py; docs/evaluation.md,
"Attribute oracle").

    OMP_NUM_THREADS=1 python experiments/attribute_oracle.py --size 64 --n 400 --seed 0

Calibrates the oracle on the first half of ``n`` phantom patients (ideal renders under random
physics draws) and prints its accuracy on the second half: effusion side accuracy, volume rank
correlation, height error, nodule detection / position / radius, CTR error, and the false-positive
rates on untouched, blurred, globally re-exposed and pure-noise outputs (Wilson 95 % intervals
for rates, bootstrap over patients for Spearman and means). ``--json`` writes the full report.
The calibration is cached (``$XRAYSTYLE_CACHE/attribute_oracle/``); ``--fresh`` ignores it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xraystyle.phantom.attributes import calibrate_attribute_oracle  # noqa: E402

ROWS = [
    ("effusion: side accuracy", ("effusion", "side_accuracy")),
    ("effusion: side accuracy, output re-exposed", ("effusion", "side_accuracy_reexposed")),
    ("effusion: volume Spearman (estimate vs rendered)", ("effusion", "volume_spearman")),
    ("effusion: volume abs. error", ("effusion", "volume_mae")),
    ("effusion: height abs. error (per fluid side, lung heights)", ("effusion", "height_mae")),
    ("effusion: nodule reported", ("effusion", "nodule_fp")),
    ("effusion: cardiomegaly reported", ("effusion", "cardiomegaly_fp")),
    ("nodule: detection rate", ("nodule", "detection")),
    ("nodule: position error (px, detected)", ("nodule", "position_error_px")),
    ("nodule: radius error (px, detected)", ("nodule", "radius_error_px")),
    ("nodule: fluid reported", ("nodule", "fluid_fp")),
    ("cardiomegaly: detected (CTR > 0.5)", ("cardiomegaly", "detection")),
    ("cardiomegaly: CTR abs. error", ("cardiomegaly", "ctr_mae")),
    ("cardiomegaly: CTR Spearman", ("cardiomegaly", "ctr_spearman")),
    ("cardiomegaly alone: fluid reported", ("cardiomegaly", "fluid_fp")),
    ("normal heart: CTR abs. error", ("cardiomegaly", "normal_ctr_mae")),
]
CASES = ("untouched", "blurred", "reexposed", "noise", "reacquired")


def _fmt(m: dict) -> str:
    return f"{m['value']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}] | {m['n']}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--n", type=int, default=400, help="calibration patients (half fit, half test)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--fresh", action="store_true", help="calibrate in a temporary folder")
    ap.add_argument("--json", default=None, help="write the full report here")
    a = ap.parse_args(argv)
    t0 = time.time()
    cache = tempfile.mkdtemp() if a.fresh else a.cache_dir
    oracle = calibrate_attribute_oracle(a.size, a.n, a.seed, cache)
    rep = oracle.report
    print(f"# Attribute oracle, {a.size} px, {rep['protocol']['fit']} fit + {rep['protocol']['test']} test patients, "
          f"seed {a.seed}, generator {rep['protocol']['generator']}")
    print(f"# {platform.node() or 'host'} ({platform.machine()}, {os.cpu_count()} CPUs), "
          f"{datetime.date.today().isoformat()}, {time.time() - t0:.0f} s (0 s = cached)")
    print(f"# thresholds: fluid area {oracle.fluid_threshold:.4f}, nodule peak {oracle.nodule_threshold:.3f}, "
          f"gate R^2 {oracle.r2_limit:.3f}, volume statistic {oracle.volume_feature}")
    print("\n| measure | value [95 % CI] | n |\n|---|---|---|")
    for name, (group, key) in ROWS:
        print(f"| {name} | {_fmt(rep[group][key])} |")
    print("\n| output | anything reported | fluid | nodule | cardiomegaly | passes the gate | n |")
    print("|---|---|---|---|---|---|---|")
    for case in CASES:
        fp = rep["false_positive"][case]
        cells = [f"{fp[k]['value']:.3f} [{fp[k]['ci95'][0]:.3f}, {fp[k]['ci95'][1]:.3f}]"
                 for k in ("any", "fluid", "nodule", "cardiomegaly", "valid")]
        print(f"| {case} | " + " | ".join(cells) + f" | {fp['any']['n']} |")
    if a.json:
        Path(a.json).write_text(json.dumps(oracle.to_json(), indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
