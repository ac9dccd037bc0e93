"""Output files that are never half written, never lost, and never written over an input.

One file (`atomic_path`): the data goes to a temporary file beside the target, is fsynced and renamed
over the target, so the target is at every instant either its old or its new complete content.

Temporary files are named `.<name>.<pid>.<random>.tmp`. They are removed when the write fails, on SIGINT
(KeyboardInterrupt unwinds the write), on SIGTERM/SIGHUP (a handler is installed while a temporary file
exists, where the signal still has its default action; it removes the files and dies of the signal as
before), and, after SIGKILL or a power loss, by the next write of the same output, which removes
temporary files of processes that no longer run. Errors name the output, never the hidden file.

Two files as one (`write_pair`, for an engine plan and its JSON sidecar). No single rename can replace
two files, so the change goes through a small journal beside them:

  1. stage the new primary as `.<primary>.new` (temporary file, fsync, rename);
  2. stage the new record as `.<record>.new` -- the commit point: a staged record exists only when the
     staged primary is complete, and it names the primary's sha256;
  3. rename the staged primary over the primary; 4. rename the staged record over the record.

`recover_pair` (run before every write and every read of the pair) finishes or discards an interrupted
change: a staged record whose primary is staged, or already in place with the recorded sha256, is
rolled forward; anything else staged is removed, which leaves the old pair. A kill at any instant thus
leaves the old pair or the new pair loadable, and the next write leaves no staged or temporary file.
One writer per output at a time; readers may run alongside (a reader may finish a writer's commit).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import signal
import threading
from pathlib import Path
from typing import Callable, Iterator, Mapping

log = logging.getLogger("netdef.atomic")

TEMP_SUFFIX = ".tmp"
STAGED_SUFFIX = ".new"
CLEANUP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class OutputError(OSError):
    """An output that could not be written; the message names the output (not its temporary file)."""

    def __str__(self) -> str:
        return str(self.strerror)


class OverwriteInputError(ValueError):
    """An output path that is (or links to) one of the inputs."""


# --- same-file checks ------------------------------------------------------------------------------------

def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: the same inode (hard or symbolic links) or the same resolved path."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def refuse_overwriting_inputs(outputs: Mapping[str, str | os.PathLike | None],
                              inputs: Mapping[str, str | os.PathLike | None]) -> None:
    """Raise OverwriteInputError when an output is one of the inputs ({label: path}; None entries skipped)."""
    for out_label, out in outputs.items():
        if out is None:
            continue
        for in_label, given in inputs.items():
            if given is not None and same_file(out, given):
                via = "" if os.path.abspath(out) == os.path.abspath(given) else " (through a link)"
                raise OverwriteInputError(f"{out_label} {os.fspath(out)} is the same file as {in_label} "
                                          f"{os.fspath(given)}{via}: refusing to write over an input")


# --- temporary files: naming, signal cleanup, stale ones ----------------------------------------------------

_live: dict[Path, None] = {}  # this process's temporary and staged files, for the signal handler
_previous_handlers: dict[int, object] = {}
_lock = threading.Lock()


def _temp_pattern(path: Path) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\.[0-9a-f]+{re.escape(TEMP_SUFFIX)}$")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove temporary files of `path` left by processes that no longer run; returns what was removed."""
    path = Path(path)
    pattern = _temp_pattern(path)
    removed = []
    try:
        names = os.listdir(path.parent or ".")
    except OSError:
        return removed
    for name in names:
        match = pattern.match(name)
        if match and not _pid_alive(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):
                (path.parent / name).unlink()
                removed.append(path.parent / name)
    if removed:
        log.info("%s: removed %d temporary file(s) of an interrupted earlier write", path, len(removed))
    return removed


def _on_signal(signum: int, _frame: object) -> None:
    for p in list(_live):
        with contextlib.suppress(OSError):
            p.unlink()
    _live.clear()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)  # die of the signal, as without the handler


def _track(p: Path) -> None:
    """Remove `p` if SIGTERM/SIGHUP arrives; the handler exists only while something is tracked."""
    with _lock:
        _live[p] = None
        if threading.current_thread() is not threading.main_thread() or _previous_handlers:
            return
        for sig in CLEANUP_SIGNALS:
            if signal.getsignal(sig) is signal.SIG_DFL:
                _previous_handlers[sig] = signal.signal(sig, _on_signal)


def _untrack(p: Path) -> None:
    with _lock:
        _live.pop(p, None)
        if _live or threading.current_thread() is not threading.main_thread():
            return
        for sig, previous in _previous_handlers.items():
            if signal.getsignal(sig) is _on_signal:
                signal.signal(sig, previous)  # type: ignore[arg-type]
        _previous_handlers.clear()


