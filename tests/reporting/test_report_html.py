import base64
import io
import sys
import types
from collections import Counter
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.synthesis.helpers import FakeClassifier, write_canary_dicom, write_png
from xraystyle.cli import app
from xraystyle.cohorts.manifest import write_manifest
from xraystyle.reporting.counterfactual import build_report
from xraystyle.reporting.html import render_report
from xraystyle.synthesis import load_reference, load_source

runner = CliRunner()


class Page(HTMLParser):
    """Tags, attributes and text of a page, for structural checks."""

    def __init__(self, text):
        super().__init__()
        self.tags, self.imgs, self.text, self.cells, self.links = Counter(), [], [], [], []
        self._cell = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags[tag] += 1
        attrs = dict(attrs)
        if tag == "img":
            self.imgs.append(attrs)
        if tag == "a":
            self.links.append(attrs["href"])
        if tag == "meta" and attrs.get("http-equiv") == "Content-Security-Policy":
            self.csp = attrs["content"]
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def panels(self):
        return Counter(i["data-panel"] for i in self.imgs)


def _decode(img_attrs):
    prefix = "data:image/png;base64,"
    assert img_attrs["src"].startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(img_attrs["src"][len(prefix):]))).convert("RGB"))


def _assert_self_contained(page, text):
    assert page.tags["script"] == 0 and page.tags["link"] == 0 and page.tags["iframe"] == 0
    assert all(not h.startswith(("http", "//", "javascript")) for h in page.links)
    assert "default-src 'none'" in page.csp
    assert all(i["src"].startswith("data:image/png;base64,") for i in page.imgs)
    assert "http://" not in text and "https://" not in text and "url(" not in text


def test_report_panels_numbers_and_mark(model, tmp_path):
    src = load_source(write_png(tmp_path / "a.png"), model.preprocess)
    ref = load_reference(write_png(tmp_path / "r.png", bright_bottom=True), "effusion", model)
    clf = FakeClassifier()
    report = build_report(model, src, source_domain="normal", n_styles=3, seed=5, references=[ref],
                          classifier=clf, classifier_name="fake-clf")
    text = render_report(report)
    page = Page(text)
    _assert_self_contained(page, text)
    assert page.panels() == Counter({"source": 2, "counterfactual-latent": 3, "counterfactual-reference": 1,
                                     "difference": 4, "diff-colorbar": 1, "variability": 1, "std-colorbar": 1,
                                     "reference": 1, "classifier-chart": 1})
    body = " ".join(page.text)
    assert "SYNTHETIC - research use, not for diagnosis" in body and "add effusion" in body
    # Charted findings: the model's (effusion), matched to the classifier's "Effusion".
    assert report.findings == ["Effusion"]
    panel_probs = [p.probs[0] for p in report.sections[0].panels]
    for value in [report.source_probs[0], *panel_probs]:
        assert f"{value:.3f}" in page.cells
    shift = np.mean(panel_probs) - report.source_probs[0]
    assert f"{shift:+.3f}" in page.cells and report.sections[0].key_shift == pytest.approx(shift)
    # One shared scale: it covers 99.5 % of all differences (a few extreme pixels may exceed it).
    every = np.concatenate([np.abs(p.diff).ravel() for p in report.sections[0].panels])
    assert (every <= report.diff_limit).mean() >= 0.995
    provenance = dict(zip(page.cells[::2], page.cells[1::2]))
    assert provenance["model checkpoint sha256"] == model.checkpoint_sha256
    assert provenance["source content sha256 (pixels)"] == src.sha256
    assert provenance["seed"] == "5" and provenance["training step"] == "4"
    # Counterfactual images carry the amber SYNTHETIC strip below the enlarged image, the source does not.
    cf = _decode(next(i for i in page.imgs if i["data-panel"] == "counterfactual-latent"))
    source = _decode(next(i for i in page.imgs if i["data-panel"] == "source"))
    assert cf.shape[1] == 32 * 6 and cf.shape[0] > cf.shape[1]
    strip = cf[cf.shape[1]:]
    assert (np.abs(strip.astype(int) - [255, 176, 0]).sum(axis=2) < 10).mean() > 0.5
    assert not (np.abs(source[source.shape[1]:].astype(int) - [255, 176, 0]).sum(axis=2) < 10).any()
    assert len(clf.calls) == 1 and clf.calls[0][0] == 5  # one batch: source + 4 counterfactuals


def test_unknown_source_domain_shows_every_target(model, tmp_path):
    src = load_source(write_png(tmp_path / "a.png"), model.preprocess)
    report = build_report(model, src, n_styles=1)
    assert [s.target for s in report.sections] == ["normal", "effusion"]
    assert [s.title for s in report.sections] == ["to normal (no finding)", "to effusion"]
    assert all(s.std is None for s in report.sections)
    page = Page(render_report(report))
    assert "variability" not in page.panels() and page.panels()["difference"] == 2


