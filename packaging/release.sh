#!/usr/bin/env bash
# Build, check and install credhelper's release artifacts; with --record, also
# pin the Homebrew formula to the sdist just built.
#
#   packaging/release.sh [--dist DIR] [--work DIR] [--record]
#
#   1. builds the sdist and the wheel (`python -m build`) from a clean export of
#      HEAD (`git archive`; the directory itself when it is not a git checkout)
#   2. `twine check --strict` on both
#   3. `pipx install` of the wheel in a fresh PIPX_HOME / PIPX_BIN_DIR, then the
#      installed credhelper: --version (must be pyproject's), export --help,
#      service install --dry-run (must name the pipx venv's absolute path)
#   4. `pip install` of the sdist in a fresh venv, then its --version
#   5. --record: packaging/release.json gets the version, the sdist's release
#      URL and sha256, and packaging/homebrew/credhelper.rb is regenerated
#
# PYTHON: an interpreter with build, twine and pipx (default: .venv/bin/python
# if it has them, else a throwaway tools venv is made). DIST defaults to dist/,
# WORK (pipx home, venvs) to a temp dir removed at the end. stdout: the
# artifacts' paths and sha256; progress on stderr. Exit non-zero on any failure.
#
# Release checklist (RELEASING in short; see packaging/README.md):
#   - bump `version` in pyproject.toml; python packaging/lock.py if dependencies changed
#   - packaging/release.sh --record; commit pyproject, the lock, release.json, the formula
#   - tag vX.Y.Z; upload dist/* to the GitHub release (the formula's URL) and `twine upload dist/*`
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIST="$ROOT/dist"
WORK=""
RECORD=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dist) DIST="$(mkdir -p "$2" && cd "$2" && pwd)"; shift 2 ;;
    --work) WORK="$(mkdir -p "$2" && cd "$2" && pwd)"; shift 2 ;;
    --record) RECORD=1; shift ;;
    -h|--help) sed -n '2,26p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "release.sh: unknown argument $1: see --help" >&2; exit 2 ;;
  esac
done
say() { echo "release.sh: $*" >&2; }
die() { say "$*"; exit 1; }

T="$(mktemp -d "${TMPDIR:-/tmp}/credhelper-release.XXXXXX")"
trap 'rm -rf "$T"' EXIT
[ -n "$WORK" ] || WORK="$T/work"
mkdir -p "$WORK"

# ---------------------------------------------------------------- tools
PY="${PYTHON:-$ROOT/.venv/bin/python}"
if ! "$PY" -c 'import build, twine, pipx' 2>/dev/null; then
  say "making a tools venv (build, twine, pipx)"
  python3 -m venv "$T/tools"
  "$T/tools/bin/python" -m pip install -q build twine pipx >&2
  PY="$T/tools/bin/python"
fi
VERSION="$("$PY" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
  "$ROOT/pyproject.toml")"

# ---------------------------------------------------------------- 1. build
SRC="$T/src"
mkdir -p "$SRC"
if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
  git -C "$ROOT" archive HEAD | tar -x -C "$SRC"
  [ -z "$(git -C "$ROOT" status --porcelain --untracked-files=no)" ] \
    || say "note: uncommitted changes are not in the artifacts (built from HEAD)"
else
  cp -a "$ROOT"/. "$SRC"/
  rm -rf "$SRC/.venv" "$SRC/dist" "$SRC/build"
fi
mkdir -p "$DIST"
rm -f "$DIST/credhelper-$VERSION.tar.gz" "$DIST/credhelper-$VERSION-py3-none-any.whl"
say "building sdist and wheel $VERSION into $DIST"
"$PY" -m build --sdist --wheel --outdir "$DIST" "$SRC" >"$T/build.log" 2>&1 \
  || { cat "$T/build.log" >&2; die "python -m build failed"; }
SDIST="$DIST/credhelper-$VERSION.tar.gz"
WHEEL="$DIST/credhelper-$VERSION-py3-none-any.whl"
[ -f "$SDIST" ] && [ -f "$WHEEL" ] || die "build made no $SDIST / $WHEEL"

# ---------------------------------------------------------------- 2. twine check
"$PY" -m twine check --strict "$SDIST" "$WHEEL" >&2 || die "twine check failed"

# ---------------------------------------------------------------- 3. pipx install of the wheel
export PIPX_HOME="$WORK/pipx" PIPX_BIN_DIR="$WORK/bin" PIPX_MAN_DIR="$WORK/man"
rm -rf "$PIPX_HOME" "$PIPX_BIN_DIR"
say "pipx install $WHEEL (PIPX_HOME=$PIPX_HOME)"
"$PY" -m pipx install "$WHEEL" >"$T/pipx.log" 2>&1 || { cat "$T/pipx.log" >&2; die "pipx install failed"; }
VENV_CMD="$PIPX_HOME/venvs/credhelper/bin/credhelper"
[ "$("$PIPX_BIN_DIR/credhelper" --version)" = "credhelper, version $VERSION" ] \
  || die "the pipx-installed credhelper does not say version $VERSION"
"$PIPX_BIN_DIR/credhelper" export --help >/dev/null || die "credhelper export --help failed"
HOME="$T/home" XDG_CONFIG_HOME="" "$VENV_CMD" service install --dry-run >"$T/dry-run.txt" 2>&1 \
  || { cat "$T/dry-run.txt" >&2; die "credhelper service install --dry-run failed"; }
grep -qF "$VENV_CMD daemon" "$T/dry-run.txt" || { cat "$T/dry-run.txt" >&2; die "the dry run does not run $VENV_CMD"; }

# ---------------------------------------------------------------- 4. pip install of the sdist
say "pip install $SDIST in a fresh venv"
"$PY" -m venv --clear "$WORK/sdist-venv"
"$WORK/sdist-venv/bin/python" -m pip install -q "$SDIST" >"$T/sdist.log" 2>&1 \
  || { cat "$T/sdist.log" >&2; die "pip install of the sdist failed"; }
[ "$("$WORK/sdist-venv/bin/credhelper" --version)" = "credhelper, version $VERSION" ] \
  || die "the sdist-installed credhelper does not say version $VERSION"

# ---------------------------------------------------------------- 5. record
SHA="$(sha256sum "$SDIST" | cut -d' ' -f1)"
if [ -n "$RECORD" ]; then
  "$PY" - "$ROOT/packaging/release.json" "$VERSION" "$SHA" <<'PY'
import json, sys

path, version, sha = sys.argv[1:]
home = "https://github.com/credhelper/credhelper"
doc = {"version": version, "homepage": home,
       "url": f"{home}/releases/download/v{version}/credhelper-{version}.tar.gz", "sha256": sha}
with open(path, "w") as f:
    f.write(json.dumps(doc, indent=2) + "\n")
PY
  "$PY" "$ROOT/packaging/formula.py"
  say "recorded $VERSION in packaging/release.json and the formula: commit them, tag v$VERSION, upload $DIST"
fi
echo "$SDIST $SHA"
echo "$WHEEL $(sha256sum "$WHEEL" | cut -d' ' -f1)"
say "ok: built, checked (twine), installed (pipx: $PIPX_BIN_DIR/credhelper; sdist: pip)"
