#!/usr/bin/env bash
# The package as `pip install xraystyle` gives it: build the wheel, install it into a fresh venv and
# run the CLI from outside the checkout. The fresh venv borrows the dependencies of .venv through a
# .pth line (a plain path: .venv's own .pth files, the editable install's among them, are not
# processed), so torch & co. are not installed again and xraystyle is importable only from the wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
case "$VENV" in /*) PY="$VENV/bin/python" ;; *) PY="$PWD/$VENV/bin/python" ;; esac
root="$PWD"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "wheel-check: FAILED: $*" >&2; exit 1; }

# Build from a copy of the tree: no build/ or egg-info left here, no stale build/lib files in the wheel.
mkdir "$work/src"
tar --exclude=./.git --exclude="./$VENV" --exclude=./build --exclude=./dist --exclude='*.egg-info' \
    --exclude=__pycache__ --exclude=./runs -cf - . | tar -xf - -C "$work/src"
(cd "$work/src" && "$PY" -m pip wheel . --no-deps --no-build-isolation --no-index --quiet -w "$work/dist") \
    || fail "pip wheel"
wheel=("$work"/dist/xraystyle-*.whl)
[ -f "${wheel[0]}" ] || fail "no wheel built"

"$PY" -m venv --without-pip "$work/venv"
fresh="$work/venv/bin/python"
"$PY" -c 'import sysconfig; print(sysconfig.get_path("purelib")); print(sysconfig.get_path("platlib"))' \
    | sort -u > "$("$fresh" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/_borrowed_deps.pth"
# pip comes from .venv through that .pth; -I: never look at (or touch) .venv's editable xraystyle.
"$fresh" -m pip install --no-deps --no-index --ignore-installed --quiet "${wheel[0]}" || fail "pip install"

cd "$work"  # outside the checkout: no ./xraystyle, no ./configs to fall back on
location="$("$fresh" -c 'import xraystyle; print(xraystyle.__file__)')"
case "$location" in "$work/venv/"*) ;; *) fail "xraystyle imported from $location, not from the wheel";; esac
"$fresh" -c 'from xraystyle.reporting.templates import environment as e
for name in ("report.html", "index.html", "summary.html"): e().get_template(name)' || fail "templates"
"$work/venv/bin/xraystyle" --help > help.txt || fail "xraystyle --help"
grep -q "train" help.txt || fail "xraystyle --help does not list train"
XRAYSTYLE_CACHE="$work/cache" "$work/venv/bin/xraystyle" train --config demo --dry-run > dry.txt \
    || fail "xraystyle train --config demo --dry-run"
[ -s dry.txt ] || fail "--dry-run printed nothing"
# The packaged demo config resolves as it does in the checkout.
(cd "$root" && "$PY" -m xraystyle train --config demo --dry-run) | cmp -s - dry.txt \
    || fail "train --config demo --dry-run differs between the wheel and the checkout"
echo "wheel-check: $(basename "${wheel[0]}") installed in a fresh venv; xraystyle from $location;" \
     "--help and train --config demo --dry-run OK"
