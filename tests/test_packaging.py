"""The wheel a user installs (``pip install xraystyle``, not editable) holds what the package needs
at run time, and every third-party module xraystyle imports is a declared dependency.

The wheel is built offline from a copy of the checkout (no build/ or egg-info left in the tree,
no stale build/lib files in the wheel): a few seconds.
"""

import ast
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "xraystyle"
SKIP = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", "runs",
                              ".pytest_cache", ".hypothesis", ".ruff_cache")


# Imported only where a declared dependency brings it: xraystyle.cli falls back to click for
# typer versions that do not vendor it, and those versions require click themselves.
PROVIDED_BY = {"click": "typer"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=SKIP)
    # A run folder as `make demo` leaves one, with a module and a config in it: must stay out.
    (src / "runs" / "demo").mkdir(parents=True)
    (src / "runs" / "demo" / "__init__.py").write_text("")
    (src / "runs" / "demo" / "config.yaml").write_text("model: {}\n")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "--no-index",
                        "--quiet", "-w", str(tmp / "dist")], cwd=src, check=False, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    (path,) = (tmp / "dist").glob("xraystyle-*.whl")
    return zipfile.ZipFile(path)


def _package_files(pattern: str) -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in PACKAGE.glob(pattern) if p.is_file()}


def test_wheel_holds_configs_templates_and_every_module(wheel):
    names = set(wheel.namelist())
    configs = _package_files("configs/*.yaml")
    templates = _package_files("reporting/templates/*") - _package_files("reporting/templates/*.pyc")
    assert "xraystyle/configs/demo.yaml" in configs and "xraystyle/reporting/templates/base.html" in templates
    assert configs <= names, configs - names
    assert templates <= names, templates - names
    for name in configs | templates:  # the files themselves, not just their names
        assert wheel.read(name) == (ROOT / name).read_bytes(), name
    assert _package_files("**/*.py") <= names, _package_files("**/*.py") - names
    assert "xraystyle/py.typed" in names
    assert not [n for n in names if n.split("/")[0] in ("tests", "runs", "configs", "docs", "experiments")]
    assert not [n for n in names if n.endswith((".pyc", ".pt"))]


def test_wheel_metadata_declares_the_dependencies(wheel):
    (meta,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    required = {_norm(re.split(r"[ ;<>=!~\[]", line.split(":", 1)[1].strip())[0])
                for line in wheel.read(meta).decode().splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line}
    assert {"pandas", "scipy", "jinja2", "matplotlib", "torch"} <= required


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level module -> files of xraystyle importing it (at any depth: lazy imports too)."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            else:
                continue
            for mod in mods:
                top = mod.split(".")[0]
                if top != "xraystyle" and top not in sys.stdlib_module_names and top != "__future__":
                    found.setdefault(top, set()).add(path.relative_to(ROOT).as_posix())
    return found


def test_every_imported_third_party_package_is_declared():
    declared = {_norm(re.split(r"[ ;<>=!~\[]", d)[0])
                for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    dists = packages_distributions()
    undeclared = {}
    for module, files in _third_party_imports().items():
        names = {_norm(d) for d in dists.get(module, [module])} | {PROVIDED_BY.get(module, "")}
        if not names & declared:
            undeclared[module] = sorted(files)
    assert undeclared == {}, f"imported but not in [project].dependencies: {undeclared}"
