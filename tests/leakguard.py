"""The secret-leak guard, on for every test (issue 8, "Also").

Every test gets the autouse fixture `leak_guard` (registered in conftest.py).
While the test runs it collects what it can see:

- log records of this process (a handler on the root logger),
- the command line, stdout and stderr of every `credhelper` subprocess whose
  output the test collected (`subprocess.run`, `Popen.communicate`:
  `aws_env.run`/`.popen` go through them); other programs are the test's own
  probes (a shell evaluating `export --format env`, an SDK printing what it got),
- at the end, every file under the test's `tmp_path` and `aws_env.home`.

Then it takes every secret value handed out during the test:

- each SecretAccessKey and SessionToken moto issued (its response log),
- tokens, client secrets and role credentials of in-process SSO emulators,
- values the test registered with `leakguard.secret(value)`,

and fails the test if one appears (whole, URL-encoded, or as a 16-character
piece) anywhere but in its legal sinks, declared once below in `LEGAL_SINKS`.
A test that obtained no secret costs nothing beyond the hooks.

Opt out with `@pytest.mark.allow_leaks("why")` (tests of the guard itself,
tests that write secrets on purpose).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

#: Where a secret may legally be, and nowhere else (README's promise).
LEGAL_SINKS = {
    "store": "the store: the encrypted-file store is ciphertext (scanned anyway, it never matches); "
             "the keyring is not a file",
    "stdout": "stdout of `credhelper export` and `credhelper mint` (and of the child under "
              "`credhelper exec --env`, whose environment holds them)",
    "github_env": "the file named by $GITHUB_ENV",
    "login_cache": "~/.aws/login/cache (botocore's own cache)",
    "harness": "the Claude Code harness's records of those in its claude-run.* work dir: the "
               "helper's stdout (helper/*.out), the requests Claude Code signed (bedrock.jsonl), creds/",
}
#: credhelper subcommands whose stdout may hold secrets
STDOUT_COMMANDS = frozenset({"export", "mint", "exec"})
#: directories (relative to a HOME) whose files may hold secrets
LEGAL_DIRS = (Path(".aws") / "login" / "cache",)
#: in a Claude Code harness work dir (tests/claude_harness): files that copy a legal sink
HARNESS_DIR = "claude-run."
HARNESS_FILES = ("bedrock.jsonl", "helper/*.out", "creds/*")
#: a leaked piece is this long (a truncated token in a message is a leak too)
PIECE = 16
#: files bigger than this are not read (nothing in a test HOME is)
MAX_FILE = 8 * 1024 * 1024


@dataclass
class Output:
    """One subprocess's collected output."""

    argv: list[str]
    stdout: str
    stderr: str
    env: dict[str, str] | None = None

    def command(self) -> str | None:
        """The credhelper subcommand this ran (`export`, `status`…), or None."""
        for i, arg in enumerate(self.argv):
            if os.path.basename(arg) == "credhelper" or (
                arg.startswith("import") and "credhelper" in arg and i > 0 and self.argv[i - 1] == "-c"
            ):
                rest = [a for a in self.argv[i + 1 :] if not a.startswith("-")]
                return rest[0] if rest else None
        return None

    def label(self, table: dict[str, str]) -> str:
        """The command line, short, with any secret in it masked."""
        text = " ".join(self.argv)
        for needle in sorted(table, key=len, reverse=True):
            text = text.replace(needle, "***")
        return text if len(text) <= 100 else text[:99] + "…"


@dataclass
class Collected:
    """What one test showed the guard."""

    outputs: list[Output] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)
    #: files allowed to hold secrets ($GITHUB_ENV of any command)
    legal_files: set[Path] = field(default_factory=set)


