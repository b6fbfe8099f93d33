"""Where credhelper keeps things. Environment overrides first (product.md
"Interfaces"), then the platform's per-user directories (platformdirs).

`socket_path()` is used by the export fast path: it imports platformdirs only
when neither `CREDHELPER_SOCKET` nor `XDG_RUNTIME_DIR` is set.
"""

from __future__ import annotations

import os
import stat

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


def config_path() -> str:
    explicit = os.environ.get("CREDHELPER_CONFIG")
    if explicit:
        return explicit
    import platformdirs

    return os.path.join(platformdirs.user_config_dir(APP), "config.toml")


def runtime_dir() -> str:
    """A per-user directory for the socket (not created here)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return os.path.join(xdg, APP)
    import platformdirs

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
