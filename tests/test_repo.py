"""Project rules that code review would otherwise have to remember."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("netdef", "networks", "weights_export")
REMOVED_APIS = re.compile(r"max_batch_size|build_cuda_engine|\.build_engine\(|get_binding_|binding_is_input|"
                          r"execute_async_v2|execute_async\(|max_workspace_size|add_fully_connected|IInt8|"
                          r"int8_calibrator")


def removed_api_in(path: Path, line: str) -> bool:
    return bool(REMOVED_APIS.search(line))


def python_files():
    for pkg in PACKAGES:
        yield from (ROOT / pkg).rglob("*.py")


def readme_test_command() -> str:
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Run the tests:")
    return next(line.strip() for line in lines[start + 1:] if line.strip())


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_test_command() in [line.strip() for line in ci]


def test_no_tensorrt_api_removed_in_10_or_11():
    hits = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
            for path in python_files() for n, line in enumerate(path.read_text().splitlines(), 1)
            if removed_api_in(path, line) and not line.strip().startswith("#")]
    assert hits == []


def test_triton_batch_limit_field_is_tritons_own():
    """netdef/serve names Triton's batch-limit config field once (repository.BATCH_LIMIT_FIELD); it is the name in
    Triton's model-config schema (ModelConfig field 4), not a TensorRT attribute."""
    from tritonclient.grpc import model_config_pb2

    from netdef.serve.repository import BATCH_LIMIT_FIELD

    assert model_config_pb2.ModelConfig.DESCRIPTOR.fields_by_number[4].name == BATCH_LIMIT_FIELD


def test_only_the_shim_imports_tensorrt():
    pattern = re.compile(r"^\s*(import tensorrt|from tensorrt|import tensorrt_rtx|from tensorrt_rtx)", re.M)
    importers = sorted(str(p.relative_to(ROOT)) for p in python_files() if pattern.search(p.read_text()))
    assert importers == [] or importers == ["netdef/trt.py"]
    assert "importlib.import_module(name)" in (ROOT / "netdef" / "trt.py").read_text()


def test_torch_load_always_weights_only():
    calls = [f"{p.relative_to(ROOT)}: {line.strip()}" for p in python_files()
             for line in p.read_text().splitlines() if "torch.load(" in line and "weights_only=True" not in line]
    assert calls == []


def test_netdef_info_reports_the_binding():
    out = subprocess.run([sys.executable, "-m", "netdef", "info"], capture_output=True, text=True, check=True).stdout
    assert "tensorrt_rtx 1.7.1.116" in out
    assert "strongly_typed" in out and "numpy" in out and "CUDA" in out


def test_only_the_shim_changes_a_layers_class():
    """Layers are downcast in one place (netdef.trt.downcast, dispatching on layer.type): a wrong class crashes."""
    pattern = re.compile(r"__class__\s*=[^=]")
    files = list(python_files()) + list((ROOT / "tests").rglob("*.py")) + list((ROOT / "bench").rglob("*.py"))
    hits = sorted(str(p.relative_to(ROOT)) for p in files if pattern.search(p.read_text()))
    assert hits == ["netdef/trt.py"]


def test_network_files_speak_netdef_not_raw_tensorrt():
    """networks/ builds with netdef modules and netdef.functional: no INetworkDefinition.add_* call."""
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in (ROOT / "networks").rglob("*.py")
            for n, line in enumerate(p.read_text().splitlines(), 1) if "definition.add_" in line]
    assert hits == []


def _imports(path: Path) -> set[str]:
    """Every module a file imports (at any depth: lazy imports count), read from its syntax tree."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_layers_point_down():
    """The runtime gets definitions from its caller (never the model zoo); the engine module gets plugin
    registration from its caller; netdef and weights_export never import networks."""
    def hits(paths, prefix):
        return sorted(f"{p.relative_to(ROOT)}: {name}" for p in paths for name in _imports(p)
                      if name == prefix or name.startswith(prefix + "."))

    library = [p for pkg in ("netdef", "weights_export") for p in (ROOT / pkg).rglob("*.py")
               if "commands" not in p.parts and p.name != "cli.py"]
    assert hits(library, "networks") == []
    assert hits([ROOT / "netdef" / "engine.py"], "netdef.plugins") == []
