"""What can this generator reach if it is shown the answer? (issue #16, tenth round.)

    python experiments/supervised_bound.py runs/phantom-truth/runs/default-s0 --steps 24000 --out bound.json
    python experiments/supervised_bound.py runs/phantom-truth/runs/default-s0 --task add --steps 4000 --out add.json

A diagnostic of the removal target, never a method (the toolkit trains on unpaired images; a
phantom pair used here is the answer a real cohort does not have). A copy of the run's G (its EMA
weights, the run's fixed normal style) is trained with an L1 loss to the **ideal removal** (the
same patient, acquisition and noise rendered without fluid) on the built-in cohort's training
effusions, then its removals are read by the benchmark's oracle: the test split's effusion sources
(the benchmark's, in its seeded order) and as many training sources. Before any step it scores the
run's own G the same way (the benchmark's ``remove_validity`` of the run, as a check of the path).

The two shares answer what the ninth round left open. If a G shown the answer clears the *test*
sources, the image holds enough to restore each patient's hidden lung and a removal objective can
in principle teach it; if it clears the training sources and not the test ones, it learns each
answer by heart and the outline under the fluid is not in the image (at this size and capacity).
Beside the shares: the mean |removal - ideal| inside the fluid mask and outside it.

``--task add`` asks the same of reference guidance: copies of G and E are trained together (G
alone with ``--frozen-e``: does the run's E already carry what G needs?), with
an L1 loss from G(x, E(x_ref)) to the ideal (a normal training source rendered with the
reference's effusion: side, volume, meniscus, density; the reference another training patient
rendered with an effusion of a side and volume drawn from the benchmark's prior), and scored by
the truth benchmark itself on its normal -> effusion task (in-memory networks, the benchmark's
sources, references and seed; no probes): does the reference's volume and side reach the output
when the objective asks for exactly that?
"""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _args():
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--task", choices=("remove", "add"), default="remove")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--n-sources", type=int, default=29, help="removal: test and training sources scored")
    p.add_argument("--pairs", type=int, default=2000, help="add: training pairs rendered")
    p.add_argument("--seed", type=int, default=0, help="the benchmark's seed and the batches' seed")
    p.add_argument("--frozen-e", action="store_true",
                   help="add: train G alone, E as the run left it (does E's code of a reference carry enough?)")
    p.add_argument("--out", type=Path)
    return p.parse_args()


def _tensor(arrs):
    import torch

    return torch.from_numpy(np.stack(arrs).astype(np.float32))[:, None]


def main() -> None:
    import torch

    from experiments.phantom_runs import load_phantom_run
    from xraystyle.evaluation.bench import split_rows
    from xraystyle.evaluation.truth import model_tasks
    from xraystyle.paths import cache_dir
    from xraystyle.phantom.default import default_phantom_manifest
    from xraystyle.phantom.ideal import MANIFEST_FILE, read_truth

    a = _args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    setup = load_phantom_run(a.run, order_seed=a.seed)
    model = setup.model
    (task,) = [t for t in model_tasks(model.labels) if t.kind == a.task]
    cohort = default_phantom_manifest(setup.size, cache_dir())
    manifest = cohort / MANIFEST_FILE if cohort.is_dir() else cohort
    rows = read_truth(cohort)
    train_rows = split_rows(rows, manifest, "train")[0]
    if a.task == "remove":
        bound = RemovalBound(setup, task, train_rows, a)
    else:  # the benchmark orders the test split itself
        bound = AddBound(setup, task, train_rows, split_rows(rows, manifest, "test")[0], a)

    nets = {k: copy.deepcopy(model.nets[k]) for k in ("G", "F", "E")}
    trained = ("G",) if a.task == "remove" or a.frozen_e else ("G", "E")
    params = [q for k in trained for q in nets[k].parameters()]
    for q in params:
        q.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=a.lr, betas=(0.0, 0.99))
    out = {"run": str(a.run), "task": task.name, "trained": list(trained), "steps": a.steps,
           "batch_size": a.batch_size, "lr": a.lr, **bound.sizes, "evals": {}}

    def evaluate(step: int, l1: float | None) -> None:
        r = out["evals"][step] = {"train_l1": l1, **bound.score(nets)}
        print(f"step {step}: train L1 {l1}; {bound.say(r)}", flush=True)

    evaluate(0, None)
    gen = torch.Generator().manual_seed(a.seed)
    t0, running = time.time(), []
    for step in range(1, a.steps + 1):
        idx = torch.randint(0, bound.n_train, (a.batch_size,), generator=gen)
        x_fake, x_ideal = bound.forward(nets, idx)
        loss = (x_fake - x_ideal).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running.append(loss.item())
        if step % a.eval_every == 0 or step == a.steps:
            evaluate(step, round(float(np.mean(running[-200:])), 4))
    out["seconds"] = round(time.time() - t0, 1)
    if a.out:
        a.out.write_text(json.dumps(out, indent=1))


