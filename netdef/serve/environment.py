"""What the Triton server that PyTriton starts needs from this process's environment, set up before it starts.

- Triton's Python backend runs each model instance in a stub process that embeds this interpreter's
  version of libpython. The stub is linked against `libpython3.X.so.1.0` and finds it through the loader's
  search path; the one it must load is this interpreter's own (pyenv and similar installs keep it in
  sysconfig's LIBDIR, off that path, and a system libpython of another patch level fails at import time).
- The server binary and PyTriton's bundled libraries: a wheel unpacked with a plain unzip (as the GPU bundle
  does) loses the executable bits, and PyTriton looks for its libraries beside an installed package only.
- glibc's allocator: every request's tensors (0.6 MB for a ResNet-50 image) are allocated and freed by the
  server (gRPC buffers) and the stubs. By default blocks that size are mmapped, or the heap top is trimmed, and
  the pages come back from the kernel zeroed on each touch (~150 page faults per 0.6 MB; copying into fresh
  pages ran at ~2 GB/s instead of ~10). MALLOC_ARGS keeps blocks under 32 MiB in the heap and never trims it,
  so the server's and the stubs' memory is reused warm (it stays at its high-water mark).
The server inherits `os.environ` when PyTriton launches it, so setting it here is enough.
"""
from __future__ import annotations

import logging
import os
import stat
import sys
import sysconfig
from pathlib import Path

log = logging.getLogger("netdef.serve")


class ServeEnvironmentError(RuntimeError):
    pass


def python_library_dir() -> Path:
    """The folder holding this interpreter's shared libpython (what the backend stub must load)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        raise ServeEnvironmentError(
            f"{sys.executable} (Python {version}) is built without a shared libpython, and Triton's Python backend "
            f"stub loads libpython{version}.so.1.0 of this interpreter. Use a Python built with --enable-shared "
            "(pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install ...; distribution and conda Pythons are)")
    libdir = Path(sysconfig.get_config_var("LIBDIR") or "")
    soname = sysconfig.get_config_var("INSTSONAME") or f"libpython{version}.so.1.0"
    if not (libdir / soname).exists():
        raise ServeEnvironmentError(f"{sys.executable}: {soname} is not in sysconfig's LIBDIR {libdir}; Triton's "
                                    "Python backend stub needs it")
    return libdir


def pytriton_root() -> Path:
    try:
        import pytriton
    except ImportError as exc:
        raise ServeEnvironmentError("serving needs PyTriton: pip install 'netdef-trt[serve]' "
                                    "(nvidia-pytriton brings Triton Inference Server)") from exc
    return Path(pytriton.__file__).resolve().parent


def server_files(root: Path) -> list[Path]:
    """The executables PyTriton launches: tritonserver and the backend stub for this Python version."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "tritonserver" / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise ServeEnvironmentError(f"PyTriton at {root} has no Python backend stub for Python {version} ({stub})")
    return [root / "tritonserver" / "bin" / "tritonserver", stub]


def _make_executable(path: Path) -> bool:
    mode = path.stat().st_mode
    if mode & stat.S_IXUSR:
        return False
    try:
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    except OSError as exc:
        raise ServeEnvironmentError(f"{path} is not executable and cannot be made so ({exc}); "
                                    f"run: chmod +x {path}") from exc
    return True


def _prepend_library_path(folders: list[Path]) -> str:
    current = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    wanted = [str(f) for f in folders if f.is_dir()]
    value = os.pathsep.join(wanted + [p for p in current if p not in wanted])
    os.environ["LD_LIBRARY_PATH"] = value
    return value


# glibc's environment names for mallopt(M_MMAP_THRESHOLD / M_TRIM_THRESHOLD); its largest mmap threshold is 32 MiB
MALLOC_ARGS = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}


def prepare_server_environment() -> dict[str, str]:
    """Set LD_LIBRARY_PATH (this libpython first, then PyTriton's libraries), the server's executable bits and
    its allocator's thresholds (MALLOC_ARGS, unless already set).

    Idempotent; returns what it set, for the log.
    """
    root = pytriton_root()
    libpython = python_library_dir()
    fixed = [str(p) for p in server_files(root) if _make_executable(p)]
    if fixed:
        log.info("made executable (the wheel was unpacked without file modes): %s", ", ".join(fixed))
    path = _prepend_library_path([libpython, root.parent / "nvidia_pytriton.libs"])
    log.info("LD_LIBRARY_PATH for the Triton server: %s", path)
    malloc = {name: os.environ.setdefault(name, value) for name, value in MALLOC_ARGS.items()}
    return {"libpython_dir": str(libpython), "LD_LIBRARY_PATH": path, "pytriton": str(root), **malloc}