def _new_temp(path: Path) -> Path:
    """Create an empty temporary file for `path` in its folder (tracked for signal cleanup)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
        _track(tmp)  # before the file exists: a signal right after its creation still removes it
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # ordinary permissions (umask)
        except FileExistsError:  # another writer's name: not ours to remove
            _untrack(tmp)
            continue
        except BaseException:  # e.g. KeyboardInterrupt right after the file was created
            tmp.unlink(missing_ok=True)
            _untrack(tmp)
            raise
        return tmp


def _fsync_file(p: Path) -> None:
    with open(p, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened for fsync
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _disk_full(exc: BaseException) -> bool:
    """ENOSPC, also where a library reports it in its own words (HDF5: "errno = 28")."""
    text = str(exc)
    return getattr(exc, "errno", None) == errno.ENOSPC or "No space left on device" in text or "errno = 28" in text


def _output_error(path: Path, tmp: Path, exc: BaseException) -> OutputError:
    """The error of a failed write, naming the output instead of the temporary file."""
    text = str(exc).replace(os.fspath(tmp), os.fspath(path)).replace(tmp.name, path.name)
    code = getattr(exc, "errno", None)
    if _disk_full(exc):
        return OutputError(errno.ENOSPC, f"{path}: no space left on the device while writing it (any earlier "
                                         f"{path.name} is unchanged)")
    reason = getattr(exc, "strerror", None) or text
    return OutputError(code or errno.EIO, f"{path}: cannot write it: {reason}")


def _check_target(path: Path) -> None:
    if path.is_dir():
        raise OutputError(errno.EISDIR, f"{path}: is a directory, expected a file name for the output")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces `path`, on error it is removed.

    A crash never leaves a half-written file under the final name; an OSError while writing is raised as
    OutputError naming `path`.
    """
    path = Path(path)
    _check_target(path)
    remove_stale_temps(path)
    tmp = _new_temp(path)
    try:  # (tracked: a signal between the creation and here removes it too)
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OutputError):
            raise
        if _disk_full(exc) or (isinstance(exc, OSError) and exc.filename in (None, os.fspath(tmp))):
            raise _output_error(path, tmp, exc) from exc
        _rename_in_message(exc, tmp, path)  # (an error about another file, e.g. an input, stays as it is)
        raise
    finally:
        _untrack(tmp)


def _rename_in_message(exc: BaseException, tmp: Path, path: Path) -> None:
    """Say `path` where an error message names the temporary file."""
    if exc.args and isinstance(exc.args[0], str) and tmp.name in exc.args[0]:
        first = exc.args[0].replace(os.fspath(tmp), os.fspath(path)).replace(tmp.name, path.name)
        exc.args = (first,) + exc.args[1:]


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


# --- two files as one -----------------------------------------------------------------------------------------

def staged_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.parent / f".{path.name}{STAGED_SUFFIX}"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stage(path: Path, data: bytes) -> Path:
    """Write `data` completely, then rename it to the staged name of `path` (tracked until committed)."""
    _check_target(path)
    staged = staged_path(path)
    tmp = _new_temp(path)
    try:
        tmp.write_bytes(data)
        _fsync_file(tmp)
        os.replace(tmp, staged)
        _track(staged)  # (a signal right before this leaves a complete staged file: the next write removes it)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _output_error(path, tmp, exc) from exc
        raise
    finally:
        _untrack(tmp)
    return staged


def recover_pair(primary: str | os.PathLike, record: str | os.PathLike,
                 recorded_sha256: Callable[[bytes], str | None]) -> str | None:
    """Finish or undo an interrupted `write_pair`: "rolled forward", "discarded", or None (nothing staged).

    `recorded_sha256(record bytes)` returns the primary's sha256 a record names (None: unreadable).
    """
    primary, record = Path(primary), Path(record)
    staged_primary, staged_record = staged_path(primary), staged_path(record)
    outcome = None
    if staged_record.exists():
        try:
            digest = recorded_sha256(staged_record.read_bytes())
        except (OSError, ValueError):
            digest = None
        if digest and staged_primary.exists() and sha256_file(staged_primary) == digest:
            _replace_if_present(staged_primary, primary)
        if digest and primary.exists() and not staged_primary.exists() and sha256_file(primary) == digest:
            _replace_if_present(staged_record, record)
            outcome = "rolled forward"
        else:
            staged_record.unlink(missing_ok=True)
            outcome = "discarded"
    if staged_primary.exists():  # staged but never committed (or its commit was discarded above)
        staged_primary.unlink(missing_ok=True)
        outcome = outcome or "discarded"
    if outcome:
        _fsync_dir(primary.parent)
        log.warning("%s: an interrupted write was found and %s (%s)", primary, outcome,
                    "the new files are in place" if outcome == "rolled forward" else "the old files are kept")
    return outcome


def _replace_if_present(src: Path, dst: Path) -> None:
    with contextlib.suppress(FileNotFoundError):  # a reader recovering at the same time got there first
        os.replace(src, dst)


def write_pair(primary: str | os.PathLike, primary_data: bytes, record: str | os.PathLike, record_data: bytes,
               recorded_sha256: Callable[[bytes], str | None]) -> None:
    """Replace `primary` and `record` together (protocol in the module docstring).

    `record_data` must name sha256(primary_data) as `recorded_sha256` reads it.
    """
    primary, record = Path(primary), Path(record)
    if recorded_sha256(record_data) != hashlib.sha256(primary_data).hexdigest():
        raise ValueError(f"{record}: the record must name the sha256 of the data written to {primary}")
    recover_pair(primary, record, recorded_sha256)
    for p in (primary, record):
        remove_stale_temps(p)
    staged_primary = _stage(primary, primary_data)
    try:
        _stage(record, record_data)  # the commit point
    except BaseException:
        staged_primary.unlink(missing_ok=True)
        _untrack(staged_primary)
        raise
    _untrack(staged_primary)
    _untrack(staged_path(record))
    _fsync_dir(primary.parent)
    _replace_if_present(staged_primary, primary)
    _replace_if_present(staged_path(record), record)
    _fsync_dir(primary.parent)
