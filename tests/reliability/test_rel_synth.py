"""Synthesis and reports: deterministic outputs, hostile checkpoints and names refused, DICOM
text escaped and never fetched, identifiers absent from every output."""

from __future__ import annotations

import re
import warnings
from html.parser import HTMLParser
from pathlib import Path

import pytest

from .conftest import cli, one_line_error, write_evil_checkpoint
from .hostile import IDENTIFYING_STEM, canary_dicom, scan_for_canaries

INJECTION = {
    "ViewPosition": '"><script>alert(1)</script>',
    "BodyPartExamined": "<img src=http://evil.example/x.png onerror=alert(2)>",
    "Modality": "<iframe src=//evil.example>",
}


class _Tags(HTMLParser):
    """Every real tag and attribute of a page (text content, escaped or not, is not a tag)."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.styles: list[str] = []
        self._in_style = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


def assert_inert_and_self_contained(page: bytes) -> None:
    """No script-capable element or handler; every resource inline (data:) or a local page."""
    parsed = _Tags(page.decode("utf-8"))
    for tag, attrs in parsed.tags:
        assert tag not in ("script", "iframe", "object", "embed", "frame", "base", "link", "form"), tag
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            if name in ("src", "href", "srcset", "poster", "action", "data") and value:
                assert value.startswith(("data:", "#")) or re.fullmatch(r"[\w.-]+\.html", value), (tag, name, value)
        if "style" in attrs:
            assert "url(" not in attrs["style"]
    assert not any(re.search(r"url\(\s*['\"]?\s*(?!data:)|@import", css) for css in parsed.styles)


def _synth(checkpoint, source, out, *extra):
    return cli("synth", "--checkpoint", checkpoint, "--source", source, "--out", out, "--no-progress", *extra)


@pytest.fixture(scope="module")
def sources(tmp_path_factory, cohort):
    """Three PNG sources copied from the session cohort."""
    folder = tmp_path_factory.mktemp("sources")
    for rel in list(cohort.df["path"])[:3]:
        (folder / Path(rel).name).write_bytes(cohort.resolve(rel).read_bytes())
    return folder


@pytest.fixture(scope="module")
def canary_sources(tmp_path_factory):
    """Two identifier-laden DICOMs with identifying file names; one also carries HTML/script
    injections in the text elements a report shows (view position, body part, modality)."""
    folder = tmp_path_factory.mktemp("canary-src")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the over-long CS values
        (folder / f"{IDENTIFYING_STEM}_a.dcm").write_bytes(canary_dicom(seed=1))
        (folder / f"{IDENTIFYING_STEM}_b.dcm").write_bytes(canary_dicom(seed=2, **INJECTION))
    return folder


def test_synthesis_is_byte_identical_for_a_fixed_seed_and_checkpoint(reference_run, sources, tmp_path):
    outs = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        r = _synth(reference_run, sources, tmp_path / name, "--target", "effusion", "--n-styles", 2, "--seed", seed,
                   "--format", "both")
        assert r.exit_code == 0, r.output
        outs.append(tmp_path / name)
    a, b, c = ({p.name: p.read_bytes() for p in out.iterdir()} for out in outs)
    assert set(a) == set(b) and len([n for n in a if n.endswith(".png")]) == 6
    for name in a:  # images, derived DICOMs (UIDs derive from the inputs), provenance, index
        assert a[name] == b[name], f"{name} differs between two runs with the same seed"
    pngs = sorted(n for n in a if n.endswith(".png"))
    assert set(c) == set(a) and any(a[n] != c[n] for n in pngs)  # the seed matters


def test_synth_refuses_pickle_checkpoint(tmp_path, sources):
    marker = tmp_path / "PWNED"
    evil, run = write_evil_checkpoint(tmp_path / "evil", marker)
    for checkpoint in (evil, run):
        r = _synth(checkpoint, sources, tmp_path / "out", "--target", "effusion")
        one_line_error(r, str(checkpoint))
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("target", ["../../etc", "effusion/../../x", "/tmp/x", "normal\x00x"])
def test_synth_target_names_cannot_form_paths(reference_run, sources, tmp_path, target):
    out = tmp_path / "a" / "out"
    r = _synth(reference_run, sources, out, "--target", target)
    one_line_error(r, "unknown target domain")
    assert not (tmp_path / "a").exists()


def test_synth_outputs_stay_inside_out(reference_run, sources, tmp_path):
    out = tmp_path / "nested" / "out"
    r = _synth(reference_run, sources, out, "--target", "normal", "--format", "both")
    assert r.exit_code == 0, r.output
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and out not in p.parents]
    assert not outside and len(list(out.iterdir())) == 1 + 3 * 3  # index + (png, dcm, json) per source
    assert all(re.fullmatch(r"src-[0-9a-f]{8}_to-normal_z0\.(png|dcm|json)|index\.csv", p.name)
               for p in out.iterdir())


def test_no_identifier_in_synth_outputs(reference_run, canary_sources, tmp_path):
    out = tmp_path / "out"
    r = _synth(reference_run, canary_sources, out, "--target", "effusion", "--format", "both", "--n-styles", 2)
    assert r.exit_code == 0, r.output
    assert len(list(out.glob("*.dcm"))) == 4
    assert not scan_for_canaries([out], [r.output])
    for dcm in out.glob("*.dcm"):  # the injected text does not survive into the derived DICOM either
        assert b"<script" not in dcm.read_bytes().lower() and b"evil.example" not in dcm.read_bytes()


def test_report_escapes_dicom_text_fetches_nothing_and_holds_no_identifier(reference_run, canary_sources,
                                                                          tmp_path):
    out = tmp_path / "report"
    source = canary_sources / f"{IDENTIFYING_STEM}_b.dcm"
    r = cli("report", "--checkpoint", reference_run, "--input", source, "--out", out, "--n-styles", 2)
    assert r.exit_code == 0, r.output
    html = (out / "report.html").read_bytes()
    for value in INJECTION.values():  # shown, if at all, only escaped
        assert value.encode() not in html
    assert b"&lt;script&gt;" in html  # the view position is shown, escaped
    assert_inert_and_self_contained(html)
    assert not scan_for_canaries([out], [r.output])


def test_no_identifier_in_cohort_report(reference_run, canary_sources, tmp_path):
    import pandas as pd

    rows = [{"path": p.name, "patient_id": f"CANARYPID{i}", "study_id": "", "view": "PA", "split": "test",
             "effusion": i % 2} for i, p in enumerate(sorted(canary_sources.glob("*.dcm")))]
    manifest = canary_sources / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    out = tmp_path / "report"
    r = cli("report", "--checkpoint", reference_run, "--manifest", manifest, "--out", out, "--n-styles", 1,
            "--no-progress")
    assert r.exit_code == 0, r.output
    assert (out / "index.html").exists() and len(list(out.glob("src-*.html"))) == 2
    assert not scan_for_canaries([out], [r.output])
    for page in out.glob("*.html"):
        assert_inert_and_self_contained(page.read_bytes())