@pytest.fixture
def fake_classifier_module(monkeypatch):
    calls = []

    def load_classifier(spec, weights_dir=None):
        calls.append((spec, weights_dir))
        return FakeClassifier()

    module = types.ModuleType("xraystyle.evaluation.classifier")
    module.load_classifier = load_classifier
    monkeypatch.setitem(sys.modules, "xraystyle.evaluation.classifier", module)
    return calls


def test_cli_single_report_with_classifier_and_pdf(checkpoint, tmp_path, fake_classifier_module):
    out = tmp_path / "reports" / "one"
    r = runner.invoke(app, ["report", "--checkpoint", str(checkpoint), "--input", str(write_png(tmp_path / "a.png")),
                            "--source-domain", "effusion", "--classifier", "fake-spec", "--findings",
                            "cardiomegaly,effusion", "--n-styles", "2", "--pdf", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert fake_classifier_module == [("fake-spec", None)]
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.pdf"]
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")
    text = (out / "report.html").read_text()
    page = Page(text)
    _assert_self_contained(page, text)
    assert "remove effusion" in " ".join(page.text)
    assert "Cardiomegaly" in page.cells and "Effusion" in page.cells and "Nodule" not in page.cells


def test_cli_cohort_mode_writes_reports_and_index(checkpoint, tmp_path):
    root = tmp_path / "cohort"
    for i in range(3):
        write_png(root / "img" / f"im{i}.png", seed=i, bright_bottom=bool(i % 2))
    (root / "img" / "broken.png").write_bytes(b"\x89PNG broken")
    rows = [{"path": f"img/im{i}.png", "patient_id": f"p{i}", "study_id": "", "view": "PA", "split": "test",
             "effusion": i % 2} for i in range(3)]
    rows.insert(1, {"path": "img/broken.png", "patient_id": "px", "study_id": "", "view": "PA", "split": "test",
                    "effusion": 0})
    manifest = write_manifest(pd.DataFrame(rows), root / "manifest.csv").path
    out = tmp_path / "cohort-reports"
    r = runner.invoke(app, ["report", "--checkpoint", str(checkpoint), "--manifest", str(manifest), "--limit", "3",
                            "--n-styles", "1", "--no-progress", "--out", str(out)])
    assert r.exit_code == 1
    assert "skipped manifest row 2" in r.stderr and "broken" not in r.stderr
    reports = sorted(p.name for p in out.glob("src-*.html"))
    assert len(reports) == 2
    text = (out / "index.html").read_text()
    page = Page(text)
    _assert_self_contained(page, text)
    assert sorted(page.links) == reports
    assert "normal" in page.cells and "effusion" in page.cells  # domains from the manifest rows
    assert "1 image(s) could not be read" in text
    one = Page((out / reports[0]).read_text())
    assert one.panels()["counterfactual-latent"] == 1  # one target: the other domain


@pytest.mark.filterwarnings("ignore:The value length")
def test_script_in_a_dicom_field_is_escaped(checkpoint, tmp_path):
    src = write_canary_dicom(tmp_path / "x.dcm", ViewPosition="<script>alert(1)</script>",
                             BodyPartExamined="CHEST\"><img src=x>", BurnedInAnnotation="YES")
    out = tmp_path / "rep"
    r = runner.invoke(app, ["report", "--checkpoint", str(checkpoint), "--input", str(src), "--n-styles", "1",
                            "--out", str(out)])
    assert r.exit_code == 0, r.output
    text = (out / "report.html").read_text()
    page = Page(text)
    assert page.tags["script"] == 0 and all(i["src"].startswith("data:") for i in page.imgs)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script>" not in text and '"><img src=x>' not in text
    assert "declares burned-in annotation" in text


def _one_line_error(r, needle):
    assert r.exit_code == 1, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xraystyle: error: ") and needle in lines[0], r.stderr


def test_cli_errors(checkpoint, tmp_path, monkeypatch):
    png = write_png(tmp_path / "a.png")
    base = ["report", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o")]
    r = runner.invoke(app, [*base, "--input", str(tmp_path / "Doe_Jane_1.png")])
    _one_line_error(r, "--input: no such file")
    assert "Doe_Jane" not in r.stderr
    _one_line_error(runner.invoke(app, [*base]), "either --input")
    _one_line_error(runner.invoke(app, [*base, "--input", str(png), "--source-domain", "nodule"]),
                    "unknown target domain 'nodule'")
    _one_line_error(runner.invoke(app, [*base, "--input", str(png), "--n-styles", "0"]), "--n-styles must be at least 1")
    _one_line_error(runner.invoke(app, [*base, "--input", str(png), "--findings", "effusion"]), "give --classifier too")
    _one_line_error(runner.invoke(app, [*base, "--input", str(png), "--reference", str(png), "--reference", str(png),
                                        "--reference-domain", "effusion", "--reference-domain", "normal",
                                        "--reference-domain", "normal"]), "one per reference")
    monkeypatch.setitem(sys.modules, "xraystyle.evaluation.classifier", None)  # import fails
    _one_line_error(runner.invoke(app, [*base, "--input", str(png), "--classifier", "x"]),
                    "classifier support is not available")
