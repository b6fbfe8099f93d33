"""packaging/: the lock covers pyproject's dependencies, the Homebrew formula is
exactly what packaging/formula.py makes of the lock (and Ruby parses it), and
packaging/release.sh builds a wheel and an sdist that pass `twine check`, whose
pipx install works, and whose installed `credhelper` exports from moto."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import REPO, file_store_toml, unavailable
from packaging.requirements import Requirement

if TYPE_CHECKING:
    from conftest import AwsEnv

PACKAGING = REPO / "packaging"
sys.path.insert(0, str(PACKAGING))
import formula  # noqa: E402  (packaging/formula.py)

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
VERSION = PROJECT["version"]


# ------------------------------------------------------------------ lock and formula


def test_lock_pins_every_runtime_dependency() -> None:
    pins = {p.name: p for p in formula.read_lock(formula.LOCK.read_text())}
    for spec in PROJECT["dependencies"]:
        req = Requirement(spec)
        pin = pins.get(re.sub(r"[-_.]+", "-", req.name).lower())
        assert pin, f"{req.name} is not in packaging/requirements.lock: run python packaging/lock.py"
        assert req.specifier.contains(pin.version), f"{pin.name}=={pin.version} does not satisfy {spec}"
        assert pin.marker is None, pin
    for pin in pins.values():
        assert pin.url.startswith("https://files.pythonhosted.org/packages/"), pin
        assert pin.url.endswith(".tar.gz") or pin.url.endswith(".zip"), pin
        assert re.fullmatch(r"[0-9a-f]{64}", pin.sha256), pin


def test_formula_is_what_the_lock_gives() -> None:
    """Regenerated from the committed lock it equals the committed formula
    (formula.py --check), and it does depend on the lock: a changed pin changes it."""
    done = subprocess.run([sys.executable, str(PACKAGING / "formula.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    committed = formula.FORMULA.read_text()
    release = json.loads(formula.RELEASE.read_text())
    lock = formula.LOCK.read_text()
    assert formula.render(lock, release) == committed
    bumped = re.sub(r"^(click==.*--hash=sha256:)[0-9a-f]{64}$", r"\g<1>" + "0" * 64, lock, flags=re.M)
    assert bumped != lock
    assert formula.render(bumped, release) != committed


def test_formula_pins_every_resource_from_the_lock() -> None:
    text = formula.FORMULA.read_text()
    resources = dict(re.findall(r'resource "([^"]+)" do\n    url "[^"]+"\n    sha256 "([0-9a-f]{64})"', text))
    pins = formula.read_lock(formula.LOCK.read_text())
    wanted = {p.name: p.sha256 for p in pins if p.name not in formula.FROM_FORMULAE and p.platforms()}
    assert resources == wanted
    assert text.count('resource "') == len(resources)  # none without a url and a sha256
    assert "include Language::Python::Virtualenv" in text
    assert 'depends_on "cryptography" => :no_linkage' in text
    assert re.search(r'service do\n    run \[opt_bin/"credhelper", "daemon"\]\n    keep_alive ', text)
    assert "log_path var/" in text and "test do" in text
    release = json.loads(formula.RELEASE.read_text())
    assert f'url "{release["url"]}"\n  sha256 "{release["sha256"]}"' in text


def test_lock_markers_follow_where_a_package_is_needed() -> None:
    """lock.py's graph walk (no network): a package needed on Linux only, or
    below Python 3.12 only, gets exactly that marker; an unresolved one is an error."""
    import lock  # packaging/lock.py

    pinned = {
        "app-dep": {"version": "1.0", "requires_dist": [
            'linux-only>=1; sys_platform == "linux"', 'old-py; python_version < "3.12"', "both"]},
        "linux-only": {"version": "2.0", "requires_dist": ["both"]},
        "old-py": {"version": "3.0", "requires_dist": None},
        "both": {"version": "4.0", "requires_dist": ['pywin; sys_platform == "win32"']},
    }
    needed = lock.walk(["app-dep>=1"], pinned)
    markers = {name: lock.marker_for(targets) for name, targets in needed.items()}
    assert markers == {"app-dep": "", "both": "", "linux-only": 'sys_platform == "linux"',
                       "old-py": 'python_version < "3.12"'}
    pinned["app-dep"]["requires_dist"].append('mac-only; sys_platform == "darwin"')
    with pytest.raises(SystemExit, match="mac-only"):
        lock.walk(["app-dep>=1"], pinned)
    with pytest.raises(SystemExit, match="conflicts"):
        lock.walk(["app-dep>=2"], pinned)


def test_lock_walk_follows_extras() -> None:
    """`botocore[crt]` brings botocore's `extra == "crt"` requirements (awscrt);
    plain `botocore` does not (before, every extra was dropped)."""
    import lock  # packaging/lock.py

    pinned = {
        "botocore": {"version": "1.44", "requires_dist": ["jmespath", 'awscrt==0.38; extra == "crt"']},
        "jmespath": {"version": "1.0", "requires_dist": None},
        "awscrt": {"version": "0.38", "requires_dist": None},
    }
    assert set(lock.walk(["botocore[crt]>=1.41"], pinned)) == {"botocore", "jmespath", "awscrt"}
    assert set(lock.walk(["botocore>=1.41"], pinned)) == {"botocore", "jmespath"}
    assert "awscrt==" in (PACKAGING / "requirements.lock").read_text()


def test_ruby_parses_the_formula() -> None:
    ruby = shutil.which("ruby")
    if ruby is None:
        unavailable("ruby is not installed (scripts/test installs it)")
    done = subprocess.run([ruby, "-c", str(formula.FORMULA)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "Syntax OK" in done.stdout, done.stdout + done.stderr


# ------------------------------------------------------------------ build, check, install


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """packaging/release.sh: build from HEAD, twine check, pipx install of the
    wheel in a fresh PIPX_HOME, pip install of the sdist."""
    if shutil.which("git") is None:
        unavailable("git is needed to build from HEAD")
    base = tmp_path_factory.mktemp("release")
    dist, work = base / "dist", base / "work"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPX_", "AWS_", "CREDHELPER_"))}
    env["PYTHON"] = sys.executable  # the test venv has build, twine and pipx
    done = subprocess.run(["bash", str(PACKAGING / "release.sh"), "--dist", str(dist), "--work", str(work)],
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"release.sh failed:\n{done.stdout}\n{done.stderr[-5000:]}"
    assert done.stderr.count("PASSED") == 2, done.stderr  # twine check, wheel and sdist
    return {"dist": dist, "work": work, "pipx_home": work / "pipx", "bin": work / "bin",
            "wheel": dist / f"credhelper-{VERSION}-py3-none-any.whl",
            "sdist": dist / f"credhelper-{VERSION}.tar.gz"}


@pytest.mark.slow
def test_wheel_and_sdist_contents(release: dict[str, Path]) -> None:
    with zipfile.ZipFile(release["wheel"]) as whl:
        names = set(whl.namelist())
        script = whl.read(f"credhelper-{VERSION}.data/scripts/credhelper").decode()
    data = f"credhelper-{VERSION}.data/data/share/credhelper/service/"
    assert "credhelper/py.typed" in names
    assert {data + "credhelper.service", data + "com.github.credhelper.daemon.plist"} <= names
    assert "from credhelper.fastpath import main" in script  # bin/credhelper, the script-file
    assert not any(n.startswith("tests/") for n in names)
    with tarfile.open(release["sdist"]) as sdist:
        members = set(sdist.getnames())
    top = f"credhelper-{VERSION}/"
    for path in ("pyproject.toml", "README.md", "bin/credhelper", "credhelper/py.typed",
                 "service/credhelper.service", "service/com.github.credhelper.daemon.plist"):
        assert top + path in members, path


@pytest.mark.slow
def test_pipx_installed_credhelper(release: dict[str, Path], tmp_path: Path) -> None:
    """The command pipx put on PIPX_BIN_DIR: version, help, and a service dry
    run whose ExecStart is this pipx venv's credhelper."""
    cmd = release["bin"] / "credhelper"
    venv = release["pipx_home"] / "venvs" / "credhelper"
    assert os.path.realpath(cmd).startswith(str(venv) + os.sep)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}

    def run(*args: str, via: Path = cmd) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(via), *args], env=env, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)

    assert run("--version").stdout.strip() == f"credhelper, version {VERSION}"
    helped = run("export", "--help")
    assert helped.returncode == 0 and "--profile" in helped.stdout, helped.stderr
    for via in (cmd, venv / "bin" / "credhelper"):
        dry = run("service", "install", "--dry-run", via=via)
        assert dry.returncode == 0, dry.stderr
        m = re.search(r"^ExecStart=(\S+) daemon$", dry.stdout, re.M)
        assert m and os.path.isabs(m[1]), dry.stdout
        assert os.path.realpath(m[1]) == os.path.realpath(venv / "bin" / "credhelper"), m[1]
    dry = run("service", "install", "--dry-run", via=venv / "bin" / "credhelper")
    assert f"ExecStart={venv}/bin/credhelper daemon" in dry.stdout
    assert not (tmp_path / ".config" / "systemd").exists()  # a dry run writes nothing
    # what the Homebrew formula's `test do` block checks
    (tmp_path / "config").write_text("[profile real]\nregion = us-east-1\n")
    (tmp_path / "credhelper.toml").write_text('store = "memory"\n')
    env.update(AWS_CONFIG_FILE=str(tmp_path / "config"), CREDHELPER_CONFIG=str(tmp_path / "credhelper.toml"))
    missing = run("export", "--profile", "missing")
    assert (missing.returncode, missing.stdout) == (3, ""), missing.stderr
    assert "Print credentials" in run("export", "--help").stdout