def needles(secrets: Iterable[str]) -> dict[str, str]:
    """Substrings whose presence means a secret leaked -> the secret."""
    out: dict[str, str] = {}
    for secret in secrets:
        if len(secret) < 8:
            continue
        for form in {secret, quote(secret, safe="", errors="surrogatepass"),
                     quote_plus(secret, safe="", errors="surrogatepass")}:
            out[form] = secret
            # pieces after a fixed-prefix allowance (moto's tokens share 17 characters)
            for i in range(20, len(form) - PIECE + 1, PIECE // 2):
                out[form[i : i + PIECE]] = secret
    return out


def find(text: str, table: dict[str, str]) -> set[str]:
    return {secret for needle, secret in table.items() if needle in text}


def _legal_file(path: Path, homes: Iterable[Path], legal_files: set[Path]) -> bool:
    if path in legal_files:
        return True
    for parent in path.parents:
        if parent.name.startswith(HARNESS_DIR):
            relative = path.relative_to(parent)
            return any(len(relative.parts) == len(Path(pattern).parts) and relative.match(pattern)
                       for pattern in HARNESS_FILES)
    for home in homes:
        for d in LEGAL_DIRS:
            if (home / d) in path.parents:
                return True
    return False


def check(collected: Collected, roots: Iterable[Path], homes: Iterable[Path] = ()) -> list[str]:
    """Every place a secret is where it must not be: '<where>: <secret prefix>…'."""
    table = needles(collected.secrets)
    if not table:
        return []
    problems: list[str] = []

    def report(where: str, text: str) -> None:
        problems.extend(f"{where}: {s[:6]}…" for s in sorted(find(text, table)))

    for out in collected.outputs:
        if out.command() is None:
            continue  # not credhelper: the test's own probe (`sh -c "$(export -f env)"`, an SDK)
        label = out.label(table)
        report(f"command line of `{label}`", "\0".join(out.argv))
        if out.command() not in STDOUT_COMMANDS:
            report(f"stdout of `{label}`", out.stdout)
        report(f"stderr of `{label}`", out.stderr)
    for i, text in enumerate(collected.logs):
        report(f"log record {i}", text)
    roots = [r for r in roots if r.is_dir()]
    homes = [*homes, *roots]
    seen: set[Path] = set()
    for root in roots:
        for path in _files(root):
            if path in seen or _legal_file(path, homes, collected.legal_files):
                continue
            seen.add(path)
            try:
                data = path.read_bytes()
            except OSError:
                continue
            report(f"file {path}", data.decode("latin-1"))
    return problems


def _files(root: Path) -> Iterator[Path]:
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = Path(dirpath, name)
            try:
                if path.is_file() and not path.is_symlink() and path.stat().st_size <= MAX_FILE:
                    yield path
            except OSError:
                continue


# ------------------------------------------------------------------ sources of secrets


#: responses log path -> bytes already read (the log is session-wide)
_moto_offsets: dict[str, int] = {}


def moto_secrets(responses_file: str) -> set[str]:
    """SecretAccessKeys and SessionTokens moto issued since the last call."""
    offset = _moto_offsets.get(responses_file, 0)
    try:
        with open(responses_file, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return set()
    end = data.rfind(b"\n") + 1
    _moto_offsets[responses_file] = offset + end
    found: set[str] = set()
    for line in data[:end].splitlines():
        try:
            found.update(json.loads(line).get("secrets", ()))
        except ValueError:
            continue
    return found


def sso_secrets(emulators: Iterable[Any]) -> set[str]:
    """Access and refresh tokens, client secrets and role credentials of SSO emulators."""
    found: set[str] = set()
    for emu in emulators:
        found.update(getattr(emu, "access_tokens", {}))
        found.update(getattr(emu, "refresh_tokens", {}))
        found.update(c.secret for c in getattr(emu, "clients", {}).values())
        for creds in getattr(emu, "issued_credentials", ()):
            found.update(str(creds.get(k, "")) for k in ("secretAccessKey", "sessionToken"))
    return {s for s in found if s}


# ------------------------------------------------------------------ the fixture


_current: Collected | None = None


def secret(*values: str) -> None:
    """Register secret values the guard must look for in this test."""
    if _current is not None:
        _current.secrets.update(v for v in values if v)


class _Records(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.NOTSET)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a broken record is not the guard's business
            text = str(record.msg)
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.into.append(text)


def _text(data: Any) -> str:
    if data is None:
        return ""
    return data.decode("latin-1") if isinstance(data, bytes) else str(data)


def _hook_subprocess(monkeypatch: pytest.MonkeyPatch, collected: Collected) -> None:
    init, communicate = subprocess.Popen.__init__, subprocess.Popen.communicate

    def popen_init(self: subprocess.Popen[Any], args: Any, *a: Any, **kw: Any) -> None:
        init(self, args, *a, **kw)
        env = kw.get("env")
        self._leakguard_env = dict(env) if env is not None else None  # type: ignore[attr-defined]
        if env is not None and env.get("GITHUB_ENV"):
            collected.legal_files.add(Path(env["GITHUB_ENV"]))

    def popen_communicate(self: subprocess.Popen[Any], *a: Any, **kw: Any) -> Any:
        out, err = communicate(self, *a, **kw)
        argv = [os.fsdecode(x) for x in self.args] if isinstance(self.args, list | tuple) else [
            os.fsdecode(self.args)]
        collected.outputs.append(Output(argv, _text(out), _text(err), getattr(self, "_leakguard_env", None)))
        return out, err

    monkeypatch.setattr(subprocess.Popen, "__init__", popen_init)
    monkeypatch.setattr(subprocess.Popen, "communicate", popen_communicate)


def _hook_sso(monkeypatch: pytest.MonkeyPatch, emulators: list[Any]) -> None:
    module = sys.modules.get("sso_emulator")
    cls = getattr(module, "SSOEmulator", None)
    if cls is None:
        return
    start = cls.start

    def started(self: Any) -> Any:
        emulators.append(self)
        return start(self)

    monkeypatch.setattr(cls, "start", started)


@pytest.fixture(autouse=True)
def leak_guard(request: pytest.FixtureRequest) -> Iterator[Collected]:
    global _current
    collected = Collected()
    if os.environ.get("GITHUB_ENV"):
        collected.legal_files.add(Path(os.environ["GITHUB_ENV"]))
    emulators: list[Any] = []
    handler = _Records(collected.logs)
    root = logging.getLogger()
    with pytest.MonkeyPatch.context() as mp:
        _hook_subprocess(mp, collected)
        _hook_sso(mp, emulators)
        root.addHandler(handler)
        _current = collected
        try:
            yield collected
        finally:
            _current = None
            root.removeHandler(handler)
    if request.node.get_closest_marker("allow_leaks"):
        return
    funcargs: dict[str, Any] = getattr(request.node, "funcargs", {})
    moto = funcargs.get("moto")
    aws_env = funcargs.get("aws_env")
    if moto is None and aws_env is not None:
        moto = getattr(aws_env, "moto", None)
    if moto is not None:
        collected.secrets |= moto_secrets(moto.recording.responses_file)
    emulators += [v for v in funcargs.values() if type(v).__name__ == "SSOEmulator"]
    collected.secrets |= sso_secrets(emulators)
    if not collected.secrets:
        return
    roots = [p for p in (funcargs.get("tmp_path"), getattr(aws_env, "home", None)) if p is not None]
    problems = check(collected, roots, [Path(aws_env.home)] if aws_env is not None else [])
    if problems:
        shown = "\n  ".join(problems[:20])
        pytest.fail(
            f"leak guard: {len(problems)} secret(s) outside their legal sinks "
            f"({'; '.join(LEGAL_SINKS.values())}):\n  {shown}\n"
            "(mark the test @pytest.mark.allow_leaks('why') only if it writes secrets on purpose)",
            pytrace=False,
        )
