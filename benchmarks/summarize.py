"""Table rows for benchmarks/README.md from the JSON files gpu_check.sh wrote.

    python benchmarks/summarize.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(folder: str) -> None:
    root = Path(folder)
    ceilings = json.loads((root / "ceilings.json").read_text()) if (root / "ceilings.json").exists() else None
    print("| card | config | size | batch | mode | ms / iter (median) | wall ms / iter | peak GiB | date | command |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    notes = []
    for path in sorted(root.glob("*.json")):
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or "rows" not in data:
            continue
        for r in data["rows"]:
            print(f"| {r['card']} | {r['config']} | {r['size']} | {r['batch']} | {r['mode']} | {r['ms_per_iter']} "
                  f"| {r['ms_per_iter_wall']} | {r['peak_mem_gib']} | {r['date']} | `{data['command']}` |")
        if "agreement" in data:
            a = data["agreement"]
            bad = [t["term"] for t in a["terms"] if not t["ok"]]
            notes.append(f"{path.name}: loss curves over {a['steps']} steps agree: "
                         f"{'yes' if a['ok'] else 'NO (' + ', '.join(bad) + ')'}")
    if ceilings:
        notes.append("ceilings: " + ", ".join(f"{k} {v}" for k, v in ceilings.items()))
    print("\n".join(notes))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
