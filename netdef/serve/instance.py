"""A netdef model in Triton's Python backend: its folder in the model repository, and the class each of its
instances runs in a stub process of its own.

Triton's Python backend starts one stub process per model instance and hands it the requests of each batch
through shared memory. The instance opens its own session there (`setup.factory(device, **setup.options)`,
e.g. TensorRT on its GPU with its own context and stream), joins the requests into one batch
(batching.BatchedInfer) and answers each with its own items. Instances therefore share neither a process nor
a GIL with each other or with `netdef serve`, and a batch crosses process boundaries once each way (Triton's
own shared memory), not through a second proxy.

    REPO/NAME/config.pbtxt   backend "python"; I/O, batching; one named instance group per instance; the setup
                             as the string parameter "netdef" (JSON: factory, options, devices, signature)
    REPO/NAME/1/model.py     puts the serving process's import path first, then imports TritonPythonModel
"""
from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from netdef.serve.batching import BatchedInfer
from netdef.serve.phases import Phases
from netdef.serve.repository import python_config_text
from netdef.serve.signature import ModelSignature, SignatureError

SETUP_KEY = "netdef"  # the config.pbtxt parameter holding an instance's setup


def group_name(model: str, index: int) -> str:
    return f"{model}_i{index}"


def write_model_folder(repository: str | os.PathLike, signature: ModelSignature, factory: str,
                       options: Mapping[str, Any], devices: Sequence[str | None], dynamic_batching: bool = True,
                       max_queue_delay_us: int = 0, import_path: Sequence[str] | None = None) -> Path:
    """REPO/NAME/config.pbtxt and REPO/NAME/1/model.py for `len(devices)` instances; returns the model folder.

    `factory` ("module:callable") and `options` (JSON-able) open an instance's session as
    factory(device, **options) in the instance's process, whose imports follow `import_path` (default: this
    process's sys.path) ahead of its own.
    """
    from netdef.atomic import write_text_atomic

    groups = [group_name(signature.name, i) for i in range(len(devices))]
    setup = {"factory": factory, "options": dict(options), "devices": dict(zip(groups, devices)),
             "signature": signature.as_dict()}
    folder = Path(repository) / signature.name
    text = python_config_text(signature, groups, dynamic_batching, max_queue_delay_us, {SETUP_KEY: json.dumps(setup)})
    write_text_atomic(folder / "config.pbtxt", text)
    paths = [os.path.abspath(p or os.curdir) for p in (sys.path if import_path is None else import_path)]
    write_text_atomic(folder / "1" / "model.py", model_file_text([p for p in dict.fromkeys(paths) if os.path.isdir(p)]))
    return folder


def model_file_text(import_path: Sequence[str]) -> str:
    return ('"""Written by `netdef serve`: Triton\'s Python backend runs this model\'s instances with netdef."""\n'
            "import sys\n\n"
            f"for _path in reversed({list(import_path)!r}):\n"
            "    if _path not in sys.path:\n"
            "        sys.path.insert(0, _path)\n\n"
            "from netdef.serve.instance import TritonPythonModel  # noqa: E402,F401\n")


def resolve(factory: str) -> Callable[..., Any]:
    """"package.module:attribute" -> the attribute."""
    module, _, attribute = factory.partition(":")
    if not module or not attribute:
        raise ValueError(f"session factory {factory!r}: expected 'module:callable'")
    return getattr(importlib.import_module(module), attribute)


def open_checked_session(setup: Mapping[str, Any], group: str) -> tuple[Any, ModelSignature, str | None]:
    """The session of the instance in `group`, checked against the model's signature."""
    signature = ModelSignature.from_dict(setup["signature"])
    device = setup["devices"][group]
    session = resolve(setup["factory"])(device, **setup["options"])
    try:
        mine = ModelSignature.from_specs(signature.name, session.inputs + session.outputs)
        where = f"{signature.name}: the instance on {device or 'cpu'} opened a session"
        if (mine.inputs, mine.outputs) != (signature.inputs, signature.outputs):
            raise SignatureError(f"{where} with inputs {_describe(mine.inputs)} and outputs {_describe(mine.outputs)}; "
                                 f"the model serves {_describe(signature.inputs)} and {_describe(signature.outputs)}")
        if mine.batch_limit < signature.batch_limit:
            raise SignatureError(f"{where} that takes batches up to {mine.batch_limit}; the model serves batches "
                                 f"up to {signature.batch_limit}")
    except BaseException:
        session.close()
        raise
    return session, signature, device


def _describe(tensors: Sequence[Any]) -> str:
    return "[" + ", ".join(f"{t.name} {t.dtype.name}{list(t.dims)}" for t in tensors) + "]"


class TritonPythonModel:
    """What Triton's Python backend runs in each instance's stub process (the name is the backend's)."""

    def initialize(self, args: Mapping[str, str]) -> None:
        import triton_python_backend_utils as pb  # only inside the backend's stub

        config = json.loads(args["model_config"])
        setup = json.loads(config["parameters"][SETUP_KEY]["string_value"])
        group = args["model_instance_name"].rsplit("_", 1)[0]  # Triton names instances GROUP_INDEX
        session, signature, self.device = open_checked_session(setup, group)
        self.pb, self.instance = pb, args["model_instance_name"]
        self.batched = BatchedInfer(session, signature, Phases.from_env())

    def execute(self, requests: Sequence[Any]) -> list[Any]:
        pb, batched, phases = self.pb, self.batched, self.batched.phases
        if phases:
            phases.start()
        try:
            # The stub copied each CPU input out of its shared memory when it loaded the request (pb_tensor.cc), so
            # a DLPack view of that memory saves no copy: measured no faster (serve_overhead_cpu.json dlpack_trial)
            feeds = [{n: pb.get_input_tensor_by_name(r, n).as_numpy() for n in batched.input_names} for r in requests]
            if phases:
                phases.mark("inputs")
            results = batched(feeds)
        except Exception as exc:  # every request of the batch gets the reason; the instance keeps serving
            error = pb.TritonError(f"{self.instance} on {self.device or 'cpu'}: {type(exc).__name__}: {exc}")
            return [pb.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses = []
        for request, outputs in zip(requests, results):
            names = request.requested_output_names() or batched.output_names
            responses.append(pb.InferenceResponse(
                output_tensors=[pb.Tensor(n, np.ascontiguousarray(outputs[n])) for n in names]))
        if phases:
            phases.mark("responses")
            phases.write(requests=len(requests), bytes=sum(a.nbytes for f in feeds for a in f.values()))
        return responses

    def finalize(self) -> None:
        self.batched.session.close()
