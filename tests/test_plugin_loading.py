"""Custom layers come only from code the user chose: --plugin MODULE, entry points, their own imports.
A module an engine sidecar names is never imported (a data file must not run code)."""
from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

from netdef.engine import EngineFileError, Plan, save_engine
from netdef.plugins import CustomLayerError, CustomLayerNotFound, load_plugins, registry
from netdef.runtime.session import InferenceSession

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = """
from pathlib import Path
from netdef.plugins import CustomLayer, register

Path("{marker}").write_text("imported")


@register
class Evil(CustomLayer):
    def reference(self, fields, x):
        return x
"""
RECORD = {"namespace": "netdef", "name": "Evil", "version": "1", "fields": {}, "module": "evil_netdef_plugin",
          "layer": "head.evil"}


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, Path, Path]:
    """An engine whose sidecar names `evil_netdef_plugin`, a module of that name in the cwd, its marker path."""
    marker = tmp_path / "marker.txt"
    (tmp_path / "evil_netdef_plugin.py").write_text(PLUGIN.format(marker=marker))
    engine = save_engine(Plan(b"not really a plan", {"plugins": [RECORD]}), tmp_path / "m.engine")
    assert ("netdef", "Evil", "1") not in registry
    yield tmp_path, engine, marker
    sys.modules.pop("evil_netdef_plugin", None)
    registry._layers.pop(("netdef", "Evil", "1"), None)


def _netdef(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))  # `python -m` also puts the cwd first on sys.path
    return subprocess.run([sys.executable, "-m", "netdef", *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_a_sidecar_never_imports_the_module_it_names(planted, monkeypatch):
    cwd, engine, marker = planted
    monkeypatch.chdir(cwd)
    monkeypatch.syspath_prepend(str(cwd))
    with pytest.raises(CustomLayerNotFound, match=r"netdef::Evil v1 \(layer 'head.evil'\).*pass --plugin MODULE"):
        InferenceSession.from_engine(engine)
    assert not marker.exists() and "evil_netdef_plugin" not in sys.modules

    done = _netdef(cwd, "infer", str(engine), "--image", "none.png")
    assert done.returncode == 1 and "pass --plugin MODULE" in done.stderr and "evil_netdef_plugin" in done.stderr
    assert not marker.exists()


def test_plugin_option_imports_what_the_user_names(planted):
    cwd, engine, marker = planted
    done = _netdef(cwd, "infer", str(engine), "--plugin", "evil_netdef_plugin", "--image", "none.png")
    assert marker.exists()  # the user asked for it: registered, and loading got past the plugins
    assert done.returncode == 1 and "could not deserialize" in done.stderr
    done = _netdef(cwd, "build", "resnet18", "--plugin", "no_such_netdef_plugin", "--weights", "w.h5",
                   "--out", "e.engine")
    assert done.returncode == 1 and "--plugin no_such_netdef_plugin: cannot import it" in done.stderr


def test_installed_entry_points_are_loaded(planted, monkeypatch):
    cwd, _, marker = planted
    monkeypatch.syspath_prepend(str(cwd))
    point = importlib.metadata.EntryPoint("evil", "evil_netdef_plugin", "netdef.plugins")
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group=None: [point] if group == "netdef.plugins" else [])
    assert load_plugins([]) == ["evil (evil_netdef_plugin)"]
    assert marker.exists() and ("netdef", "Evil", "1") in registry
    with pytest.raises(CustomLayerError, match="--plugin nope_netdef: cannot import it"):
        load_plugins(["nope_netdef"], entry_points=False)


def test_engine_with_plugins_needs_a_registrar(planted):
    _, engine, _ = planted
    from netdef.engine import load_engine

    with pytest.raises(EngineFileError, match=r"uses custom layers \(Evil\)"):
        load_engine(engine)
