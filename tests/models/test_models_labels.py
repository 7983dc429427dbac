"""The one label space: domains and finding sets behind the same calls."""

import math

import numpy as np
import pytest
import torch

from xraystyle.errors import XrayStyleError
from xraystyle.models.labels import LabelSpace

DOMAINS = LabelSpace.for_conditioning("single", ["normal", "effusion", "nodule"])
SETS = LabelSpace.for_conditioning("set-additive", ["effusion", "nodule"])
NAN = float("nan")


def test_kind_is_chosen_once_by_the_conditioning():
    assert DOMAINS.kind == "domains" and DOMAINS.noun == "domain" and DOMAINS.run_name() == "normal-effusion-nodule"
    assert SETS.kind == "finding-sets" and SETS.noun == "finding" and SETS.run_name() == "multilabel-effusion-nodule"
    assert LabelSpace.for_conditioning("set-film", ["a"]).kind == "finding-sets"


def test_targets_parse_and_print_canonically():
    assert DOMAINS.parse("effusion").tolist() == [1] and DOMAINS.text(torch.tensor([2])) == "nodule"
    assert SETS.parse("nodule+effusion").tolist() == [[1.0, 1.0]]
    assert SETS.text(SETS.parse("nodule+effusion")) == "effusion+nodule"
    assert SETS.parse("normal").tolist() == [[0.0, 0.0]] and SETS.text(SETS.parse("")) == "normal"
    with pytest.raises(XrayStyleError, match="unknown target domain 'mass'"):
        DOMAINS.parse("mass")
    with pytest.raises(XrayStyleError, match="unknown finding 'mass'"):
        SETS.parse("effusion+mass")
    with pytest.raises(XrayStyleError, match="multi-label"):
        DOMAINS.edit(["effusion"])


def test_relative_edits_and_source_sets():
    base = torch.tensor([[1.0, NAN]])
    assert SETS.edit(["nodule"], base=base, absent=["effusion"]).tolist() == [[0.0, 1.0]]
    assert SETS.unknown(base) == ["nodule"] and DOMAINS.unknown(torch.tensor([0])) == []
    assert SETS.source(None, given=["nodule"]).tolist() == [[0.0, 1.0]]
    assert SETS.source((1.0, 0.0)).tolist() == [[1.0, 0.0]]
    assert all(math.isnan(v) for v in SETS.source(None)[0].tolist())
    assert DOMAINS.source((1.0, 0.0)) is None  # domain sources are described by a name


def test_grid_targets_and_normal_rows():
    assert [t.tolist() for t in DOMAINS.grid_targets()] == [[0], [1], [2]]
    assert [t.tolist() for t in SETS.grid_targets()] == [[[0, 0]], [[1, 0]], [[0, 1]]]
    assert DOMAINS.normal_rows(torch.tensor([0, 1, 0])).tolist() == [True, False, True]
    assert SETS.normal_rows(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, NAN]])).tolist() == [True, False, False]
    assert LabelSpace.for_conditioning("single", ["effusion", "nodule"]).normal_rows(torch.tensor([0])) is None


def test_counterfactuals_of_a_source():
    notes: list[str] = []
    cfs, text = DOMAINS.counterfactuals("normal", None, notes)
    assert [(c.target, c.title) for c in cfs] == [("effusion", "add effusion"), ("nodule", "add nodule")]
    assert text == "normal" and notes == []
    cfs, text = SETS.counterfactuals(None, torch.tensor([[1.0, NAN]]), notes)
    assert [(c.target, c.title, c.edited) for c in cfs] == [("normal", "remove effusion", "effusion"),
                                                             ("effusion+nodule", "add nodule", "nodule")]
    assert text is None and "nodule" in notes[0]
    cfs, text = SETS.counterfactuals("nodule", None, [])
    assert text == "nodule" and [c.target for c in cfs] == ["effusion+nodule", "normal"]


def test_manifest_labels_counts_and_sampler():
    class _Manifest:  # the two calls the label space makes of a Manifest
        def domain_labels(self, names):
            return [0, 1, -1, 2]

        def finding_matrix(self, names):
            return np.array([[1, 0], [0, np.nan], [1, 1], [0, 0]], dtype=float)

    labels, usable = DOMAINS.from_manifest(_Manifest())
    assert labels.tolist() == [0, 1, -1, 2] and usable.tolist() == [True, True, False, True]
    assert DOMAINS.counts(labels, usable).tolist() == [1, 1, 1]
    assert DOMAINS.sampler(labels, usable, 4, 0, "mixed").indices(3).y_org.shape == (4,)
    sets, usable = SETS.from_manifest(_Manifest())
    assert sets.dtype == np.float32 and usable.all() and SETS.counts(sets, usable).tolist() == [2, 1]
    step = SETS.sampler(sets, usable, 4, 0, "mixed", [["effusion", "nodule"]]).indices(3)
    assert step.y_trg.shape == (4, 2) and not (step.y_trg == 1).all(1).any()  # held-out pair never a target