@pytest.mark.slow
def test_pipx_installed_credhelper_exports_from_moto(release: dict[str, Path], aws_env: AwsEnv) -> None:
    """The installed artifact does the main job: an assume-role export against moto."""
    aws_env.credhelper = str(release["bin"] / "credhelper")
    aws_env.write_config("""
        [profile packaged]
        role_arn = arn:aws:iam::123456789012:role/packaged
        source_profile = base
        region = us-east-1

        [profile base]
        region = us-east-1
    """)
    aws_env.write_credentials("""
        [base]
        aws_access_key_id = AKIAPACKAGEDBASE0001
        aws_secret_access_key = packaged-base-secret
    """)
    aws_env.write_settings(file_store_toml(aws_env.home))

    done = aws_env.run("export", "--profile", "packaged")

    assert done.returncode == 0, done.stderr
    creds = json.loads(done.stdout)["Credentials"]
    assert creds["AccessKeyId"] in aws_env.moto.access_key_ids_issued("AssumeRole")
    assert creds["Expiration"].endswith("Z")
    assert aws_env.moto.calls("AssumeRole") == 1
    again = aws_env.run("export", "--profile", "packaged")
    assert json.loads(again.stdout)["Credentials"]["AccessKeyId"] == creds["AccessKeyId"]
    assert aws_env.moto.calls("AssumeRole") == 1  # served from the store
