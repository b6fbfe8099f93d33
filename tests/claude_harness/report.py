"""Reading one run's work dir: `ClaudeRun`, its checks and its report.

A run passes when
  (a) Claude Code ran the awsCredentialExport helper (unless the run was told
      not to require it: a given command, an unwrapped settings file),
  (b) Bedrock got at least one request, every request's SigV4 signature
      verified with credentials the helper printed (the fake Bedrock checked it
      when it arrived) and carried that output's SessionToken, and one was
      signed with the expected AccessKeyId (`expect_akid`, else the AccessKeyId
      of the helper's first output),
  (c) Claude exited 0 and printed the fake model's text.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from claude_harness.fake_bedrock import parse_like_claude

_EVENT = re.compile(r"^(START|END|KILLED) (\S+) tag=(\S+) pid=(\d+)(.*)$")


def _read(path: str | Path, default: str = "") -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return default


class ClaudeRun:
    """One run of the real Claude Code; its work dir is kept for reading."""

    def __init__(self, workdir: str, *, expect_akid: str | None, expect_text: str,
                 require_helper: bool, stderr: str = "") -> None:
        self.workdir: str | None = workdir
        self.stderr = stderr
        self.harness: dict[str, Any] = json.loads(_read(os.path.join(workdir, "harness.json"), "{}") or "{}")
        self.expect_akid = expect_akid
        self.expect_text = expect_text
        self.require_helper = require_helper
        self.stdout, ok = self._analyse()
        self.rc = 0 if ok else (2 if self.harness.get("error") or not self.harness else 1)

    # ---------------------------------------------------------------- files

    def _path(self, *parts: str) -> str:
        if not self.workdir:
            raise AssertionError(f"no work dir\n{self.report()}")
        return os.path.join(self.workdir, *parts)

    @property
    def claude_rc(self) -> int | None:
        text = _read(self._path("claude.rc")).strip()
        return int(text) if text else None

    @property
    def claude_stdout(self) -> str:
        return _read(self._path("claude.stdout"))

    @property
    def claude_stderr(self) -> str:
        return _read(self._path("claude.stderr"))

    def bedrock_requests(self) -> list[dict[str, Any]]:
        """One dict per Bedrock request: method, path, headers, authorization,
        x-amz-security-token, credential, sigv4, token, op, answer, t..."""
        return [json.loads(ln) for ln in _read(self._path("bedrock.jsonl")).splitlines() if ln.strip()]

    def bedrock_akids(self) -> set[str]:
        """AccessKeyIds in the SigV4 `Credential=` of the Bedrock requests."""
        return {r["credential"] for r in self.bedrock_requests() if r.get("credential")}

    def helper_events(self) -> list[tuple[str, float, str, int, str]]:
        """(START|END|KILLED, time, tag, pid, rest) from the wrappers' log."""
        out = []
        for line in _read(self._path("helper", "invocations.log")).splitlines():
            m = _EVENT.match(line)
            if m:
                out.append((m[1], float(m[2]), m[3], int(m[4]), m[5].strip()))
        return out

    def _outputs(self, tag: str) -> list[tuple[str, str]]:
        """(file, stdout) of each finished helper run with this tag, in start order."""
        out = []
        for kind, _t, t, pid, _rest in self.helper_events():
            path = self._path("helper", f"{tag}.{pid}.out")
            if kind == "START" and t == tag and os.path.exists(path):
                out.append((path, _read(path)))
        return out

    def helper_invocations(self) -> int:
        return sum(1 for kind, _t, tag, _p, _r in self.helper_events() if kind == "START" and tag == "export")

    def helper_outputs(self) -> list[Any]:
        """Parsed stdout of each `awsCredentialExport` run, in invocation order."""
        parsed = []
        for path, text in self._outputs("export"):
            try:
                parsed.append(json.loads(text))
            except ValueError as exc:
                raise AssertionError(f"{path} is not JSON ({exc}): {text[:300]!r}") from exc
        return parsed

    def refresh_outputs(self) -> list[str]:
        """Raw stdout of each `awsAuthRefresh` run, in invocation order."""
        return [text for _, text in self._outputs("refresh")]

    # ---------------------------------------------------------------- verdict

    @property
    def passed(self) -> bool:
        lines = [ln for ln in self.stdout.splitlines() if ln.strip()]
        return bool(lines) and lines[-1].startswith("PASS")

    def report(self) -> str:
        """Everything worth reading when an assertion fails."""
        return f"rc={self.rc}\n{self.stdout}\n-- harness stderr (tail) --\n{self.stderr[-3000:]}"

    def _analyse(self) -> tuple[str, bool]:
        lines = [f"== Claude Code {self.harness.get('version', '?')}   workdir: {self.workdir}"]
        if not self.harness or self.harness.get("error"):
            error = self.harness.get("error") or "the namespace runner wrote no harness.json"
            lines.append(f"FAIL: harness error: {error}")
            return "\n".join(lines), False
        t0 = float(self.harness.get("t0", 0))
        lines.append(f"== command: {self.harness.get('argv')}")
        lines.append("== helper runs (seconds after Claude started):")
        first = None
        for kind, t, tag, pid, rest in self.helper_events():
            lines.append(f"   +{t - t0:7.2f}s {kind:6} {tag:7} pid={pid} {rest}")
            if kind == "END":
                err = _read(self._path("helper", f"{tag}.{pid}.err")).strip()
                if err:
                    lines.append(f"            stderr: {err[:300]!r}")
                if tag == "export" and first is None:
                    first = parse_like_claude(_read(self._path("helper", f"export.{pid}.out")))
        exports = self.helper_invocations()
        akid = self.expect_akid or (first or {}).get("AccessKeyId")
        requests = self.bedrock_requests()
        lines.append("== Bedrock requests (verified on arrival against the helper's outputs):")
        for r in requests:
            lines.append(f"   +{r['t'] - t0:7.2f}s {r['method']} {r['path']} -> {r.get('answer')} "
                         f"Credential={r.get('credential')} sigv4={r.get('sigv4')} token={r.get('token')}")
        if not requests:
            lines.append("   (none)")
        rc = self.harness.get("rc")
        out = self.claude_stdout
        lines.append(f"== claude exit {rc}{' (timed out)' if self.harness.get('timed_out') else ''}, "
                     f"{float(self.harness.get('t1', t0)) - t0:.2f}s")
        lines.append("== claude stdout: " + (out[:600].strip() or "(empty)"))
        lines.append("== claude stderr: " + (self.claude_stderr[:1500].strip() or "(empty)"))
        verified = [r for r in requests if r.get("sigv4") == "ok" and r.get("token") == "match"]
        a = exports >= 1 or not self.require_helper
        expected = (akid is None and not self.require_helper) or any(
            r["credential"] == akid for r in verified)
        b = bool(requests) and len(verified) == len(requests) and expected
        c = rc == 0 and self.expect_text in out
        required = "" if self.require_helper else " (not required)"
        lines.append(f"   (a) helper run by Claude: {exports}x{required}")
        lines.append(f"   (b) Bedrock requests verified: {len(verified)}/{len(requests)}, "
                     f"expected Credential={akid}")
        lines.append(f"   (c) claude exit 0 and model text printed: {'yes' if c else 'NO'}")
        ok = a and b and c
        lines.append(f"{'PASS' if ok else 'FAIL'}: helper_invocations={exports} "
                     f"signed_with_helper_creds={'yes' if b else 'no'} claude_rc={rc} "
                     f"model_text={'yes' if self.expect_text in out else 'no'}")
        return "\n".join(lines), ok
