"""The HTML pages (report, cohort index, evaluation summary) share one autoescaped jinja2 base:
hostile text stays text and every page carries the CSP and the SYNTHETIC banner. Figures never
touch the user's matplotlib backend."""

import ast
import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

import xraystyle
from xraystyle.evaluation.summary import write_html
from xraystyle.reporting.counterfactual import CounterfactualReport, Panel, Section
from xraystyle.reporting.html import CSP, render_index, render_report
from xraystyle.reporting.provenance import SYNTHETIC_NOTICE

HOSTILE = "<script>alert(1)</script>"
ATTR = 'x" onload="alert(2)'  # would close an attribute if quotes were not escaped


class Page(HTMLParser):
    def __init__(self, text):
        super().__init__()
        self.tags, self.attrs, self.text, self.csp = [], [], [], []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)
        if tag == "meta" and dict(attrs).get("http-equiv") == "Content-Security-Policy":
            self.csp.append(dict(attrs)["content"])

    def handle_data(self, data):
        self.text.append(data)


def _check(text: str, *expected_texts: str) -> Page:
    page = Page(text)
    assert "script" not in page.tags and "<script" not in text
    assert not any(name.startswith("on") for name, _ in page.attrs)  # no injected event handler
    assert page.csp == [CSP]
    body = "".join(page.text)
    assert SYNTHETIC_NOTICE in body
    for value in expected_texts:
        assert value in body  # shown as text, not lost
    return page


def _report() -> CounterfactualReport:
    rng = np.random.default_rng(0)
    src = rng.uniform(-1, 1, (16, 16))
    panels = [Panel("z0", "latent", src * 0.9, src * -0.1, probs=[0.2]),
              Panel("ref1", "reference", src * 0.8, src * -0.2, probs=[0.7], reference_sha256=ATTR,
                    reference_image=src)]
    section = Section(target=HOSTILE, title=f"add {HOSTILE}", panels=panels, std=np.abs(src) * 0.1,
                      mean_abs_change=3.0, key_finding=HOSTILE, key_shift=0.25)
    return CounterfactualReport(
        source=src, valid=np.ones((16, 16), bool), source_sha256="ab" * 32, source_domain=HOSTILE,
        technical={"view_position": HOSTILE, "body_part": ATTR}, burned_in_annotation=True, sections=[section],
        diff_limit=0.2, std_limit=0.1, n_styles=1, seed=0, provenance=[("classifier", HOSTILE), (HOSTILE, ATTR)],
        findings=[HOSTILE], source_probs=[0.1], classifier_name=HOSTILE, notes=[HOSTILE])


def test_report_and_index_escape_hostile_text():
    text = render_report(_report())
    _check(text, HOSTILE, ATTR, "add " + HOSTILE)
    assert text.count("&lt;script&gt;") >= 8
    index = render_index([{"href": ATTR, "hash": HOSTILE, "domain": HOSTILE, f"change:{HOSTILE}": 1.0,
                           f"shift:{HOSTILE}": 0.1}], [HOSTILE], has_classifier=True, failures=1)
    page = _check(index, HOSTILE)
    assert ("href", ATTR) in page.attrs  # the attribute value is intact, its quote escaped


def test_summary_escapes_hostile_text_and_carries_the_csp(tmp_path):
    png = tmp_path / f"{HOSTILE.replace('/', '')}.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    metrics = {"meta": {"classifier": {"name": HOSTILE}, "domains": [HOSTILE, "normal"], "date": HOSTILE,
                        "n_sources": {HOSTILE: 1}, "inception": {"available": False, "reason": HOSTILE},
                        "oracle": {"available": True, "findings": {HOSTILE: {
                            "add": {"balanced_accuracy": 1.0, "sensitivity": 1.0, "specificity": 1.0},
                            "remove": {"balanced_accuracy": 1.0},
                            "anatomy": {"same_patient_pass": 1.0, "other_patient_reject": 0.5}}}}},
               "pairs": [{"source": HOSTILE, "target": ATTR, "mode": HOSTILE, "validity": 0.5, "base_rate": 0.1}],
               "style_physics": {HOSTILE: {"skipped": HOSTILE}, "normal": {f"style_r2/{HOSTILE}": 0.1}}}
    text = write_html(metrics, {"validity": png}, {HOSTILE: png}, tmp_path / "s.html").read_text()
    page = _check(text, HOSTILE, ATTR, f"{HOSTILE} → {ATTR}", f"{HOSTILE}: style", json.dumps({HOSTILE: 1}))
    assert text.count("data:image/png;base64,") == 2
    assert ("alt", png.stem) in page.attrs


def test_no_pyplot_and_no_backend_switch_in_the_package():
    """Static: nothing in xraystyle imports pyplot or calls matplotlib.use."""
    offenders = []
    for path in Path(xraystyle.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) else [])
            if any(n.startswith("matplotlib.pyplot") or n == "matplotlib.pylab" for n in names):
                offenders.append(f"{path}:{node.lineno}")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "use"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "matplotlib"):
                offenders.append(f"{path}:{node.lineno}")
    assert offenders == []


CHECK_BACKEND = """
import tempfile
from pathlib import Path
import matplotlib
before = matplotlib.get_backend()
import xraystyle.reporting, xraystyle.reporting.figures, xraystyle.reporting.html
import xraystyle.evaluation, xraystyle.evaluation.plots, xraystyle.evaluation.summary
after_import = matplotlib.get_backend()
from xraystyle.reporting import figures
from xraystyle.evaluation.plots import validity_plot
figures.colorbar_png(-1, 1, figures.DIFF_CMAP, "x")
figures.probability_chart_png(["effusion"], [("source", [0.2]), ("z0", [0.6])], "t")
out = Path(tempfile.mkdtemp()) / "v.png"
validity_plot({"pairs": [{"source": "a", "target": "b", "mode": "latent", "validity": 0.5, "base_rate": 0.1}]}, out)
assert out.stat().st_size > 1000
print(before, after_import, matplotlib.get_backend())
"""


def test_importing_and_rendering_keep_the_users_matplotlib_backend():
    """A notebook user's backend (here: 'template', set as MPLBACKEND would be) is unchanged
    after importing xraystyle.reporting / xraystyle.evaluation and rendering figures."""
    env = {**os.environ, "MPLBACKEND": "template", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", CHECK_BACKEND], env=env, check=False, capture_output=True, text=True,
                       timeout=300,
                       cwd=Path(xraystyle.__file__).parent.parent)
    assert r.returncode == 0, r.stderr
    # (pyplot itself may be loaded: MONAI imports it, which keeps the configured backend.)
    assert r.stdout.split() == ["template", "template", "template"]
