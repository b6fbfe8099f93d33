"""Where credhelper keeps things. Environment overrides first (product.md
"Interfaces"), then the platform's per-user directories (platformdirs).

`socket_path()` is used by the export fast path: it imports platformdirs only
when neither `CREDHELPER_SOCKET` nor `XDG_RUNTIME_DIR` is set.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping

APP = "credhelper"


def ensure_private_dir(path: str) -> str:
    """Create `path` (and parents) and make sure it is ours and 0700."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.stat(path)
    if st.st_uid != os.getuid():
        from credhelper.errors import ConfigError

        raise ConfigError(f"{path} belongs to another user: remove it or set CREDHELPER_SOCKET")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


def config_files(env: Mapping[str, str]) -> tuple[str, str, str]:
    """(AWS config, AWS credentials, credhelper settings) as a process with
    environment `env` sees them. The daemon compares a client's with its own:
    a client that reads other files is sent to the direct path."""
    home = env.get("HOME") or os.path.expanduser("~")

    def expand(path: str) -> str:
        if path == "~" or path.startswith("~/"):
            path = home + path[1:]
        return os.path.abspath(path)

    settings = env.get("CREDHELPER_CONFIG")
    if not settings:
        # platformdirs' user config dir, computed for `env` rather than os.environ
        if sys.platform == "darwin":
            base = os.path.join(home, "Library", "Application Support")
        else:
            base = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
        settings = os.path.join(base, APP, "config.toml")
    return (
        expand(env.get("AWS_CONFIG_FILE") or "~/.aws/config"),
        expand(env.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials"),
        expand(settings),
    )


def config_path() -> str:
    return config_files(os.environ)[2]


def runtime_dir() -> str:
    """A per-user directory for the socket (not created here)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return os.path.join(xdg, APP)
    import warnings

    import platformdirs

    with warnings.catch_warnings():  # it warns when /run/user/<uid> is missing: handled below
        warnings.simplefilter("ignore")
        base = platformdirs.user_runtime_dir()
    if not os.path.isdir(base):
        # No /run/user/<uid> (containers, macOS sandboxes): the cache dir is
        # per-user too, unlike /tmp.
        base = platformdirs.user_cache_dir()
    return os.path.join(base, APP, "run")


def socket_path() -> str:
    return os.environ.get("CREDHELPER_SOCKET") or os.path.join(runtime_dir(), "daemon.sock")


def state_dir() -> str:
    """Non-secret state (locks, the encrypted store file): depends on HOME only,
    so the daemon and a helper started by Claude Code agree on it."""
    import platformdirs

    return os.path.join(platformdirs.user_state_dir(APP))


def lock_dir() -> str:
    return os.path.join(state_dir(), "locks")


def this_launcher(argv0: str | None = None, python: str | None = None, *, run_as: str = "credhelper") -> str:
    """Absolute path of this installation's `credhelper` command.

    `sys.argv[0]` first when it is the `credhelper` command itself: it is the
    path the user runs, e.g. Homebrew's /opt/homebrew/bin/credhelper symlink,
    which survives upgrades where the versioned path behind it does not (so it
    is made absolute but not resolved). Otherwise the launcher next to the
    interpreter (`sys.executable` is not resolved either: in a venv it is a
    symlink to the base Python, whose directory has no credhelper).
    """
    argv0 = sys.argv[0] if argv0 is None else argv0
    python = sys.executable if python is None else python
    candidates = []
    if argv0 and os.path.basename(argv0) == APP:
        candidates.append(os.path.abspath(argv0))
    if python:
        candidates.append(os.path.join(os.path.dirname(os.path.abspath(python)), APP))
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    from credhelper.errors import ConfigError

    raise ConfigError(
        f"cannot find this installation's credhelper command (looked at {', '.join(candidates)}): "
        f"run {run_as} by its full path"
    )
