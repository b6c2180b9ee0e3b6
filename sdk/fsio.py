"""Crash-safe file writes: every bundle file, checkpoint and report is written through these.

A write goes to a temporary file in the destination's folder, is fsynced, renamed over the destination (atomic on
POSIX) and the folder is fsynced, so a reader (or a process that was killed mid-write) sees the old file or the
new one, never a partial one. New files get ordinary modes (0644 files, 0755 executables, minus the umask), not
mkstemp's 0600, so a service account can read a bundle another user wrote.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_copy_file", "fsync_dir", "umask_mode"]


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
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str, mode: int = 0o644) -> Path:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"), mode)


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
