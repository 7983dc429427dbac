"""ONE label space for single-domain and finding-set models.

A model is conditioned on labels ``y`` of one of two kinds, chosen once by the conditioning:

- **domains** (``conditioning: single``): ``y`` is a LongTensor ``[B]`` of indices into
  ``names`` (``normal, effusion, ...``); "normal" is the row positive for none of the others.
- **finding sets** (``set-additive`` / ``set-film``): ``y`` is a FloatTensor ``[B, K]`` over the
  K findings in ``names``, 1 present / 0 absent / NaN unknown; "normal" is the empty set.

Everything that depends on that choice lives here: parsing a target written as text and writing
one back, a source's own label, labels of manifest rows, the training sampler, the sample-grid
targets, which rows take the deterministic normal style, and the counterfactuals a report
shows. The rest of the toolkit asks the label space and never branches on the kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..cohorts.vocabulary import NORMAL
from ..errors import XrayStyleError
from .conditioning import is_set_conditioning


@dataclass(frozen=True)
class Counterfactual:
    """One counterfactual a report shows for a source: target text, title, edited finding."""

    target: str
    title: str
    edited: str | None = None  # finding sets: the finding added or removed


@dataclass(frozen=True)
class LabelSpace:
    names: tuple[str, ...]  # domains, or findings (finding sets)
    multi_label: bool  # finding sets (multi-hot y) rather than domain indices

    @classmethod
    def for_conditioning(cls, conditioning: str, names: Sequence[str]) -> "LabelSpace":
        return cls(tuple(names), is_set_conditioning(conditioning))

    # ------------------------------------------------------------------ naming

    @property
    def kind(self) -> str:
        """``domains`` or ``finding-sets`` (as written in metrics and reports)."""
        return "finding-sets" if self.multi_label else "domains"

    @property
    def noun(self) -> str:
        return "finding" if self.multi_label else "domain"

    def run_name(self) -> str:
        """Default run folder name: ``normal-effusion`` or ``multilabel-effusion-nodule``."""
        return ("multilabel-" if self.multi_label else "") + "-".join(self.names)

    # ------------------------------------------------------------------ text <-> y

    def _index(self, name: str) -> int:
        if name not in self.names:
            raise XrayStyleError(f"unknown {'finding' if self.multi_label else 'target domain'} {name!r}; "
                                 f"this model knows: {', '.join(self.names)}")
        return self.names.index(name)

    def parse(self, text: str) -> torch.Tensor:
        """``y`` (batch of one) for a target written as text: a domain name, or a finding set
        written ``effusion+nodule`` (``normal`` or an empty string is the empty set)."""
        if not self.multi_label:
            return torch.tensor([self._index(text)], dtype=torch.long)
        return self.edit([n.strip() for n in text.split("+") if n.strip() and n.strip() != NORMAL])

    def text(self, y: torch.Tensor) -> str:
        """The canonical text of one label (``effusion+nodule`` whatever order it was written in)."""
        if not self.multi_label:
            return self.names[int(y.reshape(-1)[0])]
        return "+".join(d for d, v in zip(self.names, y.reshape(-1).tolist()) if v == 1.0) or NORMAL

    def edit(self, present: Sequence[str], base: torch.Tensor | None = None,
             absent: Sequence[str] = ()) -> torch.Tensor:
        """A finding set [1, K]: ``base`` (default: the empty set; unknown becomes absent) with
        ``present`` findings added and ``absent`` ones removed (relative edits)."""
        if not self.multi_label:
            raise XrayStyleError("finding sets need a multi-label model (trained with --findings)")
        y = torch.zeros(1, len(self.names)) if base is None else torch.nan_to_num(base.float().reshape(1, -1))
        for name, value in [(n, 1.0) for n in present] + [(n, 0.0) for n in absent]:
            y[0, self._index(name)] = value
        return y

    def source(self, findings: Sequence[float] | None, given: Sequence[str] | None = None) -> torch.Tensor | None:
        """A source's own finding set [1, K] (NaN = unknown): the ``given`` names (all others
        absent), else a manifest row's values, else all unknown. None for domain models, whose
        sources are described by a domain name instead."""
        if not self.multi_label:
            return None
        if given is not None:
            return self.edit(given)
        if findings is not None:
            return torch.tensor([list(findings)], dtype=torch.float32)
        return torch.full((1, len(self.names)), float("nan"))

    def unknown(self, y: torch.Tensor) -> list[str]:
        """Findings whose value in the set ``y`` is unknown (none for domain labels)."""
        if not self.multi_label:
            return []
        return [d for d, v in zip(self.names, y.reshape(-1).tolist()) if v != v]

    # ------------------------------------------------------------------ manifest rows, training

    def from_manifest(self, manifest) -> tuple[np.ndarray, np.ndarray]:
        """(labels, usable) of every manifest row: domain index [N] (-1 = not usable) or finding
        set [N, K] float32 with NaN for unknown (every row usable)."""
        if self.multi_label:
            labels = manifest.finding_matrix(list(self.names)).astype(np.float32)
            return labels, np.ones(len(labels), bool)
        labels = np.asarray(manifest.domain_labels(list(self.names)), dtype=np.int64)
        return labels, labels >= 0

    def counts(self, labels: np.ndarray, usable: np.ndarray) -> np.ndarray:
        """Per name: usable images of the domain, or positive images of the finding."""
        if self.multi_label:
            return np.nansum(labels[usable] == 1.0, axis=0).astype(int)
        return np.bincount(labels[usable], minlength=len(self.names))

    def sampler(self, labels: np.ndarray, usable: np.ndarray, batch_size: int, seed: int,
                target_policy: str, holdout_combinations: Sequence[Sequence[str]] = ()):
        """The step-indexed sampler of training batches for these labels."""
        from ..data.sampling import BalancedStepSampler, SetStepSampler

        if self.multi_label:
            holdout = np.array([[d in combo for d in self.names] for combo in holdout_combinations],
                               dtype=bool).reshape(-1, len(self.names))
            return SetStepSampler(labels, usable, batch_size, seed, target_policy, holdout)
        # Single domains: "toggle" (change the label) draws targets among the other domains only.
        return BalancedStepSampler(np.where(usable, labels, -1), len(self.names), batch_size, seed,
                                   cross=target_policy == "toggle")

    def grid_targets(self) -> list[np.ndarray]:
        """Sample-grid columns: each domain, or the empty set and each single finding."""
        k = len(self.names)
        if not self.multi_label:
            return [np.array([d], dtype=np.int64) for d in range(k)]
        eye = np.eye(k, dtype=np.float32)
        return [np.zeros((1, k), np.float32)] + [eye[j:j + 1] for j in range(k)]

    def normal_rows(self, y: torch.Tensor) -> torch.Tensor | None:
        """Bool (B,) mask of the normal labels (the empty set, or the "normal" domain); None
        when there is no normal label (domains without "normal", e.g. effusion <-> cardiomegaly).
        A set with an unknown finding is not the empty set."""
        if self.multi_label:
            return (y == 0).all(dim=1)
        if NORMAL not in self.names:
            return None
        return y == self.names.index(NORMAL)

    def fixed_style_rows(self, y: torch.Tensor, normal_style: str) -> torch.Tensor | None:
        """Rows of ``y`` whose style is the deterministic normal one: the normal rows with
        ``model.normal_style: fixed``, None with ``sampled`` (every target has diverse styles)."""
        return self.normal_rows(y) if normal_style == "fixed" else None

    # ------------------------------------------------------------------ counterfactuals of a source

    def counterfactuals(self, source_text: str | None, source_set: torch.Tensor | None,
                        notes: list[str]) -> tuple[list[Counterfactual], str | None]:
        """What a report shows for one source, and the source's label as text.

        Domains: every domain but the source's own (all when it is unknown). Finding sets: per
        finding, *remove f* when the source has it and *add f* otherwise, applied to the source's
        own set (``source_set``, else ``source_text``); unknown findings are taken as absent and
        named in ``notes``, and the source's text is then None."""
        if not self.multi_label:
            if source_text is not None:
                self._index(source_text)
            return [Counterfactual(d, action_title(source_text, d)) for d in self.names if d != source_text], source_text
        if source_set is None:
            source_set = (self.parse(source_text) if source_text is not None
                          else torch.full((1, len(self.names)), float("nan")))
        base = source_set.float().reshape(1, -1)
        unknown = self.unknown(base)
        if unknown:
            notes.append(f"source findings unknown: {', '.join(unknown)} (taken as absent: the report adds them)")
        edits = []
        for name, value in zip(self.names, base[0].tolist()):
            has = value == 1.0
            y = self.edit([] if has else [name], base=base, absent=[name] if has else [])
            edits.append(Counterfactual(self.text(y), f"{'remove' if has else 'add'} {name}", name))
        return edits, None if unknown else self.text(base)


def action_title(source_domain: str | None, target: str) -> str:
    """How a domain-to-domain counterfactual is titled (``add effusion``, ``remove nodule``...)."""
    if source_domain is None:
        return "to normal (no finding)" if target == NORMAL else f"to {target}"
    if target == NORMAL:
        return f"remove {source_domain}"
    if source_domain == NORMAL:
        return f"add {target}"
    return f"replace {source_domain} with {target}"
