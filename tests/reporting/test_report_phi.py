"""No patient data in any output: identifier canaries through synth (every format) and report."""

import base64
import logging
import shutil
import zlib

import pandas as pd
from typer.testing import CliRunner

from tests.synthesis.helpers import IDENTIFYING_FILE, scan_for_canaries, write_canary_dicom, write_png
from xraystyle.cli import app
from xraystyle.cohorts.manifest import write_manifest

runner = CliRunner()


def test_identifier_canaries_leave_no_trace(checkpoint, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    cohort = tmp_path / "cohort"
    src = write_canary_dicom(cohort / "img" / IDENTIFYING_FILE)
    ref = write_canary_dicom(cohort / "img" / "Doe_John_reference.dcm", BurnedInAnnotation="YES")
    write_png(cohort / "img" / "Doe_John_DOEJ778123.png", seed=4)
    (cohort / "img" / "Doe_John_DOEJ778123_broken.dcm").write_text("garbage")  # an unreadable one, too
    manifest = write_manifest(pd.DataFrame([
        {"path": f"img/{IDENTIFYING_FILE}", "patient_id": "CANARYID7731", "study_id": "CANARYACC9", "view": "PA",
         "split": "test", "effusion": 1},
        {"path": "img/Doe_John_DOEJ778123_broken.dcm", "patient_id": "CANARYID7731", "study_id": "",
         "view": "PA", "split": "test", "effusion": 0},
    ]), cohort / "manifest.csv").path
    ckpt = ["--checkpoint", str(checkpoint)]
    outs, texts = [], []

    def run(args, expect=0):
        r = runner.invoke(app, args)
        assert r.exit_code == expect, r.output
        texts.extend([r.stdout, r.stderr])

    for i, extra in enumerate((["--format", "png"], ["--format", "dcm"], ["--format", "both", "--restore-geometry"],
                               ["--format", "both", "--size", "48"])):
        outs.append(tmp_path / f"synth{i}")
        run(["synth", *ckpt, "--source", str(src), "--target", "normal", "--n-styles", "2", "--out", str(outs[-1]),
             *extra])
    outs.append(tmp_path / "synth-folder")
    run(["synth", *ckpt, "--source", str(cohort / "img"), "--target", "effusion", "--out", str(outs[-1]),
         "--format", "both"], expect=1)  # the broken file
    outs.append(tmp_path / "synth-ref")
    run(["synth", *ckpt, "--source", str(src), "--reference", str(ref), "--reference-domain", "effusion",
         "--format", "both", "--out", str(outs[-1])])
    outs.append(tmp_path / "report")
    run(["report", *ckpt, "--input", str(src), "--reference", str(ref), "--reference-domain", "effusion",
         "--n-styles", "2", "--pdf", "--out", str(outs[-1])])
    outs.append(tmp_path / "cohort-report")
    run(["report", *ckpt, "--manifest", str(manifest), "--out", str(outs[-1]), "--pdf"], expect=1)

    assert sum(1 for o in outs for _ in o.rglob("*")) >= 40
    assert {p.suffix for o in outs for p in o.rglob("*")} == {".png", ".dcm", ".json", ".csv", ".html", ".pdf"}
    texts.append(caplog.text)
    assert scan_for_canaries(outs, texts) == []
    # The scanner finds them where they are, also compressed or base64-embedded (it is not blind).
    blind = tmp_path / "blind"
    blind.mkdir()
    shutil.copy(src, blind / "copy.bin")
    (blind / "page.html").write_text(f"<img src=\"data:image/png;base64,{base64.b64encode(b'CANARYID7731').decode()}\">")
    (blind / "doc.pdf").write_bytes(b"stream\n" + zlib.compress(b"(CANARYACC9) Tj") + b"endstream")
    assert len({h.split(":")[0] for h in scan_for_canaries([blind])}) == 3
