"""bench/.work/venv: a regular (non-editable) install of this checkout, what `pipx install` gives users.

`bench/run` calls this with the main venv's python before the benchmark; bench/run.py
imports it to check that the install still matches the checkout. Stdlib only.

- The venv is made from the main venv's base interpreter (`sys._base_executable`).
- credhelper is installed with `pip install --no-deps` from a copy of the checkout's
  packaged files staged under bench/.work/ (pip builds a local directory in place and
  would leave build/ and credhelper.egg-info in the tree); its runtime dependencies
  (pyproject's `[project] dependencies`) are installed first, constrained to the
  versions the main venv has, so that both layouts run the same boto3, botocore, ...
- A stamp in the venv records the hash of what was installed (pyproject.toml,
  README.md, bin/credhelper, credhelper/**/*.py, credhelper/py.typed), the hash of the
  constraints and the base interpreter. Same stamp: reused. Sources or constraints
  changed: credhelper (and any new dependency) reinstalled in place. Base interpreter
  changed or the venv broken: made again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work"
VENV = WORK / "venv"
PYTHON = VENV / "bin" / "python"
CREDHELPER = VENV / "bin" / "credhelper"
STAMP = VENV / "credhelper-bench-stamp.json"
#: what the wheel is built from (setuptools: packages credhelper*, package data py.typed, script-files)
TOP_FILES = ("pyproject.toml", "README.md", "bin/credhelper",
             "service/credhelper.service", "service/com.github.credhelper.daemon.plist")  # data-files


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def source_files(root: Path = ROOT) -> list[str]:
    """Relative paths of the files the install is built from, sorted."""
    files = [p for p in TOP_FILES if (root / p).is_file()]
    pkg = root / "credhelper"
    files += sorted(
        str(p.relative_to(root)) for p in pkg.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and (p.suffix == ".py" or p.name == "py.typed")
    )
    return files


def source_hash(root: Path = ROOT) -> str:
    h = hashlib.sha256()
    for rel in source_files(root):
        data = (root / rel).read_bytes()
        h.update(f"{rel}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def read_stamp() -> dict[str, str]:
    try:
        data = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def check() -> str | None:
    """None when bench/.work/venv holds a regular install of the checkout as it is now, else why not."""
    if not (PYTHON.exists() and CREDHELPER.exists()):
        return f"{VENV} has no credhelper"
    if read_stamp().get("source") != source_hash():
        return f"{VENV} holds another version of the checkout's sources"
    return None


def constraints(dev_python: Path) -> str:
    """`pip freeze` of the main venv, minus credhelper itself: the versions to install."""
    out = subprocess.run([str(dev_python), "-m", "pip", "freeze", "--exclude-editable"],
                         capture_output=True, text=True, check=True).stdout
    keep = [line for line in out.splitlines()
            if line and not line.startswith(("#", "-")) and not line.lower().startswith("credhelper")]
    return "\n".join(sorted(keep, key=str.lower)) + "\n"


def pip(*args: str) -> None:
    proc = subprocess.run([str(PYTHON), "-m", "pip", *args], capture_output=True, text=True, check=False)
    # this machine's pip config prints harmless "... is ignored" warnings
    noise = [line for line in (proc.stdout + proc.stderr).splitlines()
             if line.strip() and "is ignored" not in line]
    if proc.returncode != 0:
        sys.stderr.write("\n".join(noise) + "\n")
        raise SystemExit(f"bench: pip {' '.join(args[:2])} ... failed ({proc.returncode})")
    for line in noise:
        if line.startswith(("WARNING", "ERROR")):
            log(f"pip: {line}")


def stage(into: Path) -> str:
    """Copy the packaged files to `into`; the hash of what was copied."""
    for rel in source_files():
        dst = into / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dst)
    return source_hash(into)


def verify() -> None:
    """credhelper imports from the venv's site-packages, no editable hook, the launcher as shipped."""
    code = ("import sys, sysconfig, credhelper; print(credhelper.__file__); print(sysconfig.get_paths()"
            "['purelib']); print(any('__editable__' in m for m in sys.modules))")
    out = subprocess.run([str(PYTHON), "-c", code], cwd="/", capture_output=True, text=True,
                         check=True).stdout.split("\n")
    if not out[0].startswith(out[1] + "/credhelper/") or out[2] != "False":
        raise SystemExit(f"bench: {VENV} does not import credhelper from its own site-packages: {out}")
    installed = CREDHELPER.read_text().splitlines()
    shipped = (ROOT / "bin" / "credhelper").read_text().splitlines()
    if installed[0] != f"#!{PYTHON}" or installed[1:] != shipped[1:]:
        log(f"warning: {CREDHELPER} differs from bin/credhelper beyond the shebang ({installed[0]})")


def ensure(dev_python: Path) -> None:
    base = subprocess.run([str(dev_python), "-c", "import sys; print(sys._base_executable)"],
                          capture_output=True, text=True, check=True).stdout.strip()
    cons = constraints(dev_python)
    cons_hash = hashlib.sha256(cons.encode()).hexdigest()
    stamp = read_stamp()
    fresh = not PYTHON.exists() or stamp.get("base") != base or subprocess.run(
        [str(PYTHON), "-m", "pip", "--version"], capture_output=True, check=False).returncode != 0
    if not fresh and stamp.get("source") == source_hash() and stamp.get("constraints") == cons_hash \
            and CREDHELPER.exists():
        log(f"{VENV}: regular install up to date (source {stamp['source'][:12]})")
        return
    WORK.mkdir(parents=True, exist_ok=True)
    if fresh:
        log(f"creating {VENV} from {base} (regular install of the checkout)")
        subprocess.run([base, "-m", "venv", "--clear", str(VENV)], check=True)
    else:
        log(f"{VENV}: the checkout changed, reinstalling credhelper (pip install --no-deps)")
    STAMP.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="stage-", dir=WORK) as tmp:
        src = Path(tmp) / "credhelper-src"
        installed_hash = stage(src)
        cons_file = Path(tmp) / "constraints.txt"
        cons_file.write_text(cons)
        deps = tomllib.loads((src / "pyproject.toml").read_text())["project"]["dependencies"]
        pip("install", "-q", "-c", str(cons_file), *deps)
        pip("install", "-q", "--no-deps", "--force-reinstall", str(src))
    verify()
    STAMP.write_text(json.dumps({"source": installed_hash, "constraints": cons_hash, "base": base}) + "\n")
    log(f"{VENV}: installed (source {installed_hash[:12]})")


if __name__ == "__main__":
    ensure(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(sys.executable))