class RemovalBound:
    """Training effusions and their fluid-free renders; scored by the oracle on the benchmark's
    removal sources (and as many training sources), as ``remove_validity`` reads them."""

    def __init__(self, setup, task, train_rows, a):
        import torch
        from PIL import Image

        from xraystyle.evaluation.truth import _lung_source
        from xraystyle.models.style import style_code
        from xraystyle.phantom.attributes import patient_baseline

        self.setup, self.task = setup, task
        size = setup.size
        self.train_rows = [r for r in train_rows if task.matches(r)]
        self.test_rows = [r for r in setup.rows if task.matches(r)][:a.n_sources]

        def pairs(rows):
            src, ideal, masks = [], [], []
            for row in rows:
                img, mask = setup.renderer.render(row)  # the source and its fluid mask
                src.append(img)
                ideal.append(setup.renderer.render(row, remove=task.remove)[0])
                masks.append(np.asarray(Image.fromarray(np.asarray(mask, bool)).resize((size, size), Image.NEAREST)))
            return _tensor(src), _tensor(ideal), np.stack(masks)

        self.train = pairs(self.train_rows)
        self.test = pairs(self.test_rows)
        self.n_train = len(self.train_rows)
        self.scored_train = list(range(min(a.n_sources, self.n_train)))
        self.bases = {id(r): patient_baseline(r.seed, size, r.physics, lung_source=_lung_source(r))
                      for r in self.train_rows + self.test_rows}
        y = setup.model.labels.parse("normal")
        with torch.no_grad():
            self.s_normal = style_code(setup.model.nets, y, z=torch.zeros(1, setup.model.latent_dim),
                                       fixed=setup.model.fixed(y))
        self.sizes = {"train_pairs": self.n_train, "test_sources": len(self.test_rows)}
        self._ideal_clear: dict[int, bool] = {}

    def forward(self, nets, idx):
        x_real, x_ideal, _ = self.train
        return nets["G"](x_real[idx], self.s_normal.expand(len(idx), -1)), x_ideal[idx]

    def _clear(self, row, image, cache: bool = False) -> bool:
        """The oracle reads ``image`` as this patient without fluid (the ideal's reading once)."""
        if cache and id(row) in self._ideal_clear:
            return self._ideal_clear[id(row)]
        r = self.setup.oracle.measure(image, self.bases[id(row)])
        flag = bool(r.valid and r.side == "none")
        if cache:
            self._ideal_clear[id(row)] = flag
        return flag

    def _score(self, G, rows, x, x_ideal, masks) -> dict:
        import torch

        with torch.no_grad():
            out = torch.cat([G(x[i:i + 32], self.s_normal.expand(len(x[i:i + 32]), -1)).clamp(-1, 1)
                             for i in range(0, len(x), 32)])
        clear = [self._clear(row, o) for row, o in zip(rows, out[:, 0].numpy())]
        ideal_clear = [self._clear(row, ideal, cache=True) for row, ideal in zip(rows, x_ideal[:, 0].numpy())]
        diff = (out - x_ideal).abs()[:, 0].numpy()
        return {"clear": f"{sum(clear)}/{len(clear)}", "ideal_clear": f"{sum(ideal_clear)}/{len(ideal_clear)}",
                "remove_validity": round(sum(clear) / max(1, sum(ideal_clear)), 3),
                "l1_inside_fluid": round(float(diff[masks].mean()), 4),
                "l1_outside_fluid": round(float(diff[~masks].mean()), 4)}

    def score(self, nets) -> dict:
        k = self.scored_train
        x, x_ideal, masks = self.train
        return {"test": self._score(nets["G"], self.test_rows, *self.test),
                "train": self._score(nets["G"], [self.train_rows[i] for i in k], x[k], x_ideal[k], masks[k])}

    @staticmethod
    def say(r) -> str:
        test, train = r["test"], r["train"]
        return (f"test removals clear {test['clear']} (ideal {test['ideal_clear']}), |out - ideal| inside "
                f"{test['l1_inside_fluid']} outside {test['l1_outside_fluid']}; training sources clear "
                f"{train['clear']}, inside {train['l1_inside_fluid']}")


