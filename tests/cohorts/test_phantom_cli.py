"""`xraystyle cohort phantom` through the CLI: output, one-line errors, exit codes."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from xraystyle.cli import app
from xraystyle.cli.phantom import parse_prevalence
from xraystyle.errors import ConfigError

runner = CliRunner()


def test_cli_writes_a_cohort(tmp_path):
    out = tmp_path / "ph"
    result = runner.invoke(app, ["cohort", "phantom", "--out", str(out), "--n", "3", "--size", "32",
                                 "--findings", "effusion,nodule", "--prevalence", "effusion=1,nodule=0",
                                 "--format", "dcm", "--seed", "9"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out / "manifest.csv")
    m = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    assert len(m) == 3 and (m.effusion == 1).all() and (m.nodule == 0).all()
    assert all(p.endswith(".dcm") for p in m.path)
    assert "3/3" in result.stderr  # the progress bar goes to stderr


def test_cli_matches_the_library(tmp_path):
    from xraystyle.phantom.generator import generate_phantom_cohort

    runner.invoke(app, ["cohort", "phantom", "--out", str(tmp_path / "cli"), "--n", "2", "--size", "32"])
    generate_phantom_cohort(tmp_path / "lib", 2, size=32)
    for name in ("manifest.csv", "images/phantom-00000.png", "images/phantom-00001.png"):
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "lib" / name).read_bytes()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--n", "0"], "n must be an integer >= 1, got 0"),
        (["--n", "2", "--size", "16"], "size must be an integer in 32..1024, got 16"),
        (["--n", "2", "--size", "2048"], "size must be an integer in 32..1024, got 2048"),
        (["--n", "2", "--findings", "effusion,edema"], "unknown finding(s) 'edema'"),
        (["--n", "2", "--prevalence", "effusion"], "--prevalence: expected NAME=FRACTION"),
        (["--n", "2", "--prevalence", "effusion=2"], "prevalence of effusion must be a number in [0, 1]"),
        (["--n", "2", "--workers", "0"], "workers must be an integer >= 1"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, args, message):
    result = runner.invoke(app, ["cohort", "phantom", "--out", str(tmp_path / "x"), *args])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xraystyle: error: ") and message in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_parse_prevalence():
    assert parse_prevalence(None) is None
    assert parse_prevalence("effusion=0.5, nodule=0.25") == {"effusion": 0.5, "nodule": 0.25}
    with pytest.raises(ConfigError):
        parse_prevalence("effusion=high")
