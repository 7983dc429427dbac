"""Options with fixed choices are typed (Literal): a bad value, an unknown option or a missing
argument is one line ``xraystyle: error: ...`` and exit code 2 from the installed script,
``python -m xraystyle`` and CliRunner alike; --help, --version, typer.Exit codes and shell
completion keep working."""

from __future__ import annotations

import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from xraystyle.cli import _common, app

runner = CliRunner()
SCRIPT = Path(sys.executable).with_name("xraystyle")


def _env(tmp_path) -> dict[str, str]:
    return {**os.environ, "XRAYSTYLE_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}


def _choices(*values: str) -> str:
    return ", ".join(f"'{v}'" for v in values)


# (argv, option as click names it, bad value, the choices in order)
CASES = [
    (["train", "--dry-run"], "--device", "tpu", ("auto", "cpu", "cuda")),
    (["train", "--dry-run"], "--mode", "turbo", ("auto", "reference", "fast")),
    (["train", "--dry-run"], "--conditioning", "set-sum", ("single", "set-additive", "set-film")),
    (["synth", "--checkpoint", "c", "--source", "s", "--out", "o"], "--format", "jpg", ("png", "dcm", "both")),
    (["synth", "--checkpoint", "c", "--source", "s", "--out", "o"], "--device", "mps", ("auto", "cpu", "cuda")),
    (["report", "--checkpoint", "c", "--out", "o"], "--split", "dev", ("train", "val", "test")),
    (["eval", "--checkpoint", "c", "--cohort", "m", "--classifier", "k", "--out", "o"], "--mode", "sideways",
     ("latent", "reference", "both")),
    (["eval", "--checkpoint", "c", "--cohort", "m", "--classifier", "k", "--out", "o"], "--fid-split", "all",
     ("train", "val", "test")),
    (["eval", "--checkpoint", "c", "--cohort", "m", "--classifier", "k", "--out", "o"], "--oracle", "maybe",
     ("auto", "on", "off")),
    (["classifier", "train", "--cohort", "m", "--findings", "effusion", "--out", "c.pt"], "--arch", "vgg",
     ("densenet121", "resnet50", "small")),
    (["cohort", "build", "nih", "--out", "m.csv"], "--uncertain", "maybe", ("ignore", "positive", "negative")),
    (["cohort", "build", "nih", "--out", "m.csv"], "--missing", "skip", ("drop", "keep", "error")),
    (["cohort", "phantom", "--out", "p", "--n", "2"], "--format", "jpeg", ("png", "dcm")),
]


@pytest.mark.parametrize("argv, option, bad, choices", CASES, ids=[f"{c[0][0]}{c[1]}" for c in CASES])
def test_bad_choice_is_one_line_exit_2(tmp_path, argv, option, bad, choices):
    r = runner.invoke(app, [*argv, option, bad], env={"XRAYSTYLE_CACHE": str(tmp_path)})
    assert r.exit_code == 2, r.output
    assert r.stdout == ""
    also = " (or cuda:N)" if option == "--device" else ""  # one GPU of several
    assert r.stderr.splitlines() == [
        f"xraystyle: error: invalid value for '{option}': '{bad}' is not one of {_choices(*choices)}{also}"]


def test_bad_cohort_source_lists_the_sources(tmp_path):
    r = runner.invoke(app, ["cohort", "build", "nhi", "--out", str(tmp_path / "m.csv")])
    assert r.exit_code == 2
    assert r.stderr.splitlines() == ["xraystyle: error: invalid value for 'source': 'nhi' is not one of "
                                     + _choices("nih", "chexpert", "mimic", "vindr", "rsna", "padchest", "folder")]
    assert not (tmp_path / "m.csv").exists()


@pytest.mark.parametrize("argv, line", [
    (["train", "--devic", "cpu"], "xraystyle: error: no such option: --devic (Possible options: --device, --mode)"),
    (["convert"], "xraystyle: error: missing argument 'INPUT'"),
    (["synth", "--source", "s"], "xraystyle: error: missing option '--checkpoint'"),
    (["train", "--iters", "many"], "xraystyle: error: invalid value for '--iters': "),
    (["trian"], "xraystyle: error: no such command 'trian'"),
])
def test_other_usage_errors_are_one_line_exit_2(argv, line):
    r = runner.invoke(app, argv)
    assert r.exit_code == 2, r.output
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith(line), r.stderr


def test_valid_choices_still_work(tmp_path):
    r = runner.invoke(app, ["train", "--config", "tiny", "--device", "cpu", "--mode", "reference",
                            "--conditioning", "single", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "mode: reference" in r.stdout


def test_help_version_and_exit_codes_are_kept():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0 and "train" in r.stdout and "--install-completion" in r.stdout
    r = runner.invoke(app, ["train", "--help"])
    assert r.exit_code == 0 and "auto|cpu|cuda" in r.stdout
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.startswith("xraystyle ")
    r = runner.invoke(app, [])  # no command: the help, exit 2 (click's convention)
    assert r.exit_code == 2 and "train" in r.stdout and "error" not in r.output
    r = runner.invoke(app, ["cohort"])
    assert r.exit_code == 2 and "build" in r.stdout


@pytest.mark.parametrize("value, ok", [("cuda:1", True), ("cuda:12", True), ("cpu", True), ("cuda:", False),
                                       ("cuda:x", False), ("cuda1", False), ("CPU", False)])
def test_device_takes_one_gpu_of_several(tmp_path, value, ok):
    r = runner.invoke(app, ["train", "--config", "tiny", "--dry-run", "--device", value],
                      env={"XRAYSTYLE_CACHE": str(tmp_path)})
    assert r.exit_code == (0 if ok else 2), r.output
    if not ok:
        assert len(r.stderr.splitlines()) == 1 and "(or cuda:N)" in r.stderr


def test_literal_choices_match_the_library():
    from xraystyle.cohorts.build import MISSING_POLICIES
    from xraystyle.cohorts.manifest import SPLITS
    from xraystyle.cohorts.sources import SOURCES, UNCERTAIN_POLICIES
    from xraystyle.evaluation.nets import ARCHS
    from xraystyle.models.conditioning import KINDS
    from xraystyle.phantom.generator import FORMATS as PHANTOM_FORMATS
    from xraystyle.reporting.export import FORMATS

    args = typing.get_args
    assert args(_common.SynthFormat) == tuple(FORMATS)
    assert args(_common.PhantomFormat) == tuple(PHANTOM_FORMATS)
    assert args(_common.Split) == tuple(SPLITS)
    assert args(_common.ClassifierArch) == tuple(ARCHS)
    assert set(args(_common.Conditioning)) == set(KINDS)
    assert args(_common.CohortSource) == tuple(SOURCES)
    assert args(_common.Uncertain) == tuple(UNCERTAIN_POLICIES)
    assert args(_common.MissingImages) == tuple(MISSING_POLICIES)


@pytest.mark.parametrize("dry_run", [True, False])
def test_installed_script_refuses_a_bad_device_in_one_line(tmp_path, dry_run):
    """The real entry point (today's bug: exit 0 with --dry-run, a 42-line traceback without)."""
    cmd = [str(SCRIPT), "train", "--device", "tpu", *(["--dry-run"] if dry_run else [])]
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env(tmp_path), cwd=tmp_path, timeout=120)
    assert (p.returncode, p.stdout) == (2, "")
    assert p.stderr.splitlines() == [
        "xraystyle: error: invalid value for '--device': 'tpu' is not one of 'auto', 'cpu', 'cuda' (or cuda:N)"]


def test_python_m_and_shell_completion(tmp_path):
    p = subprocess.run([sys.executable, "-m", "xraystyle", "synth", "--checkpoint", "c", "--source", "s",
                        "--out", "o", "--format", "tiff"], capture_output=True, text=True, env=_env(tmp_path),
                       cwd=tmp_path, timeout=120)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1, p.stderr
    assert "'tiff' is not one of 'png', 'dcm', 'both'" in p.stderr
    # bash completion offers the choices (click's protocol, as the installed completion script uses it)
    env = {**_env(tmp_path), "_XRAYSTYLE_COMPLETE": "complete_bash", "COMP_WORDS": "xraystyle train --device ",
           "COMP_CWORD": "3"}
    p = subprocess.run([str(SCRIPT)], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0 and p.stdout.split() == ["auto", "cpu", "cuda"], p.stderr
