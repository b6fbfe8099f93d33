"""Benchmark (not a test): `credhelper export` beside `python -c pass` and the peer tools.

Start it through `bench/run`, which prepares the venvs and runs this file with the
main venv's python. Everything happens in a throwaway directory under bench/.work/:
its own HOME, AWS config and credentials, credhelper settings and store key, a local
moto STS on a free port (with moto's request recorder on), and the daemon. The
user's ~/.aws, keyring and daemon are never touched. The results go to
bench/RESULTS.md.

What it measures, in one run:
- wall time of whole processes spawned fresh each run (time.perf_counter around
  subprocess.run, stdout and stderr captured), `--runs` timed runs after
  `--warmups` warm-ups, rows of a phase interleaved round-robin so that drift of
  the machine hits every row alike:
    phase A (daemon up, warm): `python -c pass`, credhelper export via the daemon,
      and both again from a venv without .venv's editable-install hook (the layout
      of a regular install), plus the export through a launcher without `import re`;
    phase B (daemon stopped): `python -c pass` again (drift check), credhelper's
      direct path, aws-export-credentials (cache hit), a boto3 one-liner
      (and `aws configure export-credentials` if an AWS CLI v2 is found);
- upstream AssumeRole calls (counted on moto's side) of `--concurrency` concurrent
  cold exports through a freshly started daemon with an empty store;
- the daemon's RSS and CPU time over `--idle-seconds` of idleness.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WORK = BENCH / ".work"
BIN = Path(sys.prefix) / "bin"  # the main venv: bench/run starts us with its python
PY = BIN / "python"
CREDHELPER = BIN / "credhelper"
MOTO_SERVER = BIN / "moto_server"
PROFILE = "demo"
BOTO3_ONELINER = (
    "import boto3,json;c=boto3.Session(profile_name='demo').get_credentials()"
    ".get_frozen_credentials();print(json.dumps(c._asdict()))"
)
CLK_TCK = os.sysconf("SC_CLK_TCK")
X = "\N{MULTIPLICATION SIGN}"
#: "idle CPU ≈ 0" is read as at most this many CPU seconds per hour (0.03 % of a core)
IDLE_CPU_LIMIT = 1.0
RSS_LIMIT_MB = 80
WARM_RATIO_LIMIT = 2.0
ROUNDTRIPS = 500
PEER_FACTOR = 10.0


class BenchError(Exception):
    pass


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def p90(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=10, method="inclusive")[8]


# ------------------------------------------------------------------ the sandbox


class Sandbox:
    """A temp HOME with the demo profile, credhelper settings and key; the env for every tool."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.home = directory / "home"
        self.aws_config = self.home / ".aws" / "config"
        self.aws_credentials = self.home / ".aws" / "credentials"
        self.settings = directory / "credhelper.toml"
        self.key = directory / "store.key"
        self.store = directory / "store.enc"
        self.runtime = directory / "xdg-runtime"
        self.socket = directory / "run" / "daemon.sock"
        self.state = self.home / ".local" / "state" / "credhelper"
        self.aec_cache = directory / "aws-export-credentials-cache.json"
        if len(str(self.socket)) > 100:
            raise BenchError(f"socket path too long for AF_UNIX: {self.socket} (move the checkout)")
        self.env: dict[str, str] = {}

    def write(self, sts_url: str) -> None:
        (self.home / ".aws").mkdir(parents=True)
        self.runtime.mkdir(mode=0o700)
        self.aws_config.write_text(textwrap.dedent(f"""\
            [profile {PROFILE}]
            role_arn = arn:aws:iam::123456789012:role/demo
            source_profile = demo-base
            region = us-east-1

            [profile demo-base]
            region = us-east-1
            """))
        self.aws_credentials.write_text(textwrap.dedent("""\
            [demo-base]
            aws_access_key_id = AKIADEMOEXAMPLE00001
            aws_secret_access_key = demo/secret/key/moto/accepts/anything00
            """))
        fd = os.open(self.key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(32))
        self.settings.write_text(
            f'store = "encrypted-file"\nencrypted_file = "{self.store}"\nkey_file = "{self.key}"\n'
        )
        # A clean environment: nothing of the caller's AWS_*, XDG_*, PYTHON*, D-Bus.
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "AWS_CONFIG_FILE": str(self.aws_config),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.aws_credentials),
            "CREDHELPER_CONFIG": str(self.settings),
            "CREDHELPER_SOCKET": str(self.socket),
            "XDG_RUNTIME_DIR": str(self.runtime),
            "AWS_ENDPOINT_URL_STS": sts_url,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def make_cold(self) -> None:
        """No credentials anywhere on disk, no remembered profiles: the daemon starts cold."""
        for path in (self.store, Path(f"{self.store}.lock"), self.state / "recent-profiles.json"):
            path.unlink(missing_ok=True)


# ------------------------------------------------------------------ moto


def request_action(entry: dict[str, Any]) -> str | None:
    """The `Action` of one moto recorder entry (form body, else query string)."""
    body = entry.get("body") or ""
    raw = base64.b64decode(body) if entry.get("body_encoded") else str(body).encode()
    form = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
    if "Action" in form:
        return form["Action"][0]
    query = parse_qs(urlsplit(str(entry.get("url", ""))).query)
    return query["Action"][0] if "Action" in query else None


