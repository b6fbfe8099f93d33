"""`credhelper daemon`: keeps credentials fresh and answers the export fast path.

Wiring only: the socket server (server.py), the profiles' memory and schedule
(keeper.py), systemd integration (systemd.py), logs (logs.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import threading
import time
from collections.abc import Mapping
from datetime import UTC
from typing import Any

from credhelper import __version__, paths
from credhelper import settings as settings_mod
from credhelper.broker import Broker
from credhelper.daemon import logs, systemd
from credhelper.daemon.keeper import Keeper
from credhelper.daemon.server import Reply, Server
from credhelper.deadline import Deadline
from credhelper.errors import EXIT_USAGE, CredhelperError
from credhelper.model import FORMATS, render
from credhelper.store import open_store


class DaemonRunning(CredhelperError):
    """Another daemon holds the socket: starting a second one is a usage error."""

    exit_code = EXIT_USAGE


def _stamp(files: tuple[str, ...]) -> tuple[int | None, ...]:
    out: list[int | None] = []
    for f in files:
        try:
            out.append(os.stat(f).st_mtime_ns)
        except OSError:
            out.append(None)
    return tuple(out)


class App:
    """Answers requests: what the daemon does, independent of sockets and signals."""

    def __init__(self, keeper: Keeper, log: Any, environ: Mapping[str, str]) -> None:
        self.keeper = keeper
        self.log = log
        self.files = paths.config_files(environ)
        self._stamp = _stamp(self.files)
        self._reload_lock = threading.Lock()
        self.started = time.time()

    def maybe_reload(self) -> None:
        """Pick up edits of the AWS config or the settings without a SIGHUP."""
        stamp = _stamp(self.files)
        if stamp != self._stamp:
            with self._reload_lock:
                if stamp != self._stamp:
                    self._stamp = stamp
                    self.keeper.reload()

    def handle(self, req: dict[str, object], reply: Reply) -> None:
        op = req["op"]
        if op == "ping":
            reply.ok(f"pong {os.getpid()}")
        elif op == "status":
            reply.ok(json.dumps(self.status()))
        elif op in ("export", "refresh", "forget"):
            profile = req.get("profile")
            if not isinstance(profile, str) or not profile:
                reply.error(EXIT_USAGE, f"bad request: {op} needs a profile")
            elif op == "export":
                self.export(profile, req, reply)
            elif op == "refresh":
                self.keeper.nudge(profile)
                reply.ok("")
            else:
                self.keeper.forget(profile)
                reply.ok("")
        else:
            reply.error(EXIT_USAGE, f"bad request: unknown op {op!r}")

    def export(self, profile: str, req: dict[str, object], reply: Reply) -> None:
        fmt = req.get("format", "claude")
        if fmt not in FORMATS:
            reply.error(EXIT_USAGE, f"bad request: unknown format {fmt!r}")
            return
        env = req.get("env")
        if not isinstance(env, dict) or paths.config_files(env) != self.files:
            reply.send("fallback")
            self.log.info("export", profile=profile, served_by="fallback", reason="other config files")
            return
        started = time.monotonic()
        self.maybe_reload()
        creds = self.keeper.serve_from_memory(profile)
        served_by = "memory"
        try:
            if creds is None:
                self.keeper.check_login(profile)
                self.keeper.check_recursion(profile, reply.peer_pid)
                # The client's budget started before it connected (the greeting told it ours).
                budget = self.keeper.broker.settings.export_timeout - _elapsed(req)
                creds = self.keeper.obtain(profile, Deadline(budget))
                served_by = "mint"
            reply.ok(render(creds, str(fmt), profile=profile))
        except CredhelperError as exc:
            reply.error(exc.exit_code, exc.message)
            self.log.info("export", profile=profile, served_by="error", exit_code=exc.exit_code)
            return
        except Exception as exc:  # noqa: BLE001 - the client falls back to the direct path
            reply.error(1, "internal error")
            self.log.error("export", profile=profile, served_by="error", error=type(exc).__name__)
            return
        self.log.info(
            "export", profile=profile, format=fmt, served_by=served_by,
            access_key_id=creds.access_key_id,
            duration_ms=round((time.monotonic() - started) * 1000, 2),
        )

    def status(self) -> dict[str, Any]:
        return {
            "daemon": {
                "pid": os.getpid(), "version": __version__,
                "uptime": int(time.time() - self.started),
                "store": self.keeper.broker.store.description,
                "refresh_window": self.keeper.broker.settings.refresh_window,
            },
            "profiles": self.keeper.status(),
        }


def _elapsed(req: dict[str, object]) -> float:
    """Seconds the client spent before asking (its `elapsed_ms`), bounded."""
    value = req.get("elapsed_ms")
    if isinstance(value, str) and value.isdigit() and len(value) <= 9:
        return min(int(value) / 1000, 600.0)
    return 0.0


def _make_broker() -> Broker:
    settings = settings_mod.load()
    return Broker(settings=settings, store=open_store(settings))


def _single_instance(sock_path: str) -> int:
    """Hold `<socket>.lock` for the daemon's lifetime; refuse to start twice."""
    paths.ensure_private_dir(os.path.dirname(sock_path))
    fd = os.open(sock_path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DaemonRunning(
            f"another credhelper daemon is serving {sock_path}: stop it first "
            "(credhelper status shows its pid)"
        ) from None
    return fd


def run() -> int:
    from credhelper.daemon.hardening import make_undumpable
    make_undumpable()  # first: no core dump, no /proc/PID/mem for the secrets to come
    from apscheduler.schedulers.background import BackgroundScheduler

    logs.configure()
    log = logs.get()
    sock_path = paths.socket_path()
    lock_fd = _single_instance(sock_path)
    scheduler = BackgroundScheduler(timezone=UTC)
    keeper = Keeper(
        make_broker=_make_broker, scheduler=scheduler, log=log,
        recent_file=os.path.join(paths.state_dir(), "recent-profiles.json"),
        on_secret=logs.REDACT.add,
    )
    from credhelper.daemon.sessions import SessionWatcher

    SessionWatcher(keeper, scheduler, log).start()  # sign-in warnings before the break
    app = App(keeper, log, os.environ)
    server = Server(sock_path, app.handle, log, budget=lambda: keeper.broker.settings.export_timeout)
    server.bind()
    stop = threading.Event()

    # Signal handlers hand their work to the accept loop: a handler that logged
    # or started a thread could deadlock on a lock the interrupted code held.
    def stopping(signum: int) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        systemd.notify("STOPPING=1")
        stop.set()
        server.request_stop()

    def on_term(signum: int, _frame: object) -> None:
        server.call_soon(lambda: stopping(signum))

    def on_hup(_signum: int, _frame: object) -> None:
        server.call_soon(lambda: threading.Thread(target=keeper.reload, daemon=True).start())

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, on_hup)
    scheduler.start()
    warm = keeper.warm_set()
    threading.Thread(target=keeper.warm, args=(warm,), name="warm", daemon=True).start()
    systemd.start_watchdog(lambda: not stop.is_set(), stop)
    systemd.notify(f"READY=1\nSTATUS=serving {sock_path}\nMAINPID={os.getpid()}")
    log.info("started", pid=os.getpid(), version=__version__, socket=sock_path,
             store=keeper.broker.store.description, warm_profiles=warm)
    try:
        server.serve_forever()
    finally:
        stop.set()
        server.close()
        scheduler.shutdown(wait=False)
        os.close(lock_fd)
        log.info("stopped")
    return 0