class AddBound:
    """Pairs (normal training source, another training patient with a drawn effusion) and the
    source rendered with that effusion; scored by the truth benchmark's normal -> effusion task."""

    METRICS = ("ref_volume_spearman", "ref_side_accuracy", "add_validity", "phys_transfer_spearman",
               "cf_ssim_vs_ideal_outside")

    def __init__(self, setup, task, train_rows, test_rows, a):
        from xraystyle.evaluation.truth import EFFUSION_SIDES, VOLUME_PRIOR, _full_effusion

        self.setup, self.task, self.seed, self.test_rows = setup, task, a.seed, test_rows
        rng = np.random.default_rng([a.seed, 10])
        sources = [r for r in train_rows if task.matches(r)]
        src, ref, ideal = [], [], []
        for _ in range(a.pairs):
            row = sources[rng.integers(len(sources))]
            first = train_rows[rng.integers(len(train_rows))]
            attrs = {"side": EFFUSION_SIDES[rng.integers(3)], "volume": round(float(rng.uniform(*VOLUME_PRIOR)), 5)}
            src.append(setup.renderer.render(row)[0])
            ref.append(setup.renderer.render(first, add={"effusion": attrs})[0])
            ideal.append(setup.renderer.render(row, add={"effusion": _full_effusion(first, attrs)})[0])
        self.x_real, self.x_ref, self.x_ideal = _tensor(src), _tensor(ref), _tensor(ideal)
        self.y = setup.model.labels.parse("effusion")
        self.n_train = a.pairs
        self.sizes = {"train_pairs": a.pairs, "train_sources": len(sources)}

    def forward(self, nets, idx):
        from xraystyle.models.style import style_code

        y = self.y.repeat(len(idx))
        return nets["G"](self.x_real[idx], style_code(nets, y, x_ref=self.x_ref[idx])), self.x_ideal[idx]

    def score(self, nets) -> dict:
        from xraystyle.evaluation.truth import run_truth_benchmark
        from xraystyle.trained import TrainedModel

        m = self.setup.model
        model = TrainedModel.from_networks(nets, m.args)
        rows = run_truth_benchmark(model, self.test_rows, size=self.setup.size, n_sources=40, n_styles=6,
                                   seed=self.seed, oracle=self.setup.oracle, tasks=(self.task,), probe_patients=0)
        return {r["metric"]: {"value": r["value"], "ci95": r["ci95"]} for r in rows
                if r["model"] == "run" and r["mode"] == "reference" and r["metric"] in self.METRICS}

    @staticmethod
    def say(r) -> str:
        return ", ".join(f"{k} {v['value']:.3f}" for k, v in r.items() if isinstance(v, dict))


if __name__ == "__main__":
    main()