class Moto:
    """moto_server as STS on a free port, recording every request it receives."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.recording = directory / "moto.requests.jsonl"
        self.logfile = directory / "moto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> None:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.dir),
            "LANG": "C.UTF-8",
            "MOTO_ENABLE_RECORDING": "True",
            "MOTO_RECORDER_FILEPATH": str(self.recording),
        }
        with open(self.logfile, "ab") as logf:
            for _ in range(3):  # the free port may be taken between probe and bind
                port = free_port()
                self.proc = subprocess.Popen(
                    [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
                    env=env, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=logf,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )
                self.url = f"http://127.0.0.1:{port}"
                if self._ready():
                    return
                self.stop()
        raise BenchError(f"moto_server did not start; see {self.logfile}")

    def _ready(self, timeout: float = 30) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def offset(self) -> int:
        try:
            return self.recording.stat().st_size
        except FileNotFoundError:
            return 0

    def calls(self, since: int, action: str = "AssumeRole") -> int:
        """Recorded requests with this Action after byte offset `since`."""
        try:
            with open(self.recording, "rb") as f:
                f.seek(since)
                data = f.read()
        except FileNotFoundError:
            return 0
        data = data[: data.rfind(b"\n") + 1]  # complete lines only
        count = 0
        for line in data.decode("utf-8", "replace").splitlines():
            if line.strip() and request_action(json.loads(line)) == action:
                count += 1
        return count

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None


def stop_process(proc: subprocess.Popen[Any] | None, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------ the daemon


@dataclass
class ProcSample:
    t: float
    rss_kb: int
    hwm_kb: int
    threads: int
    cpu_s: float
    ctxt_switches: int


def proc_sample(pid: int) -> ProcSample:
    status = Path(f"/proc/{pid}/status").read_text()

    def kb(name: str) -> int:
        m = re.search(rf"^{name}:\s+(\d+)", status, re.M)
        return int(m.group(1)) if m else 0

    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # fields[0] is field 3 (state)
    utime, stime = int(fields[11]), int(fields[12])
    ctxt = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "status").read_text()
        except OSError:
            continue  # a thread that just ended
        ctxt += sum(int(n) for n in re.findall(r"ctxt_switches:\s+(\d+)", text))
    return ProcSample(time.monotonic(), kb("VmRSS"), kb("VmHWM"), kb("Threads"),
                      (utime + stime) / CLK_TCK, ctxt)


class Daemon:
    """`credhelper daemon` with the sandbox's environment, logs to a file."""

    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb
        self.logfile = sb.dir / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        with open(self.logfile, "ab") as logf:
            self.proc = subprocess.Popen(
                [str(CREDHELPER), "daemon"], env=self.sb.env, cwd=self.sb.home,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=logf,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"the daemon exited {self.proc.returncode}; see {self.logfile}")
            if self.ping():
                return
            time.sleep(0.02)
        raise BenchError(f"the daemon did not answer a ping within 30 s; see {self.logfile}")

    def ask(self, op: str, fields: dict[str, str] | None = None) -> tuple[str, int, str] | None:
        from credhelper import fastpath, protocol

        env = {k: self.sb.env[k] for k in protocol.CLIENT_ENV if k in self.sb.env}
        return fastpath.ask_daemon(str(self.sb.socket), protocol.encode_request(op, fields or {}, env))

    def ping(self) -> bool:
        if not self.sb.socket.exists():
            return False
        answer = self.ask("ping")
        return answer is not None and answer[0] == "ok"

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def log_offset(self) -> int:
        return self.logfile.stat().st_size if self.logfile.exists() else 0

    def events(self, since: int, event: str = "export") -> list[dict[str, Any]]:
        with open(self.logfile, "rb") as f:
            f.seek(since)
            data = f.read()
        out = []
        for line in data.decode("utf-8", "replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("event") == event:
                out.append(rec)
        return out


# ------------------------------------------------------------------ timing


def access_key_id(stdout: bytes) -> str | None:
    try:
        data = json.loads(stdout)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("Credentials"), dict):
        data = data["Credentials"]
    value = data.get("AccessKeyId") or data.get("access_key")
    return str(value) if value else None


@dataclass
class Row:
    key: str
    label: str  # the command as shown in RESULTS.md
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    credentials: bool = True  # prints credentials (an AccessKeyId is checked)
    short: str = ""  # name in the targets table
    editable_venv: bool = True  # runs on .venv's interpreter (with the editable-install hook)
    samples: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    sts_calls: int = 0
    akids: set[str] = field(default_factory=set)
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p90(self) -> float:
        return p90(self.samples)


def run_once(row: Row, moto: Moto, record: bool) -> None:
    before = moto.offset()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(row.argv, env=row.env, cwd=row.cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, check=False)
    elapsed = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()[-800:]
        raise BenchError(f"{row.label} exited {proc.returncode}: {err}")
    akid = access_key_id(proc.stdout) if row.credentials else None
    if row.credentials and akid is None:
        raise BenchError(f"{row.label} printed no credentials: {proc.stdout[:200]!r}")
    if record:
        row.samples.append(elapsed)
        row.cpu.append((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime))
        row.sts_calls += moto.calls(before)
        if akid:
            row.akids.add(akid)


def measure(rows: list[Row], moto: Moto, runs: int, warmups: int) -> None:
    """Warm-ups, then `runs` rounds; each round runs every row once, in order."""
    for _ in range(warmups):
        for row in rows:
            run_once(row, moto, record=False)
    for i in range(runs):
        for row in rows:
            run_once(row, moto, record=True)
        if (i + 1) % 10 == 0:
            log(f"  {i + 1}/{runs} rounds")


# ------------------------------------------------------------------ the burst


@dataclass
class Burst:
    clients: int
    ok: int
    failed: list[str]
    akids: set[str]
    assume_role_calls: int
    wall_s: float
    served_by: Counter[str]
    daemon_rss_kb: int
    daemon_threads_peak: int
    answer_spread_s: float  # first to last export the daemon logged
    mint_ms: list[float]  # the daemon's `refresh ... outcome=minted` durations


