"""Benchmark (not a test): the daemon's resource bounds (issue 8, "Also", last bullet).

    .venv/bin/python bench/reliability.py [--rate 1000] [--seconds 30] [--threads 16]
                                          [--idle-seconds 20] [--no-write]

Two measurements of the real `credhelper daemon` (the main .venv's console script),
in a throwaway HOME (its own AWS config, settings, encrypted-file store, socket);
the user's ~/.aws, keyring and daemon are never touched:

1. Load: `--rate` export requests a second for `--seconds`, from in-process
   socket clients in threads speaking the protocol through credhelper's own
   stdlib client (fastpath.ask_daemon: connect, request line, greeting, answer),
   paced on a shared schedule (not 1,000 processes a second). STS is a small
   stand-in in this process (AssumeRole, 1 h credentials, calls counted). The
   daemon's VmRSS is read from /proc/PID/status every second: start (after the
   first export), end, max; also its threads and open fds.
2. Upstream down for an hour of accelerated time: the daemon keeps one warm
   profile; after its first mint STS's port is closed, so every refresh fails.
   Its wall clock is libfaketime's, moved forward to each retry's announced
   time as soon as it is logged: an hour of its time, every failing refresh
   included, in a few minutes. (A steady `FAKETIME="+0 x60"` does not work
   here: Python sleeps in sem_clockwait, which libfaketime 0.9.10 does not
   intercept, so APScheduler would sleep in real time, or forever with a faked
   monotonic clock.) The refreshes it logged (no retry spin: the backoff
   doubles from 5 s to 300 s) and its RSS over that hour.
3. The CPU cost, in real time without libfaketime (whose clock-file reads
   cost CPU of their own): the idle rate of the load's daemon after the load,
   and the CPU (utime + stime from /proc/PID/stat) of another daemon's first
   failing refreshes once STS is down.
   CPU per hour = the hour's refreshes x CPU per refresh + the idle rate.

Results go to stdout and, unless --no-write, into bench/RESULTS.md between the
markers of the section "Reliability: daemon resource bounds" (other sections
are left alone). Runs in about five minutes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import http.server
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from credhelper import fastpath, protocol  # noqa: E402 - after the path setup

CREDHELPER = ROOT / ".venv" / "bin" / "credhelper"
RESULTS = ROOT / "bench" / "RESULTS.md"
BEGIN, END = "<!-- reliability.py: begin -->", "<!-- reliability.py: end -->"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROFILE = "demo"


# ------------------------------------------------------------------ the world


class Sts:
    """AssumeRole stand-in: 1 h credentials, every call counted."""

    def __init__(self) -> None:
        self.calls = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                outer.calls += 1
                life = int(form.get("DurationSeconds", ["3600"])[0])
                exp = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=life)
                body = (
                    '<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                    "<AssumeRoleResult><Credentials>"
                    f"<AccessKeyId>ASIABENCH{outer.calls:011d}</AccessKeyId>"
                    f"<SecretAccessKey>bench-{uuid.uuid4().hex}</SecretAccessKey>"
                    f"<SessionToken>bench-token-{uuid.uuid4().hex}{uuid.uuid4().hex}</SessionToken>"
                    f"<Expiration>{exp.strftime('%Y-%m-%dT%H:%M:%SZ')}</Expiration>"
                    "</Credentials><AssumedRoleUser><AssumedRoleId>AROABENCH:s</AssumedRoleId>"
                    "<Arn>arn:aws:sts::123456789012:assumed-role/bench/s</Arn></AssumedRoleUser>"
                    "</AssumeRoleResult><ResponseMetadata><RequestId>x</RequestId></ResponseMetadata>"
                    "</AssumeRoleResponse>"
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens there once the socket is closed


def make_home(base: Path, sts_url: str, warm: bool, duration: int | None = None) -> dict[str, str]:
    home = base / "home"
    (home / ".aws").mkdir(parents=True)
    (home / "run").mkdir(mode=0o700)
    (home / "xdg").mkdir(mode=0o700)
    (home / ".aws" / "config").write_text(
        f"[profile {PROFILE}]\nrole_arn = arn:aws:iam::123456789012:role/bench\n"
        "source_profile = base\nregion = us-east-1\n"
        + (f"duration_seconds = {duration}\n" if duration else "")
        + "\n[profile base]\nregion = us-east-1\n")
    (home / ".aws" / "credentials").write_text(
        "[base]\naws_access_key_id = AKIABENCHBASE0000001\n"
        "aws_secret_access_key = bench-base-secret-0123456789abcdefghijkl\n")
    key = home / "store.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    settings = (f'store = "encrypted-file"\nencrypted_file = "{home / "store.enc"}"\n'
                f'key_file = "{key}"\n')
    if warm:
        settings += f'warm_profiles = ["{PROFILE}"]\n'
    (home / "credhelper.toml").write_text(settings)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
        "AWS_CONFIG_FILE": str(home / ".aws" / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / ".aws" / "credentials"),
        "CREDHELPER_CONFIG": str(home / "credhelper.toml"),
        "CREDHELPER_SOCKET": str(home / "run" / "daemon.sock"),
        "XDG_RUNTIME_DIR": str(home / "xdg"), "AWS_ENDPOINT_URL_STS": sts_url,
        "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
    }


class Daemon:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log_path, self.sock = env, log, env["CREDHELPER_SOCKET"]
        with open(log, "wb") as f:
            self.proc = subprocess.Popen([str(CREDHELPER), "daemon"], env=env, cwd=env["HOME"],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=f)
        deadline = time.monotonic() + 60
        while self.ask("ping") is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the daemon did not come up:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)

    def request(self, op: str, fields: dict[str, str] | None = None) -> bytes:
        client_env = {k: self.env[k] for k in protocol.CLIENT_ENV if k in self.env}
        return protocol.encode_request(op, fields or {}, client_env)

    def ask(self, op: str, fields: dict[str, str] | None = None) -> tuple[str, int, str] | None:
        return fastpath.ask_daemon(self.sock, self.request(op, fields))

    def status(self) -> dict[str, str]:
        """VmRSS (kB), Threads from /proc/PID/status, plus open fds."""
        out = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM", "Threads"):
                out[name] = value.split()[0]
        out["fds"] = str(len(os.listdir(f"/proc/{self.proc.pid}/fd")))
        return out

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)

    def log(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"_raw": line})
        return out

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


# ------------------------------------------------------------------ 1. load


@dataclass
class Load:
    rate: float
    seconds: float
    samples: list[dict[str, str]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    took: float = 0.0
    sts_calls: int = 0


def run_load(base: Path, rate: float, seconds: float, threads: int, down: Down, idle: float) -> Load:
    sts = Sts()
    env = make_home(base / "load", sts.url, warm=False)
    d = Daemon(env, base / "load-daemon.log")
    result = Load(rate, seconds)
    try:
        req = d.request("export", {"profile": PROFILE, "format": "claude"})
        first = fastpath.ask_daemon(d.sock, req)
        assert first is not None and first[0] == "ok", first
        result.samples.append(d.status())
        total = int(rate * seconds)
        lock = threading.Lock()
        counter = iter(range(total))
        start = time.monotonic() + 0.5
        stop_sampling = threading.Event()

        def sampler() -> None:
            while not stop_sampling.wait(1.0):
                result.samples.append(d.status())

        def client() -> None:
            lat: list[float] = []
            errs: dict[str, int] = {}
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    break
                wait = start + i / rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                t = time.monotonic()
                answer = fastpath.ask_daemon(d.sock, req)
                lat.append(time.monotonic() - t)
                if answer is None:
                    kind = "none"
                else:
                    kind = answer[0] if answer[0] != "error" else f"error {answer[1]}"
                if kind != "ok":
                    errs[kind] = errs.get(kind, 0) + 1
            with lock:
                result.latencies.extend(lat)
                for k, v in errs.items():
                    result.errors[k] = result.errors.get(k, 0) + v

        sampling = threading.Thread(target=sampler, daemon=True)
        sampling.start()
        workers = [threading.Thread(target=client) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        result.took = time.monotonic() - start
        result.sent = total
        stop_sampling.set()
        sampling.join()
        result.samples.append(d.status())
        result.sts_calls = sts.calls
        # then idle: credentials for an hour, nothing due, nobody asking
        cpu0, t0 = d.cpu_seconds(), time.monotonic()
        time.sleep(idle)
        down.idle_rate = (d.cpu_seconds() - cpu0) / (time.monotonic() - t0)
    finally:
        d.stop()
        sts.close()
    return result


# ------------------------------------------------------------------ 2. upstream down


@dataclass
class Down:
    real: float = 0.0  # wall seconds the failing hour took here (under libfaketime)
    fake: float = 0.0  # seconds of the daemon's clock covered
    refreshes: list[dict[str, Any]] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    # measured in real time, without libfaketime (its clock file is read at every
    # time call, which costs CPU of its own)
    idle_rate: float = 0.0  # CPU seconds per second with nothing due
    failed: int = 0  # failing refreshes measured
    failed_cpu: float = 0.0  # CPU seconds they took, idle time between them included
    failed_real: float = 0.0  # wall seconds they took

    def per_refresh(self) -> float:
        return self.failed_cpu / self.failed if self.failed else float("nan")

    def per_hour(self) -> float:
        """CPU of one hour with STS down: the hour's failing refreshes at their
        measured cost, plus the idle rate for the rest of the hour."""
        return (len(self.refreshes) * self.per_refresh()
                + self.idle_rate * max(0.0, 3600 - self.failed_real))


def libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        raise SystemExit("libfaketime is not installed (apt-get install faketime)")
    return found[0]


def parse_z(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def run_down(base: Path, result: Down, hour: float = 3600) -> None:
    """The daemon mints 900 s credentials for its warm profile, then STS goes
    away (its port closed: connection refused): every scheduled refresh fails
    and is retried with backoff. The daemon's wall clock (libfaketime, from an
    offset file) is moved forward to each retry's announced time as soon as it
    is logged, until an hour of its time has passed: every refresh of that hour
    happens, in a few minutes. Its scheduler notices a jump at its next wakeup
    (at most 10 s: the session watcher's tick), since it sleeps in real time."""
    sts = Sts()
    env = make_home(base / "down", sts.url, warm=True, duration=900)
    clock = base / "faketime-offset"
    offset = 0.0

    def jump(to: float) -> None:
        nonlocal offset
        offset = to
        tmp = clock.with_suffix(".tmp")
        tmp.write_text(f"+{offset:.0f}\n")
        tmp.replace(clock)

    jump(0)
    env.update(LD_PRELOAD=libfaketime(), FAKETIME_TIMESTAMP_FILE=str(clock), FAKETIME_NO_CACHE="1",
               FAKETIME_DONT_FAKE_MONOTONIC="1")
    d = Daemon(env, base / "down-daemon.log")
    try:
        deadline = time.monotonic() + 60
        while not (minted := [x for x in d.log() if x.get("outcome") == "minted"]):
            if time.monotonic() > deadline:
                raise SystemExit(f"the daemon minted nothing within 60 s:\n{d.log()[-5:]}")
            time.sleep(0.1)
        sts.close()  # upstream down from here on
        seen = len(d.log())
        t0 = time.monotonic()
        down_at = time.time() + offset
        jump(parse_z(minted[0]["next_refresh"]) + 1 - time.time())
        deadline, sampled = time.monotonic() + 120, 0.0
        while time.time() + offset < down_at + hour:
            lines = [x for x in d.log()[seen:] if x.get("event") == "refresh"]
            if len(lines) > len(result.refreshes):
                result.refreshes = lines
                last = lines[-1]
                if "retry_in" not in last:
                    raise SystemExit(f"a refresh without a retry: {last}")
                due = parse_z(last["timestamp"]) + float(last["retry_in"]) + 1
                # Let the failed run end first: APScheduler counts it as running
                # until its thread returns, and skips (and so drops) a date job
                # that comes due while an instance of the same id still runs.
                time.sleep(1.0)
                jump(max(offset, due - time.time()))
                deadline = time.monotonic() + 60
            elif time.monotonic() > deadline:
                raise SystemExit(f"no refresh within 60 s of real time after the clock reached the"
                                 f" announced retry:\n{d.log()[-3:]}")
            time.sleep(0.05)
            if not result.rss or time.monotonic() - sampled >= 1:
                sampled = time.monotonic()
                result.rss.append(int(d.status()["VmRSS"]))
        result.real = time.monotonic() - t0
        result.fake = time.time() + offset - down_at
        result.delays = [float(x["retry_in"]) for x in result.refreshes]
    finally:
        d.stop()


def run_cost(base: Path, result: Down, failures: int = 4) -> None:
    """In real time, no libfaketime: the CPU of a daemon's first `failures`
    failing refreshes once STS is down (refresh_window 870 s on 900 s
    credentials: the first refresh is due within a minute; the retries follow
    after 5, 10, 20… s), the idle time between them included."""
    sts = Sts()
    env = make_home(base / "cost", sts.url, warm=True, duration=900)
    settings = Path(env["CREDHELPER_CONFIG"])
    settings.write_text(settings.read_text() + "refresh_window = 870\n")
    d = Daemon(env, base / "cost-daemon.log")
    try:
        deadline = time.monotonic() + 60
        while not [x for x in d.log() if x.get("outcome") == "minted"]:
            if time.monotonic() > deadline:
                raise SystemExit("the daemon minted nothing within 60 s")
            time.sleep(0.1)
        sts.close()
        seen = len(d.log())
        cpu0, t0 = d.cpu_seconds(), time.monotonic()
        deadline = time.monotonic() + 180
        while len([x for x in d.log()[seen:] if x.get("event") == "refresh"]) < failures:
            if time.monotonic() > deadline:
                raise SystemExit(f"fewer than {failures} refreshes within 180 s")
            time.sleep(0.05)
        result.failed_cpu = d.cpu_seconds() - cpu0
        result.failed_real = time.monotonic() - t0
        result.failed = failures
    finally:
        d.stop()


# ------------------------------------------------------------------ report


def flat(samples: list[int], slack_kb: int = 5 * 1024) -> str:
    """'met' when the max is within `slack_kb` of the first sample."""
    return "met" if max(samples) - samples[0] <= slack_kb else "**not met**"


def kb(v: float) -> str:
    return f"{v / 1024:.1f} MiB"


def report(load: Load, down: Down, args: argparse.Namespace, started: float) -> str:
    rss = [int(s["VmRSS"]) for s in load.samples]
    threads = [int(s["Threads"]) for s in load.samples]
    fds = [int(s["fds"]) for s in load.samples]
    lat = sorted(load.latencies)
    q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else [0.0] * 99
    ok = load.sent - sum(load.errors.values())
    outcomes: dict[str, int] = {}
    for r in down.refreshes:
        outcomes[str(r.get("outcome"))] = outcomes.get(str(r.get("outcome")), 0) + 1
    tick = 1000 / CLK_TCK / args.idle_seconds
    idle = (f"{down.idle_rate * 1000:.2f} ms per s" if down.idle_rate
            else f"0 (below the resolution: {tick:.1f} ms per s)")
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
    delays = " ".join(f"{x:g}" for x in down.delays)
    load_avg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        BEGIN,
        "## Reliability: daemon resource bounds",
        "",
        "Generated by `.venv/bin/python bench/reliability.py"
        f" --rate {args.rate:g} --seconds {args.seconds:g}"
        f" --idle-seconds {args.idle_seconds:g}` (issue 8; not part of the test suite).",
        "",
        f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
        f" (the run took {time.monotonic() - started:.0f} s);"
        f" {os.cpu_count()} CPUs shared with other engineers, load average {load_avg} at the end;"
        f" Linux {platform.release()}, python {platform.python_version()}.",
        "- The daemon: `.venv/bin/credhelper daemon` (editable install of the checkout),"
        " encrypted-file store, a throwaway HOME; STS a stand-in in the bench process.",
        "",
        "### RSS under load",
        "",
        f"{load.sent} export requests at a target {load.rate:g}/s over {load.seconds:g} s from"
        f" {args.threads} client threads in one process (credhelper's own socket client,"
        " `fastpath.ask_daemon`: connect, request, greeting, answer; one connection per request),"
        f" all for one warm profile. Achieved {load.sent / load.took:.0f} requests/s"
        f" ({load.took:.1f} s); {ok} answered `ok`"
        + (f", others: {load.errors}" if load.errors else "")
        + f"; latency p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms;"
        f" STS calls during the run: {load.sts_calls} (the first export's mint).",
        "",
        "| daemon (from /proc/PID/status, every second) | start | end | max |",
        "|---|---:|---:|---:|",
        f"| VmRSS (flat: {flat(rss)}) | {kb(rss[0])} | {kb(rss[-1])} | {kb(max(rss))} |",
        f"| threads | {threads[0]} | {threads[-1]} | {max(threads)} |",
        f"| open fds | {fds[0]} | {fds[-1]} | {max(fds)} |",
        "",
        f"RSS samples (MiB): {' '.join(f'{r / 1024:.1f}' for r in rss)}",
        "",
        "### Upstream down for an hour of accelerated time",
        "",
        "The daemon keeps one warm profile (AssumeRole, `duration_seconds = 900`). Once it had minted,"
        " STS went away (its port closed: connection refused), so every scheduled refresh fails and is"
        " retried with backoff. Its wall clock is libfaketime's (`FAKETIME_TIMESTAMP_FILE`, monotonic"
        " time real): the bench moves it forward to each retry's announced time as soon as the daemon"
        f" logs it, so the daemon lives through {down.fake / 3600:.2f} h of its clock, every failing"
        f" refresh of it included, in {down.real:.0f} s. CPU is measured apart, in real time and without"
        " libfaketime (which reads its clock file at every time call: 25 ms of CPU a second here):"
        f" the idle rate of the load's daemon over {args.idle_seconds:g} s after the load (credentials"
        f" for an hour, nothing due), and the first {down.failed} failing refreshes of another daemon"
        f" ({down.failed_real:.0f} s, the idle time between them included).",
        "",
        "| measure | value | bound |",
        "|---|---:|---|",
        f"| refreshes in the hour | {len(down.refreshes)} ({kinds}) | backoff from 5 s doubling"
        " to 300 s, jittered down to half: 12 to 24 an hour |",
        f"| announced retry delays (s) | {delays} | growing, capped at 300 |",
        f"| VmRSS start / end / max over the hour | {kb(down.rss[0])} / {kb(down.rss[-1])} /"
        f" {kb(max(down.rss))} | flat: {flat(down.rss)} |",
        f"| idle CPU (utime + stime, /proc/PID/stat) | {idle} | |",
        f"| CPU per failing refresh | {down.per_refresh() * 1000:.0f} ms | |",
        f"| CPU per hour with STS down = refreshes x CPU per refresh + idle | **{down.per_hour():.2f} s**"
        f" | < 1 s per hour: {'met' if down.per_hour() < 1 else '**not met**'} |",
        "",
        "Each refresh is one botocore call (5 connection attempts at most, standard retry mode),"
        " so the attempts on STS are at most 5 times the refreshes: no retry spin.",
        END,
    ]
    return "\n".join(lines) + "\n"


def write_results(section: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else ""
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + section.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if not CREDHELPER.exists():
        raise SystemExit(f"{CREDHELPER} is missing: run scripts/test (or pip install -e .) first")
    started = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="credhelper-rel-"))
    try:
        down = Down()
        load = run_load(base, args.rate, args.seconds, args.threads, down, args.idle_seconds)
        print(f"load: {load.sent} sent in {load.took:.1f} s, errors {load.errors}", file=sys.stderr)
        run_down(base, down)
        run_cost(base, down)
        print(f"down: {len(down.refreshes)} refreshes in {down.fake / 3600:.2f} h (fake),"
              f" {down.per_refresh() * 1000:.0f} ms CPU each, idle {down.idle_rate * 1000:.2f} ms/s",
              file=sys.stderr)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    section = report(load, down, args, started)
    print(section)
    if not args.no_write:
        write_results(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
