"""Benchmark (not a test): `credhelper export` beside `python -c pass` and the peer tools.

Start it through `bench/run`, which prepares the venvs and runs this file with the
main venv's python. Everything happens in a throwaway directory under bench/.work/:
its own HOME, AWS config and credentials, credhelper settings and store key, a local
moto STS on a free port (with moto's request recorder on), and the daemon. The
user's ~/.aws, keyring and daemon are never touched. The results go to
bench/RESULTS.md.

Two layouts of credhelper are timed:
- the headline rows run a regular, non-editable install of the checkout in
  bench/.work/venv (what `pipx install` gives users; made by bench/regular_venv.py):
  its `bin/credhelper` launcher and its `python`;
- the extra "d" rows run the developer checkout layout, the main `.venv`, where
  credhelper is installed editable (a `.pth` finder hook at every interpreter start).

What it measures, in one run:
- wall time of whole processes spawned fresh each run (time.perf_counter around
  subprocess.run, stdout and stderr captured), `--runs` timed runs after
  `--warmups` warm-ups, rows of a phase interleaved round-robin so that drift of
  the machine hits every row alike:
    phase A (daemon up, warm): `python -c pass` and credhelper export via the
      daemon, in both layouts;
    phase B (daemon stopped): `python -c pass` again (drift check), credhelper's
      direct path, aws-export-credentials (cache hit), a boto3 one-liner
      (and `aws configure export-credentials` if an AWS CLI v2 is found), and the
      direct path and the boto3 one-liner in the developer layout;
- upstream AssumeRole calls (counted on moto's side) of `--concurrency` concurrent
  cold exports through a freshly started daemon with an empty store;
- the daemon's RSS and CPU time over `--idle-seconds` of idleness.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import regular_venv  # bench/, on sys.path as this script's directory

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
WORK = BENCH / ".work"
DEV_BIN = Path(sys.prefix) / "bin"  # the main, editable .venv: bench/run starts us with its python
DEV_PY = DEV_BIN / "python"
DEV_CREDHELPER = DEV_BIN / "credhelper"
MOTO_SERVER = DEV_BIN / "moto_server"
# the headline layout: a regular install of the checkout (bench/regular_venv.py)
PY = regular_venv.PYTHON
CREDHELPER = regular_venv.CREDHELPER
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
WARM_RATIO_LIMIT = 1.5
#: issue 12: the warm direct path (encrypted-file store, regular install) at most this times `python -c pass`
DIRECT_RATIO_LIMIT = 5.0
AWS_V2 = "/usr/bin/aws"  # Debian's awscli package (v2); a v1 `aws` may come first on PATH
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
    samples: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    sts_calls: int = 0
    akids: set[str] = field(default_factory=set)
    note: str = ""
    #: run before each run, untimed (a cold row empties the store here)
    before: Callable[[], None] | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p90(self) -> float:
        return p90(self.samples)


def run_once(row: Row, moto: Moto, record: bool) -> None:
    if row.before is not None:
        row.before()
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
    write end releases all of them at once, and each execs the installed launcher.
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


#: packages the direct path would ideally not need when the store is warm
HEAVY = ("click", "botocore", "boto3", "keyring", "cryptography", "structlog", "apscheduler")


def direct_imports(env: dict[str, str], cwd: Path,
                   runs: int = 3) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """The direct path (no daemon, regular install): its top-level imports by cumulative ms,
    and which of HEAVY it imports (sum of the self ms of the package's modules); medians of `runs`."""
    samples: dict[str, list[float]] = {}
    heavy: dict[str, list[float]] = {}
    for _ in range(runs):
        got = importtime(PY, [str(CREDHELPER), "export", "--profile", PROFILE], env, cwd)
        for mod, (_, cum, depth) in got.items():
            if depth == 0:
                samples.setdefault(mod, []).append(cum / 1000)
        for pkg in HEAVY:
            own = [v[0] for m, v in got.items() if m == pkg or m.startswith(pkg + ".")]
            if own:
                heavy.setdefault(pkg, []).append(sum(own) / 1000)

    def ranked(d: dict[str, list[float]]) -> list[tuple[str, float]]:
        return sorted(((m, statistics.median(v)) for m, v in d.items()), key=lambda mv: -mv[1])

    return ranked(samples), ranked(heavy)


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
    extra_modules: list[tuple[str, int]]  # (module, self µs), beyond `python -c pass`: regular install
    extra_import_ms: float
    dev_extra_modules: list[tuple[str, int]]  # the same in the developer layout (.venv)
    dev_extra_import_ms: float
    site_ms: float  # `site` (cumulative) in `python -c pass`, regular install
    dev_site_ms: float  # the same in .venv
    editable_hook_ms: float | None  # the editable install's finder hook, within .venv's `site`
    dev_only_modules: list[tuple[str, int]]  # (module, self µs): in .venv's `python -c pass` only
    roundtrip: list[float]  # seconds, in-process ask_daemon
    roundtrip_buffered: list[float]  # the same with ask_daemon_buffered
    daemon_handle_ms: list[float]
    syscalls_export: dict[str, int] | None  # regular install
    syscalls_pass: dict[str, int] | None


def extra_imports(python: Path, script: Path, env: dict[str, str], cwd: Path,
                  runs: int = 5) -> tuple[float, list[tuple[str, int]]]:
    """(ms, [(module, self µs)]): what the export imports beyond `python -c pass` on the
    same interpreter, sum of self times, median of `runs`."""
    sums: list[float] = []
    extra: dict[str, int] = {}
    for _ in range(runs):
        base = importtime(python, ["-c", "pass"], env, cwd)
        exp = importtime(python, [str(script), "export", "--profile", PROFILE], env, cwd)
        extra = {m: v[0] for m, v in exp.items() if m not in base}
        sums.append(sum(extra.values()) / 1000)
    return statistics.median(sums), sorted(extra.items(), key=lambda kv: -kv[1])


def ask_daemon_buffered(path: str, request: bytes) -> tuple[str, int, str] | None:
    """`fastpath.ask_daemon` with the header read in chunks instead of one byte per recv
    (a bench-local variant, to measure what that change would save)."""
    import _socket

    from credhelper import fastpath, protocol

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(fastpath.CONNECT_TIMEOUT)
        sock.connect(path)
        sock.settimeout(fastpath.HUNG_TIMEOUT)
        sock.sendall(request)
        buf = b""
        kind = "wait"
        while kind == "wait":  # the daemon's greeting (`wait N`), then the answer's header
            while b"\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk or len(buf) > protocol.MAX_HEADER:
                    return None
                buf += chunk
            line, _, buf = buf.partition(b"\n")
            kind, code, length = protocol.parse_header(line + b"\n")
        body = buf
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


def profile_warm(sb: Sandbox, daemon_handle_ms: list[float]) -> Profile:
    export = [str(CREDHELPER), "export", "--profile", PROFILE]
    extra_ms, modules = extra_imports(PY, CREDHELPER, sb.env, sb.home)
    dev_ms, dev_modules = extra_imports(DEV_PY, DEV_CREDHELPER, sb.env, sb.home)
    editable, site, dev_site = [], [], []
    dev_only: dict[str, int] = {}
    for _ in range(5):
        reg = importtime(PY, ["-c", "pass"], sb.env, sb.home)
        site.append(reg.get("site", (0, 0, 0))[1] / 1000)
        base = importtime(DEV_PY, ["-c", "pass"], sb.env, sb.home)
        hook = next((v[1] for m, v in base.items() if m.startswith("__editable__")), None)
        if hook is not None:
            editable.append(hook / 1000)
        dev_site.append(base.get("site", (0, 0, 0))[1] / 1000)
        dev_only = {m: v[0] for m, v in base.items() if m not in reg}
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
        dev_extra_modules=dev_modules,
        dev_extra_import_ms=dev_ms,
        site_ms=statistics.median(site),
        dev_site_ms=statistics.median(dev_site),
        editable_hook_ms=statistics.median(editable) if editable else None,
        dev_only_modules=sorted(dev_only.items(), key=lambda kv: -kv[1]),
        roundtrip=rtts,
        roundtrip_buffered=rtts_buffered,
        daemon_handle_ms=daemon_handle_ms,
        syscalls_export=sys_export,
        syscalls_pass=sys_pass,
    )


