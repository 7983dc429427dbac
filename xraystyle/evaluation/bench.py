"""The ``bench phantom`` job: a checkpoint scored by the truth benchmark, ``truth.json`` written.

:func:`run_phantom_bench` is what ``xraystyle bench phantom`` calls: it loads the run, the
phantom cohort (default: the built-in one at the run's image size) restricted to one split, the
attribute oracle calibrated at that size (cached), runs :func:`truth.run_truth_benchmark` and
writes ``truth.json`` (``rows`` plus ``meta``: what was scored, on what, with which settings,
on which machine) and ``truth.md`` (the same rows as tables) atomically.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ConfigError

TRUTH_JSON, TRUTH_MD = "truth.json", "truth.md"


@dataclass(frozen=True)
class BenchRequest:
    checkpoint: Path
    out: Path
    cohort: Path | None = None  # phantom cohort folder or manifest; None: the built-in one
    split: str = "test"
    n_sources: int = 40
    n_styles: int = 6
    n_physics: int = 4
    probe_patients: int = 9
    oracle_patients: int = 400
    seed: int = 0
    device: str = "auto"
    progress: bool = True


def split_rows(rows: list, manifest: Path, split: str) -> tuple[list, str]:
    """The rows of ``split`` (all rows, said in meta, when the manifest has no split column)."""
    import pandas as pd

    df = pd.read_csv(manifest, usecols=lambda c: c in ("path", "split"), dtype=str, keep_default_na=False)
    if "split" not in df.columns:
        return rows, "all rows (the manifest has no split column)"
    keep = set(df.loc[df["split"] == split, "path"])
    chosen = [r for r in rows if r.path in keep]
    if not chosen:
        raise ConfigError(f"{manifest}: no rows of split {split!r} (splits there: "
                          f"{', '.join(sorted(set(df['split'])) or ['none'])})")
    return chosen, split


def run_phantom_bench(req: BenchRequest) -> Path:
    """Score ``req.checkpoint`` on the phantom; returns the path of ``truth.json``."""
    import torch
    from tqdm import tqdm

    from .. import __version__
    from ..atomic import atomic_write
    from ..paths import cache_dir
    from ..phantom.attributes import calibrate_attribute_oracle
    from ..phantom.default import default_phantom_manifest, generator_version
    from ..phantom.ideal import MANIFEST_FILE, read_truth
    from ..trained import load_trained_model
    from ..training.accel import resolve_device
    from .truth import model_tasks, run_truth_benchmark

    start = time.perf_counter()
    out = Path(req.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    dev = resolve_device(req.device)
    model = load_trained_model(req.checkpoint, device=dev)
    tasks = model_tasks(model.labels)
    size = int(model.size)
    cohort = Path(req.cohort) if req.cohort is not None else default_phantom_manifest(size, cache_dir())
    manifest = cohort / MANIFEST_FILE if cohort.is_dir() else cohort
    rows, split_used = split_rows(read_truth(cohort), manifest, req.split)
    for task in tasks:
        n = sum(task.matches(r) for r in rows)
        if n < 2:
            where = f"split {req.split!r}" if split_used == req.split else "the cohort"
            raise ConfigError(f"{manifest}: {where} has {n} source(s) for task {task.name}, at least 2 are needed "
                              "(another --split or a larger cohort)")
    oracle = calibrate_attribute_oracle(size, n=req.oracle_patients, seed=0)

    bar = tqdm(total=len(tasks) * 2 * req.n_sources + (1 if req.probe_patients else 0), desc="bench phantom",
               unit="src", disable=not req.progress, dynamic_ncols=True)

    def step(msg: str) -> None:
        bar.set_postfix_str(msg.split(":")[0], refresh=False)
        bar.update(1)

    try:
        result = run_truth_benchmark(model, rows, size=size, n_sources=req.n_sources, n_styles=req.n_styles,
                                     seed=req.seed, oracle=oracle, progress=step, n_physics=req.n_physics,
                                     tasks=tasks, probe_patients=req.probe_patients)
    finally:
        bar.close()
    meta = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": str(model.checkpoint), "checkpoint_sha256": model.checkpoint_sha256, "step": model.step,
        "labels": model.labels.kind, "domains": list(model.labels.names), "image_size": size,
        "tasks": [t.name for t in tasks],
        "cohort": str(manifest), "cohort_sha256": _sha256(manifest), "split": split_used,
        "n_rows": len(rows), "phantom_generator": generator_version(),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(req).items()
                    if k not in ("checkpoint", "out", "cohort", "progress")},
        "oracle": {"size": oracle.size, "patients": req.oracle_patients, "report": oracle.report},
        "versions": {"xraystyle": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                    "threads": torch.get_num_threads(), "device": str(dev)},
        "elapsed_s": round(time.perf_counter() - start, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / TRUTH_MD, truth_markdown(result, meta).encode(), durable=False)
    path = out / TRUTH_JSON
    atomic_write(path, (json.dumps({"meta": meta, "rows": result}, indent=1) + "\n").encode(), durable=False)
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _fmt(row: dict) -> str:
    if row["value"] is None:
        return "n/a"
    lo, hi = row["ci95"]
    return f"{row['value']:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None else "")


def truth_markdown(rows: list[dict], meta: dict) -> str:
    """One table per task and mode: metrics x models, value [95 % CI]."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    lines = [f"# Truth benchmark: step {meta['step']} of {meta['checkpoint']}", "",
             f"{meta['date']}, {meta['image_size']} px, cohort split {meta['split']}, seed {meta['options']['seed']}, "
             f"{meta['elapsed_s']} s on {meta['machine']['processor']} ({meta['machine']['cpus']} CPUs, "
             f"{meta['machine']['device']}). n: sources (probes: renders / permutations).", ""]
    groups: dict[tuple[str, str], dict[str, dict[str, dict]]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["mode"]), {}).setdefault(r["metric"], {})[r["model"]] = r
    for (task, mode), by_metric in groups.items():
        lines += [f"## {task}, {mode}", "", "| metric | n | " + " | ".join(models) + " |",
                  "|---|---|" + "---|" * len(models)]
        for metric, by_model in by_metric.items():
            n = next(iter(by_model.values()))["n"]
            cells = [_fmt(by_model[m]) if m in by_model else "" for m in models]
            lines.append(f"| {metric} | {n} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
