"""Crash-safe file writes: every bundle file, checkpoint and report is written through these.

A write goes to a temporary file in the destination's folder, is fsynced, renamed over the destination (atomic on
POSIX) and the folder is fsynced, so a reader (or a process that was killed mid-write) sees the old file or the
new one, never a partial one. New files get ordinary modes (0644 files, 0755 executables, minus the umask), not
mkstemp's 0600, so a service account can read a bundle another user wrote.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_copy_file",
    "atomic_replace_file",
    "fsync_dir",
    "umask_mode",
    "kill_point",
    "KILL_ENV",
]

#: crash-safety tests set this to a point name; :func:`kill_point` then SIGKILLs the process there
KILL_ENV = "SSP_TEST_KILL_AT"


def kill_point(name: str) -> None:
    """Test hook: ``SSP_TEST_KILL_AT=name`` kills this process (SIGKILL, no clean-up) at the point ``name``, so a
    test can check that a writer leaves a usable state wherever it is interrupted."""
    if os.environ.get(KILL_ENV) == name:
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def umask_mode(mode: int = 0o644) -> int:
    """``mode`` with the process umask applied (read without changing it for other threads: /proc, else 022)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return mode & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return mode & ~0o022


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a folder so a rename inside it survives a crash (no-op where folders cannot be opened)."""
    try:
        fd = os.open(str(path), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _tmp_beside(path: Path) -> tuple[int, str]:
    return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` atomically (temp file beside it, fsync, rename, fsync of the folder)."""
    path = Path(path)
    fd, tmp = _tmp_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, umask_mode(mode))
        kill_point(f"write:{path.name}")  # crash tests: the temp file is complete, the old file still in place
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str, mode: int = 0o644) -> Path:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"), mode)


def atomic_replace_file(src_tmp: str | os.PathLike[str], dst: str | os.PathLike[str], mode: int | None = None) -> Path:
    """Move a finished file (written and closed by someone else, e.g. a library that only writes to paths) over
    ``dst``: fsync it, set an ordinary mode, rename (same filesystem; else copy beside ``dst`` and rename), fsync
    the folder."""
    src_tmp, dst = Path(src_tmp), Path(dst)
    if mode is None:
        mode = 0o755 if os.access(src_tmp, os.X_OK) else 0o644
    fd = os.open(src_tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(src_tmp, umask_mode(mode))
    try:
        os.replace(src_tmp, dst)
    except OSError:  # another filesystem
        atomic_copy_file(src_tmp, dst, mode)
        src_tmp.unlink(missing_ok=True)
        return dst
    fsync_dir(dst.parent)
    return dst


def atomic_copy_file(src: str | os.PathLike[str], dst: str | os.PathLike[str], mode: int | None = None) -> Path:
    """Copy ``src`` over ``dst`` by rename: a process that has ``dst`` mapped (a loaded ``.so``) keeps the old
    inode intact. ``mode`` defaults to 0755 for executable sources, else 0644 (umask applied)."""
    src, dst = Path(src), Path(dst)
    if mode is None:
        mode = 0o755 if os.access(src, os.X_OK) else 0o644
    fd, tmp = _tmp_beside(dst)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, umask_mode(mode))
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(dst.parent)
    return dst