def pth_files(python: Path) -> list[str]:
    """The .pth files in that interpreter's site-packages (run at every start)."""
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = Path(subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                                  check=True).stdout.strip())
    return sorted(p.name for p in purelib.glob("*.pth"))


def check_regular_install(env: dict[str, str], cwd: Path) -> str:
    """The regular install matches the checkout and imports credhelper from its own
    site-packages without an editable hook, with the benchmark's environment; its source hash."""
    why = regular_venv.check()
    if why:
        raise BenchError(f"{why}: run bench/run, which (re)installs it")
    code = ("import sys, sysconfig, credhelper; print(credhelper.__file__); "
            "print(sysconfig.get_paths()['purelib']); print(any('__editable__' in m for m in sys.modules))")
    out = subprocess.run([str(PY), "-c", code], env=env, cwd=cwd, capture_output=True, text=True,
                         check=True).stdout.split("\n")
    if not out[0].startswith(out[1] + "/credhelper/") or out[2] != "False":
        raise BenchError(f"{PY} does not import credhelper from its own site-packages: {out}")
    return regular_venv.read_stamp()["source"]


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


def versions(aec: Path, source: str) -> dict[str, str]:
    code = "import importlib.metadata as m, sys; print(*(m.version(d) for d in sys.argv[1:]))"

    def of(python: Path, *dists: str) -> list[str]:
        return subprocess.run([str(python), "-c", code, *dists], capture_output=True, text=True,
                              check=True).stdout.split()

    reg = of(PY, "credhelper", "boto3", "botocore")
    dev = of(DEV_PY, "boto3", "botocore", "moto")
    peer = of(aec.parent / "python", "aws-export-credentials", "boto3", "botocore")
    return {
        "python": platform.python_version(),
        "credhelper": f"{reg[0]} (regular install of the checkout, source hash {source[:12]})",
        "boto3": reg[1],
        "botocore": reg[2],
        "`.venv`": f"boto3 {dev[0]}, botocore {dev[1]}",
        "moto": dev[2],
        "aws-export-credentials": f"{peer[0]} (own venv: boto3 {peer[1]}, botocore {peer[2]})",
    }


