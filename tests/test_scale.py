"""The daemon at scale (issue 12): 500 warm profiles, short-lived credentials.

The daemon's keeper runs in this process with an injected clock: the real
broker, the real botocore clients and a real moto server (AssumeRole of 900 s
credentials, refresh window 420 s), but time is *fake time* = real time +
an offset the test advances. moto runs under libfaketime reading the same
offset from a file (FAKETIME_TIMESTAMP_FILE, no cache), so the expirations it
hands out agree with the keeper's clock. The APScheduler stand-in runs due
jobs in order; the pacer's sleep advances the offset (a discrete-event run:
no test waits for time to pass).

Through warm-up and one full refresh cycle of all 500 profiles it shows: no
second (of fake time) with more upstream calls than `max_refresh_rate`, no
burst at start, every profile servable from memory at every step (exports
served throughout), RSS per profile bounded and not growing with the cycle.
Set CREDHELPER_SCALE_REPORT to a path to get the figures as JSON (bench/).
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from conftest import MOTO_LAUNCHER, MotoServer, _launch_moto, _wait_http, free_port, unavailable

from credhelper.broker import Broker
from credhelper.config import AwsConfig
from credhelper.daemon.keeper import Keeper
from credhelper.daemon.pacing import TokenBucket, needed_rate
from credhelper.model import Credentials
from credhelper.settings import Settings
from credhelper.sources.base import ClientFactory
from credhelper.store.memory import MemoryStore

N = 500
RATE = 5
LIFETIME = 900
WINDOW = 420


# ------------------------------------------------------------------ unit: the pacer


class TestTokenBucket:
    def test_spaces_calls_and_never_exceeds_rate(self) -> None:
        t = [100.0]
        bucket = TokenBucket(5, clock=lambda: t[0], sleep=lambda s: t.__setitem__(0, t[0] + s))
        starts = []
        for _ in range(100):
            bucket.acquire()
            starts.append(t[0])
        per_second = Counter(int(s) for s in starts)
        assert max(per_second.values()) == 5
        assert starts[-1] - starts[0] == pytest.approx(99 / 5)

    def test_idle_does_not_bank_a_burst(self) -> None:
        t = [0.0]
        bucket = TokenBucket(5, clock=lambda: t[0], sleep=lambda s: None)
        t[0] = 3600.0  # an idle hour
        waits = [bucket.reserve() for _ in range(6)]
        assert waits[0] == 0 and waits[1:] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])

    def test_threads_share_the_limit(self) -> None:
        bucket = TokenBucket(50)
        starts: list[float] = []

        def work() -> None:
            for _ in range(10):
                bucket.acquire()
                starts.append(time.monotonic())

        threads = [threading.Thread(target=work) for _ in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        starts.sort()
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert len(starts) == 40 and sum(gaps) >= 39 / 50 * 0.95

    def test_needed_rate(self) -> None:
        assert needed_rate([480.0] * 500) == pytest.approx(500 / 480)
        assert needed_rate([]) == 0


# ------------------------------------------------------------------ the simulation


class FakeClock:
    """Fake time, standing still until `advance`; moto reads the same time
    (whole seconds) from `path` through libfaketime."""

    def __init__(self, path: Path) -> None:
        self.path, self.t = path, float(int(time.time()))
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(datetime.fromtimestamp(int(self.t), UTC).strftime("%Y-%m-%d %H:%M:%S\n"))
        os.replace(tmp, self.path)

    def advance(self, seconds: float) -> None:
        self.t += max(0.0, seconds)
        self._write()

    def time(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)


class FakeScheduler:
    """The APScheduler calls the keeper makes (add_job/remove_job), run on demand."""

    def __init__(self) -> None:
        self.jobs: dict[str, tuple[datetime, Callable[..., None], list[Any]]] = {}

    def add_job(self, func: Callable[..., None], trigger: str, *, run_date: datetime, args: list[Any],
                id: str, **_: Any) -> None:
        self.jobs[id] = (run_date, func, args)

    def remove_job(self, job_id: str) -> None:
        from apscheduler.jobstores.base import JobLookupError

        if self.jobs.pop(job_id, None) is None:
            raise JobLookupError(job_id)

    def next_time(self) -> datetime | None:
        return min((when for when, _, _ in self.jobs.values()), default=None)

    def run_due(self, now: datetime) -> int:
        due = sorted((when, job_id) for job_id, (when, _, _) in self.jobs.items() if when <= now)
        for _, job_id in due:
            _, func, args = self.jobs.pop(job_id)
            func(*args)
        return len(due)


class Log:
    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        return lambda event, **kw: self.records.append((level, event, kw))


class CountingClients(ClientFactory):
    """The real client factory, its clients reused per service and key (every
    profile here has the same base keys and region: making 1000 botocore
    clients would only slow the test); every STS call is noted at fake time."""

    def __init__(self, config: AwsConfig, clock: FakeClock) -> None:
        super().__init__(config)
        self.clock = clock
        self.calls: list[float] = []
        self._made: dict[tuple[str, str | None], Any] = {}

    def client(self, service: str, profile: str | None, creds: Credentials | None,
               region: str | None = None) -> Any:
        key = (service, creds.access_key_id if creds else None)
        if key not in self._made:
            client = super().client(service, profile, creds, region)
            client.meta.events.register("before-call.sts.*", lambda **_: self.calls.append(self.clock.time()))
            self._made[key] = client
        return self._made[key]


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS:"))


def _libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
                   + glob.glob("/usr/lib/faketime/libfaketime.so.1"))
    if not found:
        unavailable("libfaketime is not installed (Debian package faketime; scripts/test installs it)")
    return found[0]


@pytest.fixture
def faked_moto(tmp_path: Path) -> Iterator[tuple[MotoServer, FakeClock]]:
    clock = FakeClock(tmp_path / "faketime")
    launcher = tmp_path / "moto_launcher.py"
    launcher.write_text(MOTO_LAUNCHER)
    logdir = tmp_path / "moto"
    logdir.mkdir()
    faked = {"LD_PRELOAD": _libfaketime(), "FAKETIME_TIMESTAMP_FILE": str(clock.path),
             "FAKETIME_NO_CACHE": "1", "DONT_FAKE_MONOTONIC": "1"}
    with open(logdir / "moto.log", "ab") as log, mock.patch.dict(os.environ, faked):
        port = free_port()
        proc = _launch_moto(str(launcher), "127.0.0.1", port, str(logdir), log)
    try:
        up = _wait_http(f"http://127.0.0.1:{port}/moto-api/", proc)
        assert up, (logdir / "moto.log").read_text()[-2000:]
        yield MotoServer(proc, port, str(logdir)), clock
    finally:
        proc.terminate()
        proc.wait(10)


def _aws_files(tmp_path: Path, moto: MotoServer) -> dict[str, str]:
    config = ["[profile base]\nregion = us-east-1\n"]
    config += [f"[profile p{i:03d}]\nrole_arn = arn:aws:iam::123456789012:role/r{i:03d}\n"
               f"source_profile = base\nduration_seconds = {LIFETIME}\nregion = us-east-1\n"
               for i in range(N)]
    (tmp_path / "config").write_text("\n".join(config))
    (tmp_path / "credentials").write_text(
        "[base]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n")
    return {"AWS_CONFIG_FILE": str(tmp_path / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
            "AWS_ENDPOINT_URL_STS": moto.url, "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.mark.slow
def test_500_profiles_one_refresh_cycle(tmp_path: Path, faked_moto: tuple[MotoServer, FakeClock]) -> None:
    moto, clock = faked_moto
    names = [f"p{i:03d}" for i in range(N)]
    env = _aws_files(tmp_path, moto)
    keep = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with mock.patch.dict(os.environ, {**keep, **env}, clear=True):
        config = AwsConfig.load()
        settings = Settings(store="memory", refresh_window=WINDOW, warm_profiles=tuple(names),
                            max_refresh_rate=RATE)
        clients = CountingClients(config, clock)
        store = MemoryStore()

        def make_broker() -> Broker:
            return Broker(settings=settings, store=store, config=config, clients=clients, now=clock.now,
                          environ=dict(os.environ), lock_dir=str(tmp_path / "locks"))

        scheduler, log = FakeScheduler(), Log()
        pacer = TokenBucket(RATE, clock=clock.monotonic, sleep=clock.advance)
        keeper = Keeper(make_broker=make_broker, scheduler=scheduler, log=log, rng=random.Random(12),
                        pacer=pacer)
        rss_before = _rss_kib()
        start = clock.time()
        keeper.warm(keeper.warm_set())
        warm_seconds = clock.time() - start
        warm_calls = len(clients.calls)
        rss_warm = _rss_kib()
        assert warm_calls == N
        assert all(keeper.serve_from_memory(p) is not None for p in names)

        served_checks = 0
        serve_times: list[float] = []
        while min(keeper.state(p).refreshes for p in names) < 2:
            when = scheduler.next_time()
            assert when is not None, "a profile fell off the schedule"
            assert clock.time() - start < 4 * LIFETIME, "no full refresh cycle"
            clock.advance((when - clock.now()).total_seconds() + 0.001)
            scheduler.run_due(clock.now())
            # exports throughout: every profile servable from memory, quickly
            for p in names:
                t0 = time.perf_counter()
                ok = keeper.serve_from_memory(p) is not None
                serve_times.append(time.perf_counter() - t0)
                assert ok, f"{p} not servable at +{clock.time() - start:.0f} s"
            served_checks += 1
        cycle_seconds = clock.time() - start
        rss_cycle = _rss_kib()

    per_second = Counter(int(t) for t in clients.calls)
    first = Counter(int(t - clients.calls[0]) for t in clients.calls[:warm_calls])
    serve_times.sort()
    figures = {
        "profiles": N, "max_refresh_rate": RATE, "lifetime_s": LIFETIME, "refresh_window_s": WINDOW,
        "upstream_calls": len(clients.calls), "moto_assume_role_calls": moto.calls("AssumeRole"),
        "max_calls_in_one_second": max(per_second.values()),
        "calls_in_first_second": first[0], "warm_up_fake_seconds": round(warm_seconds, 1),
        "cycle_fake_seconds": round(cycle_seconds, 1), "served_checks": served_checks * N,
        "serve_p50_us": round(serve_times[len(serve_times) // 2] * 1e6, 1),
        "serve_p99_us": round(serve_times[int(len(serve_times) * 0.99)] * 1e6, 1),
        "rss_kib_before": rss_before, "rss_kib_warm": rss_warm, "rss_kib_after_cycle": rss_cycle,
        "rss_kib_per_profile": round((rss_cycle - rss_before) / N, 1),
        "rate_warnings": sum(1 for _, e, _ in log.records if e == "refresh_rate"),
    }
    report = os.environ.get("CREDHELPER_SCALE_REPORT")
    if report:
        Path(report).write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))
    assert figures["upstream_calls"] >= 2 * N  # warm-up plus one refresh of every profile
    assert figures["moto_assume_role_calls"] == figures["upstream_calls"]
    assert figures["max_calls_in_one_second"] <= RATE
    assert figures["calls_in_first_second"] <= RATE  # no burst at start
    assert warm_seconds >= (N - 1) / RATE * 0.99
    assert figures["rss_kib_per_profile"] < 100  # bounded: a few KiB of state per profile
    assert rss_cycle - rss_warm < 20 * 1024  # a refresh cycle does not grow the process
    assert figures["rate_warnings"] == 0  # 500 / (900 - 420) s ~ 1 call/s: within 5


def test_rate_warning(tmp_path: Path) -> None:
    """500 profiles whose credentials are served 480 s need ~1.04 calls/s: above a limit of 1."""
    settings = Settings(store="memory", refresh_window=WINDOW, max_refresh_rate=1)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    broker = Broker(settings=settings, store=MemoryStore(), config=AwsConfig({}, {}), now=lambda: now)
    log = Log()
    keeper = Keeper(make_broker=lambda: broker, scheduler=FakeScheduler(), log=log)
    from datetime import timedelta

    for i in range(N):
        st = keeper.state(f"p{i}")
        st.creds = Credentials("ASIA", "s", "t", now + timedelta(seconds=LIFETIME), "assume-role", now)
        st.next_refresh = now
    keeper._check_rate()
    warnings = [kw for level, event, kw in log.records if event == "refresh_rate"]
    assert len(warnings) == 1 and warnings[0]["needed_per_s"] == pytest.approx(500 / 480, abs=0.01)
    keeper.pacer.set_rate(2)
    broker.settings = Settings(store="memory", refresh_window=WINDOW, max_refresh_rate=2)
    log.records.clear()
    keeper._check_rate()
    assert not log.records