class DelayProxy:
    """A TCP relay to moto that holds each chunk a client sends for `delay` seconds:
    local moto answers in a few ms, real STS in tens to hundreds, and the burst
    should find the daemon's mint in flight."""

    def __init__(self, upstream: str, delay: float) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.delay = delay
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            up = socket.create_connection(self.upstream, timeout=30)
        except OSError:
            conn.close()
            return
        threading.Thread(target=self._pipe, args=(conn, up, self.delay), daemon=True).start()
        self._pipe(up, conn, 0.0)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, delay: float) -> None:
        try:
            while data := src.recv(65536):
                if delay:
                    time.sleep(delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()


def burst(n: int, sb: Sandbox, daemon: Daemon, moto: Moto) -> Burst:
    """`n` cold exports at once through a freshly started daemon with an empty store.

    Every client is a /bin/sh blocked reading a shared pipe; closing the pipe's
    write end releases all of them at once, and each execs the console script.
    """
    rfd, wfd = os.pipe()
    gate = 'read _; exec "$0" "$@" </dev/null'
    argv = ["/bin/sh", "-c", gate, str(CREDHELPER), "export", "--profile", PROFILE]
    procs = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen(argv, env=sb.env, cwd=sb.home, stdin=rfd,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    finally:
        os.close(rfd)
    time.sleep(1.0)  # let every shell reach `read` (a late one just reads EOF at once)
    before, log_before = moto.offset(), daemon.log_offset()
    threads_peak = 0
    t0 = time.perf_counter()
    os.close(wfd)
    outs: list[tuple[int, bytes, bytes]] = []
    pending = list(procs)
    while pending:
        threads_peak = max(threads_peak, proc_sample(daemon.pid).threads)
        still = []
        for p in pending:
            if p.poll() is None:
                still.append(p)
        pending = still
        if pending:
            time.sleep(0.01)
    wall = time.perf_counter() - t0
    for p in procs:
        out, err = p.communicate(timeout=60)
        outs.append((p.returncode, out, err))
    time.sleep(0.2)  # the daemon's last log lines
    failed = [f"exit {rc}: {err.decode('utf-8', 'replace').strip()[-200:]}" for rc, _, err in outs if rc != 0]
    akids = {a for rc, out, _ in outs if rc == 0 and (a := access_key_id(out))}
    exports = daemon.events(log_before)
    served = Counter(str(e.get("served_by")) for e in exports)
    stamps = sorted(dt.datetime.fromisoformat(str(e["timestamp"]).replace("Z", "+00:00"))
                    for e in exports if "timestamp" in e)
    spread = (stamps[-1] - stamps[0]).total_seconds() if stamps else 0.0
    mints = [float(e.get("duration_ms", 0)) for e in daemon.events(log_before, "refresh")
             if e.get("outcome") == "minted"]
    return Burst(n, n - len(failed), failed, akids, moto.calls(before), wall, served,
                 proc_sample(daemon.pid).rss_kb, threads_peak, spread, mints)


# ------------------------------------------------------------------ profiling the warm export


def importtime(python: Path, argv: list[str], env: dict[str, str],
               cwd: Path) -> dict[str, tuple[int, int, int]]:
    """module -> (self µs, cumulative µs, nesting depth) from `python -X importtime`."""
    proc = subprocess.run([str(python), "-X", "importtime", *argv], env=env, cwd=cwd,
                          stdin=subprocess.DEVNULL, capture_output=True, check=True)
    out: dict[str, tuple[int, int, int]] = {}
    for line in proc.stderr.decode().splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if m:
            out[m.group(4)] = (int(m.group(1)), int(m.group(2)), len(m.group(3)) // 2)
    return out


def direct_imports(env: dict[str, str], cwd: Path, runs: int = 3) -> list[tuple[str, float]]:
    """Top-level imports of the direct path (no daemon) by cumulative ms, median of `runs`."""
    samples: dict[str, list[float]] = {}
    for _ in range(runs):
        got = importtime(PY, [str(CREDHELPER), "export", "--profile", PROFILE], env, cwd)
        for mod, (_, cum, depth) in got.items():
            if depth == 0:
                samples.setdefault(mod, []).append(cum / 1000)
    return sorted(((m, statistics.median(v)) for m, v in samples.items()), key=lambda mv: -mv[1])


def strace_counts(argv: list[str], env: dict[str, str], cwd: Path, tmp: Path) -> dict[str, int] | None:
    if not shutil.which("strace"):
        return None
    out = tmp / "strace.txt"
    subprocess.run(["strace", "-f", "-c", "-o", str(out), *argv], env=env, cwd=cwd,
                   stdin=subprocess.DEVNULL, capture_output=True, check=True)
    counts: dict[str, int] = {}
    for line in out.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[3].isdigit():
            counts[parts[-1]] = int(parts[3])
    return counts


@dataclass
class Profile:
    extra_modules: list[tuple[str, int]]  # (module, self µs), beyond `python -c pass`
    extra_import_ms: float
    plain_extra_modules: list[tuple[str, int]]  # the same in the venv without the editable hook
    plain_extra_import_ms: float
    plain_re_ms: float  # cumulative `re` import in that venv's export (the launcher's)
    editable_hook_ms: float | None
    site_ms: float
    roundtrip: list[float]  # seconds, in-process ask_daemon
    roundtrip_buffered: list[float]  # the same with ask_daemon_buffered
    daemon_handle_ms: list[float]
    syscalls_export: dict[str, int] | None
    syscalls_pass: dict[str, int] | None


def extra_imports(python: Path, script: Path, env: dict[str, str], cwd: Path,
                  runs: int = 5) -> tuple[float, list[tuple[str, int]], float]:
    """(ms, [(module, self µs)], ms of `re`): what the export imports beyond `python -c pass`
    on the same interpreter, sum of self times, median of `runs`; and the cumulative time
    of `re` among them (0 when `python -c pass` imports it already)."""
    sums: list[float] = []
    res: list[float] = []
    extra: dict[str, int] = {}
    for _ in range(runs):
        base = importtime(python, ["-c", "pass"], env, cwd)
        exp = importtime(python, [str(script), "export", "--profile", PROFILE], env, cwd)
        extra = {m: v[0] for m, v in exp.items() if m not in base}
        sums.append(sum(extra.values()) / 1000)
        res.append(exp["re"][1] / 1000 if "re" in extra else 0.0)
    return statistics.median(sums), sorted(extra.items(), key=lambda kv: -kv[1]), statistics.median(res)


def ask_daemon_buffered(path: str, request: bytes) -> tuple[str, int, str] | None:
    """`fastpath.ask_daemon` with the header read in chunks instead of one byte per recv
    (a bench-local variant, to measure what that change would save; no `wait` handling)."""
    import _socket

    from credhelper import fastpath, protocol

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(fastpath.CONNECT_TIMEOUT)
        sock.connect(path)
        sock.settimeout(fastpath.HUNG_TIMEOUT)
        sock.sendall(request)
        buf = b""
        while b"\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk or len(buf) > protocol.MAX_HEADER:
                return None
            buf += chunk
        line, _, body = buf.partition(b"\n")
        kind, code, length = protocol.parse_header(line + b"\n")
        while len(body) < length:
            chunk = sock.recv(min(65536, length - len(body)))
            if not chunk:
                return None
            body += chunk
        return kind, code, body.decode("utf-8")
    except (OSError, protocol.ProtocolError, UnicodeDecodeError):
        return None
    finally:
        sock.close()


def profile_warm(sb: Sandbox, daemon_handle_ms: list[float], plain_py: Path, plain_script: Path) -> Profile:
    export = [str(CREDHELPER), "export", "--profile", PROFILE]
    extra_ms, modules, _ = extra_imports(PY, CREDHELPER, sb.env, sb.home)
    plain_ms, plain_modules, plain_re = extra_imports(plain_py, plain_script, sb.env, sb.home)
    editable, site = [], []
    for _ in range(5):
        base = importtime(PY, ["-c", "pass"], sb.env, sb.home)
        hook = next((v[1] for m, v in base.items() if m.startswith("__editable__")), None)
        if hook is not None:
            editable.append(hook / 1000)
        site.append(base.get("site", (0, 0, 0))[1] / 1000)
    from credhelper import fastpath, protocol

    env = {k: sb.env[k] for k in protocol.CLIENT_ENV if k in sb.env}
    req = protocol.encode_request("export", {"profile": PROFILE, "format": "claude"}, env)
    rtts: list[float] = []
    rtts_buffered: list[float] = []
    for _ in range(ROUNDTRIPS):  # interleaved: the shipped client, then the buffered variant
        for ask, into in ((fastpath.ask_daemon, rtts), (ask_daemon_buffered, rtts_buffered)):
            t0 = time.perf_counter()
            answer = ask(str(sb.socket), req)
            into.append(time.perf_counter() - t0)
            if answer is None or answer[0] != "ok":
                raise BenchError(f"in-process export through the daemon failed: {answer!r}")
    with tempfile.TemporaryDirectory(dir=sb.dir) as tmp:
        sys_export = strace_counts(export, sb.env, sb.home, Path(tmp))
        sys_pass = strace_counts([str(PY), "-c", "pass"], sb.env, sb.home, Path(tmp))
    return Profile(
        extra_modules=modules,
        extra_import_ms=extra_ms,
        plain_extra_modules=plain_modules,
        plain_extra_import_ms=plain_ms,
        plain_re_ms=plain_re,
        editable_hook_ms=statistics.median(editable) if editable else None,
        site_ms=statistics.median(site),
        roundtrip=rtts,
        roundtrip_buffered=rtts_buffered,
        daemon_handle_ms=daemon_handle_ms,
        syscalls_export=sys_export,
        syscalls_pass=sys_pass,
    )


# ------------------------------------------------------------------ a venv without the editable hook


def plain_venv(directory: Path) -> tuple[Path, Path, Path]:
    """(python, credhelper, credhelper-no-re) of a venv that sees .venv's code and
    dependencies without the editable install's .pth finder hook: the import layout
    of a regular install. `credhelper` is .venv's console-script file with its
    shebang changed; `credhelper-no-re` is the same launcher without `import re`."""
    import sysconfig
    import venv

    venv.EnvBuilder(with_pip=False, symlinks=True).create(directory)
    site = Path(sysconfig.get_paths()["purelib"])  # .venv's site-packages: we run on .venv
    purelib = sysconfig.get_paths(vars={"base": str(directory), "platbase": str(directory)})["purelib"]
    # Path entries only: .pth files in the added directories are not run (site.addpackage).
    (Path(purelib) / "credhelper-bench.pth").write_text(f"{ROOT}\n{site}\n")
    python = directory / "bin" / "python"
    script = directory / "bin" / "credhelper"
    lines = CREDHELPER.read_text().splitlines(keepends=True)
    script.write_text(f"#!{python}\n" + "".join(lines[1:]))
    script.chmod(0o755)
    no_re = directory / "bin" / "credhelper-no-re"
    no_re.write_text(f"#!{python}\nimport sys\nfrom credhelper.fastpath import main\n"
                     "if __name__ == '__main__':\n    sys.exit(main())\n")
    no_re.chmod(0o755)
    check = ("import sys, credhelper, boto3; print(credhelper.__file__); "
             "print(any('__editable__' in m for m in sys.modules))")
    out = subprocess.run([str(python), "-c", check], capture_output=True, text=True,
                         check=True).stdout.split()
    if out != [str(ROOT / "credhelper" / "__init__.py"), "False"]:
        raise BenchError(f"the plain venv does not import credhelper from {ROOT} as expected: {out}")
    return python, script, no_re


# ------------------------------------------------------------------ facts about the machine


def machine() -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    meminfo = Path("/proc/meminfo").read_text()
    mem = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.M)
    osname = ""
    try:
        osname = re.search(r'^PRETTY_NAME="?([^"\n]*)', Path("/etc/os-release").read_text(), re.M).group(1)  # type: ignore[union-attr]
    except (OSError, AttributeError):
        pass
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": model.group(1).strip() if model else "?",
        "memory": f"{int(mem.group(1)) / 1024 / 1024:.1f} GiB" if mem else "?",
        "kernel": platform.release(),
        "os": osname,
    }


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def wait_for_quiet(limit: float, timeout: float) -> str:
    """Wait (up to `timeout` s) until the 1-minute load average is at most `limit`."""
    deadline = time.monotonic() + timeout
    while True:
        load = float(loadavg().split()[0])
        if load <= limit:
            return f"1-minute load {load:.2f} ≤ {limit:g} when the timing started"
        if time.monotonic() >= deadline:
            return f"1-minute load still {load:.2f} > {limit:g} after waiting {timeout:g} s: timed anyway"
        log(f"waiting for a quieter machine: load {load:.2f} > {limit:g}")
        time.sleep(10)


def versions(aec: Path) -> dict[str, str]:
    v = {"python": platform.python_version()}
    for dist in ("credhelper", "boto3", "botocore", "moto"):
        v[dist] = importlib.metadata.version(dist)
    code = ("import importlib.metadata as m;"
            "print(*(m.version(d) for d in ('aws-export-credentials','boto3','botocore')))")
    out = subprocess.run([str(aec.parent / "python"), "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    v["aws-export-credentials"] = f"{out[0]} (own venv: boto3 {out[1]}, botocore {out[2]})"
    return v


def aws_cli_v2() -> tuple[str | None, str]:
    """(path of an AWS CLI v2, note)."""
    path = shutil.which("aws")
    if not path:
        return None, "no `aws` on PATH"
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"`aws --version` failed: {exc}"
    text = (out.stdout + out.stderr).strip()
    if text.startswith("aws-cli/2."):
        return path, text
    name = text.split()[0] if text else "?"
    return None, f"`aws` is `{name}`: v1 has no `aws configure export-credentials`; skipped"


# ------------------------------------------------------------------ the report


def mark(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def write_results(out: Path, ctx: dict[str, Any]) -> None:
    a: argparse.Namespace = ctx["args"]
    rows: list[Row] = ctx["rows"]
    extra: list[Row] = ctx["extra_rows"]
    by = {r.key: r for r in rows + extra}
    base, warm = by["pass"], by["warm"]
    base_plain, warm_plain, no_re = by["pass-plain"], by["warm-plain"], by["warm-no-re"]
    b: Burst = ctx["burst"]
    idle0: ProcSample = ctx["idle0"]
    idle1: ProcSample = ctx["idle1"]
    prof: Profile = ctx["profile"]
    L: list[str] = []
    add = L.append

    add("# credhelper export: benchmark results\n")
    add("Generated by one command, from the repository root:\n")
    add(f"```\n{ctx['command']}\n```\n")
    if a.idle_seconds != 600:
        add(f"The idle period was shortened to **{a.idle_seconds:g} s** "
            f"(`--idle-seconds {a.idle_seconds:g}`; the default is 600 s); its CPU time is scaled to "
            "one hour.\n")
    add(f"- Date: {ctx['date']} (the run took {ctx['took']:.0f} s)")
    m = ctx["machine"]
    add(f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} memory, {m['os']}, Linux {m['kernel']}; "
        f"load average {ctx['load_before']} before, {ctx['load_after']} after; {ctx['quiet']} (other "
        "engineers share this machine: expect some noise)")
    v = ctx["versions"]
    add("- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()))
    add(f"- credhelper store: `encrypted-file` (AES-256-GCM file + key file). {ctx['store_reason']}")
    add("- STS: a local `moto_server` on a free 127.0.0.1 port with moto's request recorder on; every "
        "tool gets `AWS_ENDPOINT_URL_STS`. A temp HOME with `[profile demo]` (role_arn + source_profile "
        "demo-base, fake static keys in a credentials file, region us-east-1). Nothing reads the real "
        "~/.aws.")
    add("")
    add("## How\n")
    add("- Each row is a whole process spawned fresh for each run: `time.perf_counter()` around "
        "`subprocess.run` (stdout and stderr captured, stdin /dev/null), the same method for every row. "
        f"{a.warmups} warm-ups then {a.runs} timed runs per row; the rows of a phase are interleaved "
        "round-robin (one run of each row per round) so that machine drift hits them alike. "
        "Median and p90 (`statistics.quantiles(n=10, method='inclusive')`). CPU = user+sys of the child "
        "(getrusage RUSAGE_CHILDREN), median.")
    add("- Phase A, daemon up and warm (started by the bench with the same env, one export first): rows 1, "
        "2, 1b, 2b, 2c. Phase B, daemon stopped (its store left warm): `python -c pass` again as a drift "
        "check, rows 3-5.")
    add("- STS calls = AssumeRole requests moto recorded during that row's timed runs.")
    add("- Rows 1, 2, 3 and 5 use the main `.venv` (`.venv/bin/python`, `.venv/bin/credhelper`). Row 4 "
        "runs in its own venv (`bench/.work/aec-venv`, `boto3<1.37`: 0.18.0 fails on newer boto3); its "
        "`--cache-file` was filled by one run before the warm-ups, so the timed runs are cache hits.")
    add("- Rows 1b, 2b, 2c: the main `.venv` has credhelper installed *editable*, and the editable "
        "install's `.pth` finder hook runs at every start of that interpreter (see the last section). "
        "Rows 1b/2b run the same code and dependencies from a venv without that hook (`venv "
        "--without-pip` + a `.pth` naming the repository and `.venv`'s site-packages, the same "
        "console-script file with its shebang changed): the layout of a regular `pip install`, and the "
        "layout row 4's venv has. Row 2c is row 2b through a 4-line launcher without `import re` "
        "(`import sys; from credhelper.fastpath import main; sys.exit(main())`).")
    add(f"- AWS CLI v2: {ctx['aws_v2_note']}.")
    add("")
    add("## Wall time per invocation\n")
    add(f"| # | command | median ms | p90 ms | {X} `python -c pass` | {X} credhelper warm | CPU ms | "
        "STS calls |")
    add("|---|---|---:|---:|---:|---:|---:|---:|")
    numbered = [(str(i), r) for i, r in enumerate(rows, 1)]
    numbered += [("1b", base_plain), ("2b", warm_plain), ("2c", no_re)]
    for num, r in numbered:
        add(f"| {num} | {r.label} | {ms(r.median)} | {ms(r.p90)} | {r.median / base.median:.2f} | "
            f"{r.median / warm.median:.2f} | {ms(statistics.median(r.cpu))} | {r.sts_calls} |")
    add("")
    drift = ctx["pass_b"]
    add(f"Drift check: `python -c pass` in phase B: median {ms(drift.median)} ms, p90 {ms(drift.p90)} ms "
        f"(phase A: {ms(base.median)} ms).\n")
    for num, r in numbered:
        if r.note:
            add(f"- Row {num}: {r.note}")
    add("")

    add("## Concurrency: one upstream call for many callers\n")
    add("The daemon was restarted with a cold store (store file, its lock and the remembered profiles "
        f"deleted), then {b.clients} `credhelper export --profile demo` processes were released at once "
        "(each a `/bin/sh` blocked reading a shared pipe, then `exec` of the console script). "
        + ("For this part STS was reached through a local relay that holds each chunk sent to it for "
           f"{a.sts_delay_ms:g} ms, so at least that much per request (`--sts-delay-ms`; local moto "
           "answers in a few ms, real STS in tens to hundreds), so that the mint is still in flight while "
           "clients arrive; AssumeRole calls are counted on moto's "
           "side, behind the relay.\n" if a.sts_delay_ms > 0 else "\n"))
    add("| measure | value |")
    add("|---|---|")
    add(f"| clients that exited 0 | {b.ok} / {b.clients} |")
    add(f"| distinct AccessKeyIds handed out | {len(b.akids)} |")
    add(f"| **AssumeRole calls moto received** | **{b.assume_role_calls}** |")
    served = ", ".join(f"{k}: {n}" for k, n in sorted(b.served_by.items())) or "none"
    add(f"| answered by the daemon (its log's `served_by`) | {sum(b.served_by.values())} ({served}) |")
    add(f"| wall time, release to last exit | {b.wall_s:.2f} s |")
    add("| exports answered, first to last (the daemon logs each after replying) | "
        f"{b.answer_spread_s:.2f} s |")
    mint = ", ".join(f"{m:.0f} ms" for m in b.mint_ms) or "none logged"
    add(f"| the daemon's mint(s) (its log's `refresh` `duration_ms`) | {mint} |")
    add(f"| daemon threads, peak seen / RSS after | {b.daemon_threads_peak} / "
        f"{b.daemon_rss_kb / 1024:.1f} MiB |")
    add("")
    add("`mint`: the client's request reached the daemon before the credentials were in memory and got "
        "the result of the one mint in flight (single flight); `memory`: it came after.\n")
    if b.failed:
        add("Failures: " + "; ".join(b.failed[:5]) + "\n")

    idle_s = idle1.t - idle0.t
    cpu = idle1.cpu_s - idle0.cpu_s
    per_hour = cpu * 3600 / idle_s
    add("## Daemon memory and idle CPU\n")
    add(f"Idle period: {idle_s:.0f} s right after the burst, nothing asking. VmRSS/VmHWM from "
        "/proc/PID/status, CPU = utime+stime from /proc/PID/stat (all threads), in clock ticks of "
        f"{1000 / CLK_TCK:.0f} ms: one tick over this period is {3600 / CLK_TCK / idle_s:.2f} CPU s/hour.\n")
    add("| moment | VmRSS MiB | VmHWM MiB | threads |")
    add("|---|---:|---:|---:|")
    for label, smp in ctx["rss_moments"]:
        add(f"| {label} | {smp.rss_kb / 1024:.1f} | {smp.hwm_kb / 1024:.1f} | {smp.threads} |")
    add("")
    add(f"CPU over the idle period: {cpu:.2f} s, i.e. **{per_hour:.2f} CPU s/hour** "
        f"({per_hour / 36:.4f} % of one core); context switches: {idle1.ctxt_switches - idle0.ctxt_switches} "
        f"(all threads); STS calls during the idle period: {ctx['idle_sts']}.\n")

    add("## Targets (from the issue)\n")
    add("| target | measured | |")
    add("|---|---|---|")
    ratio = warm.median / base.median
    ratio_plain = warm_plain.median / base_plain.median
    add(f"| warm export median ≤ {WARM_RATIO_LIMIT}{X} `python -c pass` | row 2: {ms(warm.median)} ms = "
        f"{ratio:.2f}{X} row 1 ({ms(base.median)} ms); without the editable hook, row 2b: "
        f"{ms(warm_plain.median)} ms = {ratio_plain:.2f}{X} row 1b ({ms(base_plain.median)} ms) | "
        f"{mark(max(ratio, ratio_plain) <= WARM_RATIO_LIMIT)} |")
    peers = [r for r in rows if r.key.startswith("peer")]
    as_run = [(r, r.median / warm.median) for r in peers]
    least = min(f for _, f in as_run)
    detail = "; ".join(f"{r.short} {ms(r.median)} ms = {f:.1f}{X}" for r, f in as_run)
    add(f"| ≥ {PEER_FACTOR:.0f}{X} faster than the other tools: rows as specified, each against row 2 "
        f"({ms(warm.median)} ms) | {detail} | {mark(least >= PEER_FACTOR)} ({least:.1f}{X}) |")
    # like for like: the same interpreter start-up on both sides
    fair = [(r, r.median / (warm.median if r.editable_venv else warm_plain.median)) for r in peers]
    least_fair = min(f for _, f in fair)
    detail = "; ".join(f"{r.short} {f:.1f}{X} row {'2' if r.editable_venv else '2b'}" for r, f in fair)
    add(f"| ≥ {PEER_FACTOR:.0f}{X} faster than the other tools: like for like, each peer against the "
        f"credhelper row with the same interpreter start-up (row 4 against 2b, row 5 against 2) | {detail} | "
        f"{mark(least_fair >= PEER_FACTOR)} ({least_fair:.1f}{X}) |")
    one = b.assume_role_calls == 1 and b.ok == b.clients and len(b.akids) == 1
    add(f"| 1 upstream call for {b.clients} callers | {b.assume_role_calls} AssumeRole; {b.ok}/{b.clients} "
        f"served; {len(b.akids)} AccessKeyId | {mark(one)} |")
    add(f"| idle CPU ≈ 0 (read as ≤ {IDLE_CPU_LIMIT:g} CPU s/hour) | {per_hour:.2f} CPU s/hour over "
        f"{idle_s:.0f} s | {mark(per_hour <= IDLE_CPU_LIMIT)} |")
    peak = max(smp.rss_kb for _, smp in ctx["rss_moments"])
    hwm = max(smp.hwm_kb for _, smp in ctx["rss_moments"])
    add(f"| RSS ≤ {RSS_LIMIT_MB} MB | highest VmRSS seen {peak / 1024:.1f} MiB ({peak * 1024 / 1e6:.1f} MB); "
        f"peak VmHWM {hwm / 1024:.1f} MiB ({hwm * 1024 / 1e6:.1f} MB) | "
        f"{mark(hwm * 1024 / 1e6 <= RSS_LIMIT_MB)} |")
    add("")
    aec = next((r for r in peers if not r.editable_venv), None)
    if aec is not None:
        add(f"Row 2 carries `.venv`'s editable-install hook ({ms(base.median - base_plain.median)} ms, "
            "row 1 - row 1b), row 4's venv does not: hence the like-for-like row. "
            f"With the launcher fix of finding 1 below (row 2c, {ms(no_re.median)} ms): "
            f"{no_re.median / base_plain.median:.2f}{X} `python -c pass` (row 1b), and {aec.short} is "
            f"{aec.median / no_re.median:.1f}{X} slower.\n")

    add("## Where the warm export's time goes\n")
    gap = warm.median - base.median
    gap_plain = warm_plain.median - base_plain.median
    rtt = statistics.median(prof.roundtrip)
    rtt_buf = statistics.median(prof.roundtrip_buffered)
    add(f"Gap to `python -c pass`: row 2 - row 1 = {ms(gap)} ms; row 2b - row 1b = {ms(gap_plain)} ms; "
        f"row 2c - row 1b = {ms(no_re.median - base_plain.median)} ms.\n")

    def mods(items: list[tuple[str, int]]) -> str:
        return ", ".join(f"`{mod}` {us / 1000:.2f}" for mod, us in items[:12])

    add("- Imports beyond `python -c pass` on the same interpreter (`-X importtime`, sum of self times, "
        f"median of 5): `.venv`: {prof.extra_import_ms:.2f} ms ({mods(prof.extra_modules)}); venv without "
        f"the editable hook: {prof.plain_extra_import_ms:.2f} ms ({mods(prof.plain_extra_modules)}).")
    add("- Daemon round trip, in-process (`fastpath.ask_daemon`: connect, send, read header and body; "
        f"{ROUNDTRIPS}{X}): median {rtt * 1e6:.0f} µs, p90 {p90(prof.roundtrip) * 1e6:.0f} µs. The same with "
        f"the header read in chunks (bench-local variant, interleaved): median {rtt_buf * 1e6:.0f} µs, "
        f"p90 {p90(prof.roundtrip_buffered) * 1e6:.0f} µs.")
    if prof.daemon_handle_ms:
        add(f"- Inside the daemon (its log's `duration_ms` of the phase A exports): median "
            f"{statistics.median(prof.daemon_handle_ms):.2f} ms.")
    if prof.syscalls_export and prof.syscalls_pass:
        se, sp = prof.syscalls_export, prof.syscalls_pass
        add(f"- Syscalls (`strace -f -c`, `.venv`): export {se.get('total', 0)}, `python -c pass` "
            f"{sp.get('total', 0)}. The export's socket I/O: connect {se.get('connect', 0)}, sendto "
            f"{se.get('sendto', 0)}, recvfrom {se.get('recvfrom', 0)}, poll {se.get('poll', 0)}: the "
            "header is read one byte per recv, each preceded by a poll (the socket has a timeout).")
    if prof.editable_hook_ms is not None:
        add(f"- Not credhelper's code, but in rows 1, 2, 3 and 5: the editable install's "
            f"`__editable___credhelper_*_finder` hook, run by a `.pth` file at every start of `.venv`'s "
            f"interpreter, costs {prof.editable_hook_ms:.1f} ms of `site`'s {prof.site_ms:.1f} ms "
            f"(`-X importtime` of `python -c pass`); row 1 - row 1b = "
            f"{ms(base.median - base_plain.median)} ms. "
            "It also imports `re` (among others), which hides the launcher's own `import re` in row 2.")
    add("")
    add("Findings:\n")
    add(f"1. **The console-script launcher's `import re`** (pip's generated `bin/credhelper`: `import re`, "
        f"then `re.sub` on argv[0]) costs row 2b - row 2c = **{ms(warm_plain.median - no_re.median)} ms** "
        f"per export, {100 * (warm_plain.median - no_re.median) / warm_plain.median:.0f} % of row 2b, before "
        "`credhelper.fastpath` runs. A launcher without it (row 2c) is "
        f"{no_re.median / base_plain.median:.2f}{X} `python -c pass` instead of {ratio_plain:.2f}{X}"
        + (f", and {aec.short} (row 4, same interpreter start-up) is {aec.median / no_re.median:.1f}{X} "
           f"slower instead of {aec.median / warm_plain.median:.1f}{X}." if aec is not None else "."))
    add(f"2. The client itself is lean: {prof.plain_extra_import_ms - prof.plain_re_ms:.2f} ms of imports "
        f"besides the launcher's `re` ({prof.plain_re_ms:.2f} ms cumulative), a {rtt * 1e6:.0f} µs "
        "round trip. Reading the header in chunks instead of byte by byte saves "
        f"{max(0.0, rtt - rtt_buf) * 1e6:.0f} µs per export ({recv_note(prof)}).")
    dm = ctx["direct_imports"]
    if dm:
        top = ", ".join(f"`{mod}` {cum:.1f}" for mod, cum in dm[:6])
        direct = by["direct"]
        versus = ""
        if aec is not None:
            word = "slower" if direct.median > aec.median else "faster"
            versus = f", {direct.median / aec.median:.2f}{X} row 4: {word} than the {aec.short} cache hit"
        add(f"3. The direct path (row 3, {ms(direct.median)} ms{versus}): its top-level imports "
            f"(cumulative ms, `-X importtime`): {top}. With a warm store it still imports click and "
            "botocore (`credhelper.config` imports `botocore.session`, `credhelper.sources.base` imports "
            "`botocore.config`).")
    if max(ratio, ratio_plain) > WARM_RATIO_LIMIT:
        add("")
        add(f"**The warm target was missed** ({ratio:.2f}{X} / {ratio_plain:.2f}{X} > "
            f"{WARM_RATIO_LIMIT}{X}): the numbers above split the gap into imports, the daemon round trip "
            "and the launcher.")
    add("")
    out.write_text("\n".join(L) + "\n")


def recv_note(prof: Profile) -> str:
    se = prof.syscalls_export or {}
    return f"{se.get('recvfrom', 0)} recvfrom + {se.get('poll', 0)} poll calls become 1-2 of each"


# ------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmups", type=int, default=3)
    ap.add_argument("--idle-seconds", type=float, default=600)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--sts-delay-ms", type=float, default=250,
                    help="latency added to each STS request during the burst (0: none)")
    ap.add_argument("--aec", type=Path, default=WORK / "aec-venv" / "bin" / "aws-export-credentials",
                    help="the aws-export-credentials console script (in its own venv)")
    ap.add_argument("--quiet-load", type=float, default=1.0,
                    help="wait for the 1-minute load average to drop to this before timing")
    ap.add_argument("--quiet-wait", type=float, default=300, help="but wait at most this many seconds")
    ap.add_argument("--output", type=Path, default=BENCH / "RESULTS.md")
    ap.add_argument("--command", default="", help="the command line to print at the top of the results")
    ap.add_argument("--keep-work", action="store_true", help="keep the temp dir (logs, recordings)")
    a = ap.parse_args()
    if a.runs < 2:
        ap.error("--runs must be at least 2")
    for path in (CREDHELPER, MOTO_SERVER, a.aec):
        if not os.access(path, os.X_OK):
            raise BenchError(f"{path} is missing: run bench/run, which installs what is needed")
    command = a.command or "bench/run " + " ".join(sys.argv[1:])
    started = time.monotonic()
    WORK.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=WORK))
    sb = Sandbox(workdir)
    moto = Moto(workdir)
    daemon = Daemon(sb)
    proxy: DelayProxy | None = None
    try:
        log(f"work dir {workdir}")
        moto.start()
        sb.write(moto.url)
        log(f"moto STS on {moto.url}")

        env, home = sb.env, sb.home
        export = [str(CREDHELPER), "export", "--profile", PROFILE]
        pass_a = Row("pass", "`python -c pass`", [str(PY), "-c", "pass"], env, home, credentials=False)
        warm = Row("warm", "`credhelper export --profile demo`, daemon up (warm)", export, env, home)
        pass_b = Row("pass-b", "`python -c pass` (phase B)", [str(PY), "-c", "pass"], env, home,
                     credentials=False)
        direct = Row("direct", "`credhelper export --profile demo`, daemon stopped (direct path, store warm)",
                     export, env, home)
        aec = Row("peer-aec", "`aws-export-credentials --profile demo --json --cache-file F` (cache hit)",
                  [str(a.aec), "--profile", PROFILE, "--json", "--cache-file", str(sb.aec_cache)], env, home,
                  short="aws-export-credentials")
        boto = Row("peer-boto3", "`python -c \"import boto3…get_frozen_credentials()…\"` (boto3 one-liner)",
                   [str(PY), "-c", BOTO3_ONELINER], env, home, short="boto3 one-liner")
        aec.editable_venv = False
        plain_py, plain_credhelper, plain_no_re = plain_venv(workdir / "plain-venv")
        pass_plain = Row("pass-plain", "`python -c pass`, venv without the editable hook",
                         [str(plain_py), "-c", "pass"], env, home, credentials=False, editable_venv=False)
        warm_plain = Row("warm-plain", "`credhelper export --profile demo`, daemon up (warm), venv "
                         "without the editable hook", [str(plain_credhelper), "export", "--profile", PROFILE],
                         env, home, editable_venv=False)
        warm_no_re = Row("warm-no-re", "`credhelper export --profile demo`, daemon up (warm), venv without "
                         "the editable hook, launcher without `import re`",
                         [str(plain_no_re), "export", "--profile", PROFILE], env, home, editable_venv=False)
        v2_path, v2_note = aws_cli_v2()
        v2 = None
        if v2_path:
            v2 = Row("peer-awsv2", "`aws configure export-credentials --profile demo`",
                     [v2_path, "configure", "export-credentials", "--profile", PROFILE], env, home,
                     short="aws CLI v2")

        # -- phase A: the daemon, warm
        quiet = wait_for_quiet(a.quiet_load, a.quiet_wait)
        load_before = loadavg()
        daemon.start()
        rss_moments = [("daemon started, no profile yet", proc_sample(daemon.pid))]
        run_once(warm, moto, record=False)  # warm: the first export mints (or loads) and caches
        if not daemon.ping():
            raise BenchError("the daemon is not answering")
        rss_moments.append(("after the first export (warm)", proc_sample(daemon.pid)))
        log_a = daemon.log_offset()
        log(f"phase A: {a.warmups} warm-ups + {a.runs} runs of rows 1, 2, 1b, 2b, 2c")
        measure([pass_a, warm, pass_plain, warm_plain, warm_no_re], moto, a.runs, a.warmups)
        exports_a = daemon.events(log_a)
        memory_a = [e for e in exports_a if e.get("served_by") == "memory"]
        warm.note = (f"the daemon's log shows {len(exports_a)} exports for the {3 * (a.warmups + a.runs)} "
                     f"runs of rows 2, 2b and 2c ({len(memory_a)} served from memory).")
        log("profiling the warm export")
        prof = profile_warm(sb, [float(e["duration_ms"]) for e in memory_a if "duration_ms" in e],
                            plain_py, plain_credhelper)
        rss_moments.append((f"after phase A ({3 * (a.warmups + a.runs)} exports + 300 in-process)",
                            proc_sample(daemon.pid)))

        # -- phase B: no daemon
        daemon.stop()
        if sb.socket.exists():
            raise BenchError("the daemon's socket is still there after it stopped")
        if not sb.store.exists():
            raise BenchError("the daemon left no store file: the direct path would mint")
        direct_mods = direct_imports(env, home)
        run_once(aec, moto, record=False)  # fills aws-export-credentials' cache file
        rows_b = [pass_b, direct, aec, boto] + ([v2] if v2 else [])
        log(f"phase B: {a.warmups} warm-ups + {a.runs} runs of rows 3-{2 + len(rows_b) - 1}")
        measure(rows_b, moto, a.runs, a.warmups)
        boto.note = ("boto3 keeps assumed-role credentials in process memory only, so every run calls "
                     "AssumeRole.")
        direct.note = "no STS call: credentials come from the encrypted store the daemon wrote."

        # -- the burst, through a cold daemon
        log(f"burst: {a.concurrency} concurrent cold exports")
        sb.make_cold()
        if a.sts_delay_ms > 0:
            proxy = DelayProxy(moto.url, a.sts_delay_ms / 1000)
            sb.env["AWS_ENDPOINT_URL_STS"] = proxy.url  # the daemon's and the clients' (rows are done)
        daemon.start()
        b = burst(a.concurrency, sb, daemon, moto)
        rss_moments.append((f"after the burst of {a.concurrency} (restarted daemon)",
                            proc_sample(daemon.pid)))

        # -- idle
        log(f"idle: {a.idle_seconds:g} s")
        time.sleep(2)  # let the burst's threads end
        idle_before = moto.offset()
        idle0 = proc_sample(daemon.pid)
        rss_moments.append(("idle period start", idle0))
        time.sleep(a.idle_seconds)
        idle1 = proc_sample(daemon.pid)
        rss_moments.append((f"idle period end (+{a.idle_seconds:g} s)", idle1))
        idle_sts = moto.calls(idle_before)

        rows = [pass_a, warm, direct, aec, boto] + ([v2] if v2 else [])
        extra_rows = [pass_plain, warm_plain, warm_no_re]
        has_bus = bool(os.environ.get("DBUS_SESSION_BUS_ADDRESS"))
        store_reason = (
            "A D-Bus session bus is set, but the bench uses the file store so that results do not depend on "
            "a keyring daemon." if has_bus else
            "No Secret Service reachable (`DBUS_SESSION_BUS_ADDRESS` unset), so not the keyring store."
        )
        ctx = {
            "args": a, "command": command, "rows": rows, "extra_rows": extra_rows, "pass_b": pass_b,
            "burst": b,
            "idle0": idle0, "idle1": idle1, "idle_sts": idle_sts, "rss_moments": rss_moments,
            "profile": prof, "direct_imports": direct_mods, "machine": machine(), "versions": versions(a.aec),
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "took": time.monotonic() - started, "load_before": load_before, "quiet": quiet,
            "load_after": loadavg(),
            "store_reason": store_reason, "aws_v2_note": v2_note if v2_path is None else f"found: {v2_note}",
        }
        write_results(a.output, ctx)
        log(f"wrote {a.output}")
        print(a.output.read_text())
        return 0
    finally:
        daemon.stop()
        if proxy is not None:
            proxy.close()
        moto.stop()
        if a.keep_work:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        log(f"error: {exc}")
        sys.exit(1)