def aws_cli_v2() -> tuple[str | None, str]:
    """(path of an AWS CLI v2, note)."""
    path = AWS_V2
    if not os.access(path, os.X_OK):
        return None, f"no {AWS_V2} (Debian's `awscli` package, v2, is not installed): row skipped"
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"`aws --version` failed: {exc}"
    text = (out.stdout + out.stderr).strip()
    if text.startswith("aws-cli/2."):
        return path, text
    name = text.split()[0] if text else "?"
    return None, f"`{path}` is `{name}`: v1 has no `aws configure export-credentials`; skipped"


def run_scale(workdir: Path) -> tuple[dict[str, Any] | None, str]:
    """The 500-profile figures: tests/test_scale.py's simulation (the keeper, the broker and
    botocore in process on a fake clock; moto under libfaketime), written as JSON."""
    report = workdir / "scale.json"
    env = {**os.environ, "CREDHELPER_SCALE_REPORT": str(report)}
    argv = [str(DEV_PY), "-m", "pytest", "-q", "-p", "no:cacheprovider",
            str(ROOT / "tests" / "test_scale.py"), "-k", "500"]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(argv, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=1800, check=False)
    except subprocess.TimeoutExpired:
        return None, "tests/test_scale.py did not finish within 30 minutes"
    took = time.monotonic() - t0
    if proc.returncode != 0 or not report.exists():
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        return None, f"tests/test_scale.py exited {proc.returncode}: {' / '.join(tail)}"
    return json.loads(report.read_text()), f"tests/test_scale.py passed in {took:.0f} s (real time)"


def prime_aws_cli_cache(sb: Sandbox, version: str) -> str:
    """Fill the AWS CLI's assume-role cache (~/.aws/cli/cache, botocore's JSONFileCache) with
    credentials moto minted, so that its row is a cache hit like aws-export-credentials'.
    Needed because the CLI before 2.13 ignores AWS_ENDPOINT_URL_STS (it would call real STS)."""
    import hashlib

    import boto3

    role_arn = "arn:aws:iam::123456789012:role/demo"
    sts = boto3.Session(aws_access_key_id="AKIADEMOEXAMPLE00001",
                        aws_secret_access_key="demo/secret/key/moto/accepts/anything00",
                        region_name="us-east-1").client("sts", endpoint_url=sb.env["AWS_ENDPOINT_URL_STS"])
    response = {k: v for k, v in sts.assume_role(RoleArn=role_arn, RoleSessionName="bench-aws-cli").items()
                if k != "ResponseMetadata"}
    # botocore's AssumeRoleCredentialFetcher._create_cache_key (default session name: not hashed)
    key = hashlib.sha1(json.dumps({"RoleArn": role_arn}, sort_keys=True).encode()).hexdigest()
    cache = sb.home / ".aws" / "cli" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    (cache / f"{key}.json").write_text(json.dumps(response, default=lambda d: d.isoformat()))
    return (f"{version}; its assume-role cache (~/.aws/cli/cache) was filled with credentials moto minted "
            "before the runs (this CLI ignores AWS_ENDPOINT_URL_STS), so every run is a cache hit.")


# ------------------------------------------------------------------ the report


