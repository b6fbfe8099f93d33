"""The fault matrix, part 2 (issue 8, "Also"): the store and the clock. Part 1,
tests/test_fault_matrix.py, has upstream, configuration and daemon faults and
the helpers both use; docs/reliability.md names every test of both.

Faults are real: a locked gnome-keyring on a D-Bus session of its own, a file
cut short, another key, a full tmpfs (ENOSPC) in a private mount namespace,
SIGKILL of a writer, libfaketime for the clock the export sees.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import unavailable
from daemon_helpers import parse_export, write_setup
from test_fault_matrix import (
    OTHER,
    SLACK,
    cached,
    creds_of,
    export,
    libfaketime,
    need_root_namespaces,
    one_line,
    still_served,
)

if TYPE_CHECKING:
    from conftest import AwsEnv


# ================================================================== store


class PrivateKeyring:
    """gnome-keyring on a D-Bus session of its own (a throwaway HOME, a known
    password), so that a test can lock its login collection without touching
    the suite's keyring."""

    PASSWORD = "fault-matrix"

    def __init__(self, home: Path) -> None:
        if not shutil.which("gnome-keyring-daemon") or not shutil.which("dbus-daemon"):
            unavailable("gnome-keyring-daemon / dbus-daemon not installed (scripts/test installs them)")
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.bus = subprocess.Popen(
            ["dbus-daemon", "--session", "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        assert self.bus.stdout is not None
        self.address = self.bus.stdout.readline().strip()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
               "DBUS_SESSION_BUS_ADDRESS": self.address}
        self.env = env
        self.keyring = subprocess.Popen(
            ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            text=True)
        assert self.keyring.stdin is not None
        self.keyring.stdin.write(self.PASSWORD)
        self.keyring.stdin.close()
        deadline = time.monotonic() + 20
        while self.secretstorage("assert not secretstorage.get_default_collection(c).is_locked()"):
            if time.monotonic() > deadline:
                self.close()
                unavailable("the private gnome-keyring did not come up")
            time.sleep(0.1)

    def secretstorage(self, code: str) -> int:
        """Run `code` with `c` a secretstorage connection to this keyring; its exit status."""
        prog = f"import secretstorage\nc = secretstorage.dbus_init()\n{code}\n"
        return subprocess.run([sys.executable, "-c", prog], env=self.env, capture_output=True,
                              timeout=30, check=False).returncode

    def lock(self) -> None:
        assert self.secretstorage("col = secretstorage.get_default_collection(c)\ncol.lock()\n"
                                  "assert col.is_locked()") == 0

    def unlock(self) -> None:
        code = f"""
from jeepney import DBusAddress, new_method_call
from jeepney.wrappers import unwrap_msg
svc = DBusAddress("/org/freedesktop/secrets", bus_name="org.freedesktop.secrets",
                  interface="org.freedesktop.Secret.Service")
_, session = unwrap_msg(c.send_and_get_reply(new_method_call(svc, "OpenSession", "sv",
                                                             ("plain", ("s", "")))))
col = secretstorage.get_default_collection(c)
internal = DBusAddress("/org/freedesktop/secrets", bus_name="org.freedesktop.secrets",
                       interface="org.gnome.keyring.InternalUnsupportedGuiltRiddenInterface")
unwrap_msg(c.send_and_get_reply(new_method_call(internal, "UnlockWithMasterPassword",
    "o(oayays)", (col.collection_path, (session, b"", {self.PASSWORD.encode()!r}, "text/plain")))))
assert not col.is_locked()
"""
        assert self.secretstorage(code) == 0

    def close(self) -> None:
        for proc in (self.keyring, self.bus):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.mark.keyring
def test_keyring_locked(aws_env: AwsEnv, tmp_path: Path) -> None:
    """The keyring gets locked (screen lock, a keyring that locks on idle): export
    exits 5 at once saying the keyring is locked, with no upstream call and no
    fallback to a file; once unlocked, the same credentials are served again
    (nothing lost, no new mint)."""
    kr = PrivateKeyring(tmp_path / "keyring-home")
    try:
        write_setup(aws_env, store='store = "keyring"\nkeyring_service = "fault-matrix"\n')
        env: dict[str, str | None] = {"DBUS_SESSION_BUS_ADDRESS": kr.address}
        first = creds_of(export(aws_env, env=env)[0])
        kr.lock()
        done, took = export(aws_env, env=env)
        one_line(done, 5, "keyring is locked")
        assert took < 10 + SLACK, took
        assert aws_env.moto.calls("AssumeRole") == 1
        kr.unlock()
        still_served(aws_env, first, env=env)
    finally:
        kr.close()


def test_truncated_store_file(aws_env: AwsEnv) -> None:
    """The encrypted store file cut short (a crash of another tool, a full disk
    elsewhere): exit 5 naming the file and saying to move it away; the file is
    never overwritten (what it holds can still be recovered), nothing is minted."""
    write_setup(aws_env, extra_config=OTHER)
    creds_of(export(aws_env)[0])
    creds_of(export(aws_env, "other")[0])
    store = aws_env.home / "store.enc"
    whole = store.read_bytes()
    store.write_bytes(whole[: len(whole) // 2])
    for profile in ("dev", "other"):
        one_line(export(aws_env, profile)[0], 5, str(store), "move")
    assert store.read_bytes() == whole[: len(whole) // 2]
    assert aws_env.moto.calls("AssumeRole") == 2


def test_wrong_key(aws_env: AwsEnv) -> None:
    """The key file replaced by another key (restored from the wrong backup):
    no item authenticates, so the store is refused (exit 5, one line naming the
    key file and saying not to delete the store) rather than read as "every item
    is corrupt" and overwritten; nothing is minted or written. The right key
    brings every item back: both profiles served with no new mint."""
    write_setup(aws_env, extra_config=OTHER)
    first = creds_of(export(aws_env)[0])
    second = creds_of(export(aws_env, "other")[0])
    key, store = aws_env.home / "store.key", aws_env.home / "store.enc"
    right, before = key.read_bytes(), store.read_bytes()
    key.write_bytes(os.urandom(32))
    for profile in ("dev", "other"):
        one_line(export(aws_env, profile)[0], 5, str(key), "do not delete the store")
    assert store.read_bytes() == before
    assert aws_env.moto.calls("AssumeRole") == 2
    key.write_bytes(right)
    assert creds_of(export(aws_env, "other")[0]) == second
    still_served(aws_env, first)
    assert aws_env.moto.calls("AssumeRole") == 2


DISK_FULL = """
set -u
mount -t tmpfs -o size=64k tmpfs "$D"
cp "$SAVED" "$D/store.enc"
dd if=/dev/zero of="$D/filler" bs=1k count=128 2>/dev/null
"$@" --profile other 2>"$D/../other.err"; echo "other=$?" >"$D/../rcs"
"$@" --profile dev 2>"$D/../dev.err"; echo "dev=$?" >>"$D/../rcs"
cp "$D/store.enc" "$D/../after.enc"
"""


def test_disk_full(aws_env: AwsEnv) -> None:
    """The store's file system is full (a 64 KiB tmpfs filled to the last block,
    in a private mount namespace: a real ENOSPC). An export that has to mint
    and store exits 5 with one line naming the store file and "free space";
    the store file is not half-written, and `dev`'s cached credentials are
    still served from it on the full disk, with no upstream call."""
    need_root_namespaces()
    first = cached(aws_env)
    store = aws_env.home / "store.enc"
    before = store.read_bytes()
    mnt, saved = aws_env.home / "full", aws_env.home / "saved.enc"
    mnt.mkdir()
    saved.write_bytes(before)
    # the store lives on the full file system: point the settings at it
    settings = aws_env.settings_file.read_text().replace(str(store), str(mnt / "store.enc"))
    aws_env.write_settings(settings)
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", DISK_FULL, "sh",
         aws_env.credhelper, "export"],
        env=aws_env.environ({"D": str(mnt), "SAVED": str(saved)}),
        cwd=aws_env.home, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    rcs = dict(line.split("=") for line in (aws_env.home / "rcs").read_text().split())
    err = (aws_env.home / "other.err").read_text()
    assert rcs["other"] == "5", err
    assert err.count("\n") == 1 and err.startswith("credhelper: "), err
    assert "No space left on device" in err and "free space" in err, err
    assert rcs["dev"] == "0", (aws_env.home / "dev.err").read_text()
    assert parse_export(done.stdout) == first  # only dev's export printed anything
    assert (aws_env.home / "after.enc").read_bytes() == before
    assert aws_env.moto.calls("AssumeRole") == 2  # `other` was minted, then not stored


WRITER = """
import os, sys
from credhelper.settings import load
from credhelper.store import open_store
store = open_store(load())
n = 0
while True:
    n += 1
    store.set("v1/test/churn", f"value-{n}-" + "x" * (n % 5000))
"""


@pytest.mark.slow
def test_kill9_mid_write(aws_env: AwsEnv) -> None:
    """A writer of the encrypted-file store killed with SIGKILL at varying points
    of its write loop, 20 times: the store always opens, `dev`'s cached credentials are intact and
    served with no upstream call, and no temporary file is left to grow."""
    first = cached(aws_env)
    store = aws_env.home / "store.enc"
    script = aws_env.home / "writer.py"
    script.write_text(WRITER)
    env = aws_env.environ()
    blobs = set()
    for i in range(20):
        proc = subprocess.Popen([sys.executable, str(script)], env=env, cwd=aws_env.home,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.45 + (i % 7) * 0.05)  # import time, then somewhere inside the writes
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
        items = json.loads(store.read_text())["items"]  # whole, never torn
        blobs.add(items.get("v1/test/churn"))
    assert len(blobs - {None}) >= 15, "the writer was not killed while writing"
    still_served(aws_env, first)
    leftovers = [p.name for p in store.parent.iterdir() if p.name.startswith(store.name) and p != store
                 and not p.name.endswith(".lock")]
    assert len(leftovers) <= 1, leftovers


# ================================================================== clock


def test_clock_jumps(aws_env: AwsEnv) -> None:
    """The wall clock jumps (suspend/resume, an NTP step), seen by the export
    through libfaketime while AWS keeps real time:
    - 2 h back: cached credentials look fresher; still served (they are valid at AWS);
    - 50 min forward: the cached ones look due, so a new set is minted (never
      handed out with 7 min or less left by the clock the client sees);
    - 3 h forward: everything AWS issues looks expired already; exit 6 with one
      line (one mint, no loop); back on time, the credentials minted last are
      served."""
    lib = libfaketime()
    first = cached(aws_env)

    def at(offset: str) -> subprocess.CompletedProcess[str]:
        return export(aws_env, env={"LD_PRELOAD": lib, "FAKETIME": offset,
                                    "FAKETIME_DONT_FAKE_MONOTONIC": "1"})[0]

    assert creds_of(at("-2h")) == first
    assert aws_env.moto.calls("AssumeRole") == 1
    second = creds_of(at("+50m"))
    assert second["AccessKeyId"] != first["AccessKeyId"]
    assert aws_env.moto.calls("AssumeRole") == 2
    one_line(at("+3h"), 6, "dev", "check the system clock")
    assert aws_env.moto.calls("AssumeRole") == 3  # one mint, no loop
    assert creds_of(export(aws_env)[0]) == second
    assert aws_env.moto.calls("AssumeRole") == 3


def test_clock_far_ahead_names_the_clock(aws_env: AwsEnv) -> None:
    """With the clock 3 h ahead, everything AWS issues looks expired: the line
    says to check the system clock (duration_seconds cannot help)."""
    lib = libfaketime()
    write_setup(aws_env)
    done = export(aws_env, env={"LD_PRELOAD": lib, "FAKETIME": "+3h",
                                "FAKETIME_DONT_FAKE_MONOTONIC": "1"})[0]
    one_line(done, 6, "clock")
