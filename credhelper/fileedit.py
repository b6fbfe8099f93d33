"""Editing a user's text file (Claude Code's settings.json, ~/.aws/config) safely.

`plan()` reads the file and pairs it with the text it should hold; the `Edit`
says whether anything changes and renders a unified diff (for `--dry-run`).
`apply()` writes it:
- through symlinks (a dotfile manager's link stays a link; its target changes);
- atomically (a temp file in the target's directory, fsync, rename, fsync dir);
- keeping the file's mode and, where permitted, its owner and group;
- after a timestamped backup next to the target (`<name>.bak-20261130T101500Z`);
- refusing when the file changed since it was read (another editor was faster).
A file whose text is already right is not touched at all (no backup either).
"""

from __future__ import annotations

import difflib
import os
import stat
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from credhelper.errors import ConfigError


@dataclass(frozen=True)
class Edit:
    #: the path the user knows (may be a symlink)
    path: Path
    #: the file really written (symlinks followed)
    target: Path
    #: the bytes read, or None when the file does not exist yet
    old: bytes | None
    new: str
    #: mode for a file that does not exist yet
    new_mode: int = 0o600

    @property
    def old_text(self) -> str:
        return "" if self.old is None else self.old.decode("utf-8")

    @property
    def changed(self) -> bool:
        return self.old is None or self.old != self.new.encode("utf-8")

    def diff(self) -> str:
        """A unified diff from what is there to what would be written ("" if equal)."""
        if not self.changed:
            return ""
        before = "/dev/null" if self.old is None else str(self.path)
        lines = difflib.unified_diff(
            self.old_text.splitlines(keepends=True), self.new.splitlines(keepends=True),
            fromfile=before, tofile=str(self.path),
        )
        return "".join(ln if ln.endswith("\n") else ln + "\n\\ No newline at end of file\n"
                       for ln in lines)


def read(path: Path) -> tuple[Path, bytes | None]:
    """(target, bytes) of `path` with symlinks followed; bytes None if it is missing."""
    target = Path(os.path.realpath(path))
    try:
        return target, target.read_bytes()
    except FileNotFoundError:
        return target, None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}: fix its permissions") from exc


def plan(path: Path, new: str, *, old: bytes | None = None, target: Path | None = None,
         new_mode: int = 0o600) -> Edit:
    """An `Edit` of `path` to `new`; pass `old`/`target` when already read."""
    if target is None:
        target, old = read(path)
    return Edit(path=path, target=target, old=old, new=new, new_mode=new_mode)


def backup_name(target: Path, now: datetime) -> Path:
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    candidate = target.with_name(f"{target.name}.bak-{stamp}")
    n = 1
    while candidate.exists():
        n += 1
        candidate = target.with_name(f"{target.name}.bak-{stamp}-{n}")
    return candidate


def apply(edit: Edit, *, now: datetime | None = None) -> Path | None:
    """Write `edit`; returns the backup's path (None for a new file or no change)."""
    if not edit.changed:
        return None
    target = edit.target
    current = read(edit.path)[1]
    if current != edit.old:
        raise ConfigError(f"{edit.path} changed while credhelper was editing it: run it again")
    target.parent.mkdir(parents=True, exist_ok=True)
    backup: Path | None = None
    st: os.stat_result | None = None
    if edit.old is not None:
        st = target.stat()
        backup = backup_name(target, now or datetime.now(UTC))
        _write_new(backup, edit.old, stat.S_IMODE(st.st_mode), st)
    mode = stat.S_IMODE(st.st_mode) if st is not None else edit.new_mode
    write_atomically(target, edit.new.encode("utf-8"), mode, owner_of=st)
    return backup


def write_atomically(path: Path, data: bytes, mode: int, *, owner_of: os.stat_result | None = None) -> None:
    """Replace `path` with `data`: a temp file in the same directory (mode `mode`,
    the owner of `owner_of` if given), fsync, os.replace, fsync the directory.
    A reader sees the old file or the new one, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            if owner_of is not None:
                _chown(f.fileno(), owner_of)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def _write_new(path: Path, data: bytes, mode: int, st: os.stat_result) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        os.fchmod(f.fileno(), mode)
        _chown(f.fileno(), st)
        os.fsync(f.fileno())


def _chown(fd: int, st: os.stat_result) -> None:
    if (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid()):
        return
    try:
        os.fchown(fd, st.st_uid, st.st_gid)
    except PermissionError:
        pass  # only root may give a file away; the file stays the caller's


def _fsync_dir(directory: Path) -> None:
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