def mark(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def write_results(out: Path, ctx: dict[str, Any]) -> None:
    a: argparse.Namespace = ctx["args"]
    rows: list[Row] = ctx["rows"]
    dev_rows: list[Row] = ctx["dev_rows"]
    by = {r.key: r for r in rows + dev_rows}
    base, warm, direct = by["pass"], by["warm"], by["direct"]
    base_dev, warm_dev = by["pass-dev"], by["warm-dev"]
    b: Burst = ctx["burst"]
    idle0: ProcSample = ctx["idle0"]
    idle1: ProcSample = ctx["idle1"]
    prof: Profile = ctx["profile"]
    pth: dict[str, list[str]] = ctx["pth"]
    L: list[str] = []
    add = L.append

    def pths(key: str) -> str:
        return ", ".join(f"`{n}`" for n in pth[key]) or "none"

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
    add("- STS: a local `moto_server` (from `.venv`) on a free 127.0.0.1 port with moto's request recorder "
        "on; every tool gets `AWS_ENDPOINT_URL_STS`. A temp HOME with `[profile demo]` (role_arn + "
        "source_profile demo-base, fake static keys in a credentials file, region us-east-1). Nothing reads "
        "the real ~/.aws.")
    add("")
    add("## How\n")
    add("- Each row is a whole process spawned fresh for each run: `time.perf_counter()` around "
        "`subprocess.run` (stdout and stderr captured, stdin /dev/null), the same method for every row. "
        f"{a.warmups} warm-ups then {a.runs} timed runs per row; the rows of a phase are interleaved "
        "round-robin (one run of each row per round) so that machine drift hits them alike. "
        "Median and p90 (`statistics.quantiles(n=10, method='inclusive')`). CPU = user+sys of the child "
        "(getrusage RUSAGE_CHILDREN), median.")
    phase_b = ", ".join(k for k, r in ctx["numbered"] if r in ctx["phase_b"])
    add("- Phase A, daemon up and warm (the regular install's `credhelper daemon`, started by the bench "
        f"with the same env, one export first): rows 1, 2, 1d, 2d, {ctx['num_of']['cold-up']}. Phase B, "
        "daemon stopped (its store "
        f"left warm): `python -c pass` again as a drift check, rows {phase_b}.")
    add("- STS calls = AssumeRole requests moto recorded during that row's timed runs.")
    add("- **Rows 1, 2, 3 and 5: a regular, non-editable install of this checkout**, as `pipx install` "
        "gives users: `bench/run` makes `bench/.work/venv` from `.venv`'s base interpreter, installs "
        "pyproject's runtime dependencies at the versions `.venv` has, then `pip install --no-deps` of the "
        "checkout (a staged copy of its packaged files, so that no build output lands in the tree); it "
        "reuses the venv while the hash of pyproject.toml, README.md, bin/credhelper and credhelper/**/*.py "
        "is unchanged and reinstalls when it changes. Row 2 times the installed launcher "
        "`bench/.work/venv/bin/credhelper` (the 4-line `bin/credhelper`, installed through setuptools' "
        "`script-files`), rows 1 and 5 `bench/.work/venv/bin/python`. `.pth` files in that venv's "
        f"site-packages: {pths('regular')}.")
    add("- Row 4 runs in its own venv (`bench/.work/aec-venv`, made from the same base interpreter, "
        "`boto3<1.37`: 0.18.0 fails on newer boto3; `.pth` files: "
        f"{pths('aec')}); its `--cache-file` was filled by one run before the warm-ups, so the timed runs "
        "are cache hits.")
    add("- **Rows 1d, 2d, 3d, 5d: the developer checkout layout**, not what users run: the same commands "
        "from the main `.venv`, where credhelper is installed *editable* (`pip install -e`). The editable "
        "install's `.pth` finder hook runs at every start of that interpreter (see the last section; `.pth` "
        f"files: {pths('dev')}). They also run the live tree: edits made to the checkout during a run "
        "reach them, while the headline rows run the copy installed before it (source hash above).")
    add(f"- AWS CLI v2: {ctx['aws_v2_note']}.")
    if ctx["keyring_note"]:
        add(f"- {ctx['keyring_note']}.")
    add("")
    add("## Wall time per invocation\n")
    add(f"| # | command | median ms | p90 ms | {X} `python -c pass` (row 1) | {X} credhelper warm (row 2) "
        "| CPU ms | STS calls |")
    add("|---|---|---:|---:|---:|---:|---:|---:|")
    for num, r in ctx["numbered"]:
        add(f"| {num} | {r.label} | {ms(r.median)} | {ms(r.p90)} | {r.median / base.median:.2f} | "
            f"{r.median / warm.median:.2f} | {ms(statistics.median(r.cpu))} | {r.sts_calls} |")
    add("")
    drift = ctx["pass_b"]
    add(f"Drift check: `python -c pass` (regular install) in phase B: median {ms(drift.median)} ms, p90 "
        f"{ms(drift.p90)} ms (phase A: {ms(base.median)} ms).\n")
    for num, r in ctx["numbered"]:
        if r.note:
            add(f"- Row {num}: {r.note}")
    add("")

    add("## Concurrency: one upstream call for many callers\n")
    add("The daemon (regular install) was restarted with a cold store (store file, its lock and the "
        f"remembered profiles deleted), then {b.clients} `credhelper export --profile demo` processes were "
        "released at once (each a `/bin/sh` blocked reading a shared pipe, then `exec` of the installed "
        "launcher `bench/.work/venv/bin/credhelper`). "
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

    add("## 500 profiles in one daemon\n")
    sc = ctx["scale"]
    if sc is None:
        add(f"Not measured: {ctx['scale_note']}.\n")
    else:
        add(f"From `tests/test_scale.py` ({ctx['scale_note']}): the daemon's keeper, broker and botocore "
            f"clients in one process, {sc['profiles']} `warm_profiles` (AssumeRole from one source profile, "
            f"{sc['lifetime_s']} s credentials, refresh window {sc['refresh_window_s']} s, "
            f"`max_refresh_rate = {sc['max_refresh_rate']}`), a real moto STS. Time is a fake clock that the "
            "test advances (moto reads the same time through libfaketime), through warm-up and one full "
            "refresh cycle of every profile; per-second counts are of fake time. RSS is of the whole test "
            "process (pytest, moto's client side, botocore included), so the per-profile figure is an upper "
            "bound of the daemon's.\n")
        add("| measure | value |")
        add("|---|---|")
        rows_sc = [
            ("upstream calls (warm-up + one refresh of each profile) / moto's AssumeRole count",
             f"{sc['upstream_calls']} / {sc['moto_assume_role_calls']}"),
            ("**most upstream calls in one second**", f"**{sc['max_calls_in_one_second']}** "
             f"(limit {sc['max_refresh_rate']})"),
            ("calls in the first second of start-up (no burst)", str(sc["calls_in_first_second"])),
            ("warm-up of all profiles / warm-up plus a full refresh cycle (fake s)",
             f"{sc['warm_up_fake_seconds']} / {sc['cycle_fake_seconds']}"),
            ("exports checked servable from memory during the cycle (all profiles at every step)",
             f"{sc['served_checks']} (all served)"),
            ("serving one profile from memory while others refresh: p50 / p99",
             f"{sc['serve_p50_us']} µs / {sc['serve_p99_us']} µs"),
            ("RSS before / after warm-up / after the cycle",
             f"{sc['rss_kib_before'] / 1024:.1f} / {sc['rss_kib_warm'] / 1024:.1f} / "
             f"{sc['rss_kib_after_cycle'] / 1024:.1f} MiB"),
            ("**RSS per profile** (after the cycle - before, / profiles)",
             f"**{sc['rss_kib_per_profile']} KiB**"),
            ("`refresh_rate` warnings (500 / (900 - 420) s = 1.04 calls/s needed, limit 5)",
             str(sc["rate_warnings"])),
        ]
        for k, val in rows_sc:
            add(f"| {k} | {val} |")
        add("")

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
    add("Evaluated on the regular install (rows 1, 2, 5) and the peers as they install (row 4).\n")
    add("| target | measured | |")
    add("|---|---|---|")
    ratio = warm.median / base.median
    add(f"| warm export median ≤ {WARM_RATIO_LIMIT}{X} `python -c pass` (same venv) | row 2: "
        f"{ms(warm.median)} ms = **{ratio:.2f}{X}** row 1 ({ms(base.median)} ms) | "
        f"{mark(ratio <= WARM_RATIO_LIMIT)} |")
    drift_b = ctx["pass_b"]
    d_ratio = direct.median / drift_b.median
    aec_row = by["peer-aec"]
    d_ok = d_ratio <= DIRECT_RATIO_LIMIT and direct.median < aec_row.median
    add(f"| warm direct path (no daemon, encrypted-file store) ≤ {DIRECT_RATIO_LIMIT:g}{X} `python -c pass` "
        f"and faster than aws-export-credentials' cache hit (issue 12) | row 3: {ms(direct.median)} ms = "
        f"**{d_ratio:.2f}{X}** the phase-B `python -c pass` run interleaved with it "
        f"({ms(drift_b.median)} ms; "
        f"{direct.median / base.median:.2f}{X} row 1); row 4: {ms(aec_row.median)} ms "
        f"({aec_row.median / direct.median:.2f}{X} row 3) | {mark(d_ok)} |")
    sc_t = ctx["scale"]
    if sc_t is not None:
        sc_ok = (sc_t["max_calls_in_one_second"] <= sc_t["max_refresh_rate"]
                 and sc_t["calls_in_first_second"] <= sc_t["max_refresh_rate"])
        add(f"| 500 profiles: at most `max_refresh_rate` upstream calls per second, no burst at start, "
            f"exports served throughout, RSS bounded | max {sc_t['max_calls_in_one_second']}/s (limit "
            f"{sc_t['max_refresh_rate']}), first second {sc_t['calls_in_first_second']}, "
            f"{sc_t['served_checks']} checks served, {sc_t['rss_kib_per_profile']} KiB/profile | "
            f"{mark(sc_ok)} |")
    peers = [r for r in rows if r.key.startswith("peer")]
    factors = [(r, r.median / warm.median) for r in peers]
    least = min(f for _, f in factors)
    detail = "; ".join(f"{r.short} (row {ctx['num_of'][r.key]}) {ms(r.median)} ms = {f:.1f}{X}"
                       for r, f in factors)
    add(f"| ≥ {PEER_FACTOR:.0f}{X} faster than each other tool, against row 2 ({ms(warm.median)} ms) | "
        f"{detail} | {mark(least >= PEER_FACTOR)} (least {least:.1f}{X}) |")
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
    ratio_dev = warm_dev.median / base_dev.median
    dev_peers = "; ".join(f"{r.short} {r.median / warm_dev.median:.1f}{X}" for r in peers)
    add(f"For information, the developer checkout layout (not the subject of the targets): row 2d = "
        f"{ratio_dev:.2f}{X} row 1d; against row 2d ({ms(warm_dev.median)} ms): {dev_peers}. "
        f"Row 1d - row 1 = {ms(base_dev.median - base.median)} ms is the editable-install hook on every "
        "interpreter start.\n")

    add("## Where the warm export's time goes\n")
    gap = warm.median - base.median
    rtt = statistics.median(prof.roundtrip)
    rtt_buf = statistics.median(prof.roundtrip_buffered)
    add(f"Gap to `python -c pass`: row 2 - row 1 = **{ms(gap)} ms** (regular install); row 2d - row 1d = "
        f"{ms(warm_dev.median - base_dev.median)} ms (developer layout).\n")

    def mods(items: list[tuple[str, int]]) -> str:
        return ", ".join(f"`{mod}` {us / 1000:.2f}" for mod, us in items[:12]) or "none"

    add("- Imports beyond `python -c pass` on the same interpreter (`-X importtime`, sum of self times, "
        f"median of 5): regular install {prof.extra_import_ms:.2f} ms ({mods(prof.extra_modules)}); "
        f"`.venv`: {prof.dev_extra_import_ms:.2f} ms ({mods(prof.dev_extra_modules)}).")
    add("- Daemon round trip, in-process (`fastpath.ask_daemon`: connect, send, read header and body; "
        f"{ROUNDTRIPS}{X}): median {rtt * 1e6:.0f} µs, p90 {p90(prof.roundtrip) * 1e6:.0f} µs. The same with "
        f"the header read in chunks (bench-local variant, interleaved): median {rtt_buf * 1e6:.0f} µs, "
        f"p90 {p90(prof.roundtrip_buffered) * 1e6:.0f} µs.")
    if prof.daemon_handle_ms:
        add(f"- Inside the daemon (its log's `duration_ms` of the phase A exports): median "
            f"{statistics.median(prof.daemon_handle_ms):.2f} ms.")
    se, sp = prof.syscalls_export, prof.syscalls_pass
    if se and sp:
        io = (f"connect {se.get('connect', 0)}, sendto {se.get('sendto', 0)}, recvfrom "
              f"{se.get('recvfrom', 0)}, poll {se.get('poll', 0)}")
        bytewise = (" The header is read one byte per recv, each preceded by a poll (the socket has a "
                    "timeout)." if se.get("recvfrom", 0) > 3 else "")
        add(f"- Syscalls (`strace -f -c`, regular install): export {se.get('total', 0)}, `python -c pass` "
            f"{sp.get('total', 0)}. The export's socket I/O: {io}.{bytewise}")
    hook = (f", of which the editable install's `__editable___credhelper_*_finder` hook "
            f"{prof.editable_hook_ms:.1f} ms" if prof.editable_hook_ms is not None else "")
    add(f"- Interpreter start-up, `site` in `python -c pass` (`-X importtime`, cumulative, median of 5): "
        f"regular install {prof.site_ms:.1f} ms; `.venv` {prof.dev_site_ms:.1f} ms{hook}. Modules `.venv`'s "
        f"`python -c pass` imports and the regular install's does not (self ms): "
        f"{mods(prof.dev_only_modules)}. Row 1d - row 1 = {ms(base_dev.median - base.median)} ms.")
    add("")
    add("Findings:\n")
    n = 1
    others_ms = gap * 1000 - prof.extra_import_ms - rtt * 1000
    add(f"{n}. **The installed launcher** (row 2): {ms(warm.median)} ms, {ratio:.2f}{X} `python -c pass` in "
        f"the same venv. Its {ms(gap)} ms above `python -c pass` are about {prof.extra_import_ms:.2f} ms of "
        f"imports (top: {mods(prof.extra_modules[:4])}) and a {rtt * 1e3:.2f} ms daemon round trip, "
        f"leaving {others_ms:.1f} ms for the rest (executing the launcher and `fastpath`, writing "
        "stdout, the process' larger teardown; noise at this scale is about a millisecond)."
        + (" `re` is among the extra imports: something on the hot path imports it."
           if any(mod == "re" for mod, _ in prof.extra_modules) else ""))
    n += 1
    add(f"{n}. The client's round trip: reading the header in chunks instead of byte by byte would save "
        f"{max(0.0, rtt - rtt_buf) * 1e6:.0f} µs per export ({recv_note(prof)}).")
    n += 1
    top, heavy = ctx["direct_imports"]
    if top:
        aec = by.get("peer-aec")
        versus = ""
        if aec is not None:
            word = "slower" if direct.median > aec.median else "faster"
            versus = f", {direct.median / aec.median:.2f}{X} row 4: {word} than the {aec.short} cache hit"
        tops = ", ".join(f"`{mod}` {cum:.1f}" for mod, cum in top[:6])
        heavies = ", ".join(f"`{mod}` {cum:.1f}" for mod, cum in heavy)
        add(f"{n}. The direct path (row 3, {ms(direct.median)} ms{versus}): its top-level imports "
            f"(cumulative ms, `-X importtime`, regular install): {tops}."
            + (f" With a warm store it still imports {heavies} (ms, the sum of the self times of each "
               "package's modules)." if heavy else ""))
        n += 1
    add(f"{n}. **The developer checkout layout is not what users run**: the editable hook costs "
        f"{ms(base_dev.median - base.median)} ms on every start of `.venv`'s interpreter (row 1d - row 1), "
        f"so there the warm export measures {ratio_dev:.2f}{X} `python -c pass` (row 2d / row 1d) and takes "
        f"{warm_dev.median / warm.median:.2f}{X} as long as from the regular install (row 2d / row 2): the "
        "hook's own imports (above) also hide the export's. Benchmarks of start-up cost belong "
        "on a regular install, as in the headline rows.")
    if ratio > WARM_RATIO_LIMIT:
        add("")
        add(f"**The warm target was missed** ({ratio:.2f}{X} > {WARM_RATIO_LIMIT}{X}): the numbers above "
            "split the gap into imports, the daemon round trip and the rest.")
    if least < PEER_FACTOR:
        add("")
        add(f"**The peer target was missed** (least {least:.1f}{X} < {PEER_FACTOR:.0f}{X}).")
    add("")
    out.write_text("\n".join(L) + "\n" + kept_sections(out))


def kept_sections(out: Path) -> str:
    """Sections other tools keep in the same file between `<!-- NAME: begin -->` and
    `<!-- NAME: end -->` (bench/reliability.py): carried over, not ours to drop."""
    try:
        old = out.read_text()
    except OSError:
        return ""
    spans = re.finditer(r"(?ms)^<!-- ([\w.-]+): begin -->$.*?^<!-- \1: end -->$", old)
    return "".join(f"\n{m.group(0)}\n" for m in spans)


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
    for path in (CREDHELPER, DEV_CREDHELPER, MOTO_SERVER, a.aec):
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
        source = check_regular_install(env, home)
        log(f"regular install: {CREDHELPER} (source {source[:12]})")
        export_args = ["export", "--profile", PROFILE]
        export = [str(CREDHELPER), *export_args]
        dev_export = [str(DEV_CREDHELPER), *export_args]
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
        dev = "developer checkout: editable `.venv`"
        pass_dev = Row("pass-dev", f"`python -c pass`, {dev}", [str(DEV_PY), "-c", "pass"], env, home,
                       credentials=False)
        warm_dev = Row("warm-dev", f"`credhelper export --profile demo`, daemon up (warm), {dev}",
                       dev_export, env, home)
        direct_dev = Row("direct-dev", f"`credhelper export --profile demo`, daemon stopped (direct path), "
                         f"{dev}", dev_export, env, home)
        boto_dev = Row("boto3-dev", f"boto3 one-liner, {dev}", [str(DEV_PY), "-c", BOTO3_ONELINER], env, home)
        v2_path, v2_note = aws_cli_v2()
        v2 = None
        if v2_path:
            v2 = Row("peer-awsv2",
                     "`/usr/bin/aws configure export-credentials --profile demo` (its cache warm)",
                     [v2_path, "configure", "export-credentials", "--profile", PROFILE], env, home,
                     short="aws CLI v2")
            v2.note = prime_aws_cli_cache(sb, v2_note)
        # issue 12: cold rows (the daemon up / down, nothing cached) and the keyring store's direct path
        cold_store = sb.dir / "cold.enc"
        cold_settings = sb.dir / "cold.toml"
        cold_settings.write_text(f'store = "encrypted-file"\nencrypted_file = "{cold_store}"\n'
                                 f'key_file = "{sb.key}"\n')

        def wipe_cold() -> None:
            cold_store.unlink(missing_ok=True)

        def forget_in_daemon() -> None:
            sb.store.unlink(missing_ok=True)  # the daemon's store: nothing to load
            if daemon.ask("forget", {"profile": PROFILE}) is None:
                raise BenchError("the daemon did not answer forget")

        cold_up = Row("cold-up", "`credhelper export --profile demo`, daemon up, nothing cached (cold: "
                      "the daemon mints)", export, env, home, before=forget_in_daemon,
                      short="cold, daemon up")
        cold_down = Row("cold-down", "`credhelper export --profile demo`, daemon stopped, empty store (cold: "
                        "the full direct path mints)", export,
                        {**env, "CREDHELPER_CONFIG": str(cold_settings)}, home, before=wipe_cold,
                        short="cold, no daemon")
        direct_kr = None
        if os.environ.get("BENCH_PRIVATE_KEYRING") and os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
            kr_settings = sb.dir / "keyring.toml"
            kr_settings.write_text(f'store = "keyring"\nkeyring_service = "credhelper-bench-{os.getpid()}"\n')
            direct_kr = Row("direct-keyring", "`credhelper export --profile demo`, daemon stopped, keyring "
                            "store warm (direct path)", export,
                            {**env, "CREDHELPER_CONFIG": str(kr_settings),
                             "DBUS_SESSION_BUS_ADDRESS": os.environ["DBUS_SESSION_BUS_ADDRESS"]}, home)
        rows = ([pass_a, warm, direct, aec, boto] + ([v2] if v2 else []) + ([direct_kr] if direct_kr else [])
                + [cold_up, cold_down])
        dev_rows = [pass_dev, warm_dev, direct_dev, boto_dev]
        numbered = [(str(i), r) for i, r in enumerate(rows, 1)]
        numbered += [("1d", pass_dev), ("2d", warm_dev), ("3d", direct_dev), ("5d", boto_dev)]
        num_of = {r.key: k for k, r in numbered}

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
        log(f"phase A: {a.warmups} warm-ups + {a.runs} runs of rows 1, 2, 1d, 2d, {num_of['cold-up']}")
        measure([pass_a, warm, pass_dev, warm_dev, cold_up], moto, a.runs, a.warmups)
        exports_a = daemon.events(log_a)
        memory_a = [e for e in exports_a if e.get("served_by") == "memory"]
        n_a = 3 * (a.warmups + a.runs)
        warm.note = (f"the daemon's log shows {len(exports_a)} exports for the {n_a} runs of rows 2, 2d and "
                     f"{num_of['cold-up']} ({len(memory_a)} served from memory).")
        cold_up.note = ("before each run (untimed) the daemon was told to forget the profile and its store "
                        "file was deleted: each run waits for one AssumeRole through the daemon.")
        cold_down.note = ("its own store file, deleted before each run (untimed): each run is the full "
                          "direct path (botocore, the profile lock, AssumeRole, the store write).")
        log("profiling the warm export")
        prof = profile_warm(sb, [float(e["duration_ms"]) for e in memory_a if "duration_ms" in e])
        rss_moments.append((f"after phase A ({n_a} exports, then the profiling: about 20 more and "
                            f"{2 * ROUNDTRIPS} in-process)", proc_sample(daemon.pid)))

        # -- phase B: no daemon
        daemon.stop()
        if sb.socket.exists():
            raise BenchError("the daemon's socket is still there after it stopped")
        if not sb.store.exists():
            raise BenchError("the daemon left no store file: the direct path would mint")
        direct_mods = direct_imports(env, home)
        run_once(aec, moto, record=False)  # fills aws-export-credentials' cache file
        if direct_kr is not None:
            run_once(direct_kr, moto, record=False)  # mints once into the (throwaway) keyring
            direct_kr.note = ("the keyring store (gnome-keyring on the private D-Bus session bench/run "
                              "starts): the lean path declines it, so this is the full direct path "
                              "(keyring's backend discovery, botocore) serving from the store.")
        phase_b = ([direct, aec, boto] + ([v2] if v2 else []) + ([direct_kr] if direct_kr else [])
                   + [cold_down, direct_dev, boto_dev])
        log(f"phase B: {a.warmups} warm-ups + {a.runs} runs of the drift check and rows "
            + ", ".join(num_of[r.key] for r in phase_b))
        measure([pass_b, *phase_b], moto, a.runs, a.warmups)
        boto.note = ("boto3 keeps assumed-role credentials in process memory only, so every run calls "
                     "AssumeRole (row 5d alike).")
        direct.note = ("no STS call: credentials come from the encrypted store the daemon wrote, through the "
                       "lean direct path (credhelper/lean: no botocore, click, structlog, apscheduler).")

        # -- 500 profiles in one daemon (tests/test_scale.py, its figures)
        log("500 profiles: tests/test_scale.py (fake clock, libfaketime'd moto)")
        scale, scale_note = run_scale(workdir)

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

        has_bus = bool(os.environ.get("DBUS_SESSION_BUS_ADDRESS"))
        store_reason = (
            "A D-Bus session bus is set, but the bench uses the file store so that results do not depend on "
            "a keyring daemon." if has_bus else
            "No Secret Service reachable (`DBUS_SESSION_BUS_ADDRESS` unset), so not the keyring store."
        )
        ctx = {
            "args": a, "command": command, "rows": rows, "dev_rows": dev_rows, "numbered": numbered,
            "num_of": num_of, "phase_b": phase_b, "pass_b": pass_b, "burst": b,
            "pth": {"regular": pth_files(PY), "aec": pth_files(a.aec.parent / "python"),
                    "dev": pth_files(DEV_PY)},
            "idle0": idle0, "idle1": idle1, "idle_sts": idle_sts, "rss_moments": rss_moments,
            "profile": prof, "direct_imports": direct_mods, "machine": machine(),
            "versions": versions(a.aec, source),
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "took": time.monotonic() - started, "load_before": load_before, "quiet": quiet,
            "load_after": loadavg(),
            "store_reason": store_reason, "aws_v2_note": v2_note if v2_path is None else f"found: {v2_note}",
            "scale": scale, "scale_note": scale_note,
            "keyring_note": "" if direct_kr else ("keyring-store row skipped: run through bench/run, which "
                                                  "starts a private D-Bus session with gnome-keyring"),
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
