"""Which inference engine a classifier runs on: torch (always installed) or OpenVINO (the optional extra
``bertjobs[openvino]``: openvino to run converted models, nncf to quantize them).

Nothing here imports OpenVINO or torch: asking whether OpenVINO is installed costs nothing, so a client that only
submits jobs (and a worker's parent process) can check the setting without loading either.
"""
from __future__ import annotations

import importlib.util

from worker.ml.errors import EngineUnavailable

ENGINES = ("torch", "openvino", "auto")
OPENVINO_PRECISIONS = ("auto", "fp32", "bf16", "int8")
INSTALL_HINT = "pip install 'bertjobs[openvino]'"


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules, or a broken parent package
        return False


def openvino_available() -> bool:
    return installed("openvino")


def require_openvino(what: str = "the openvino engine", *, quantizer: bool = False) -> None:
    """Raise EngineUnavailable (one line, with the install command) unless OpenVINO (and nncf) are installed."""
    missing = [m for m in (("openvino", "nncf") if quantizer else ("openvino",)) if not installed(m)]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise EngineUnavailable(f"{what} needs {' and '.join(missing)}, which {verb} not installed here: {INSTALL_HINT}")


def resolve_engine(preference: str, device: str = "auto", precision: str = "auto") -> str:
    """``torch`` or ``openvino`` for an engine, a device preference (``auto``, ``cpu``, ``cuda:N``) and a precision.
    ``auto``: OpenVINO when the classifier runs on the CPU at a precision OpenVINO runs and OpenVINO is installed
    (faster there at every precision, see bench/README.md), torch elsewhere. ``openvino`` always runs on the CPU,
    even on a host with a GPU."""
    if preference == "auto":
        if not openvino_available() or device.startswith("cuda") or precision not in OPENVINO_PRECISIONS:
            return "torch"
        from worker.ml.device import resolve_device

        return "openvino" if resolve_device(device).type == "cpu" else "torch"  # device auto: a GPU if there is one
    if preference not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {preference!r}")
    if preference == "openvino":
        if device.startswith("cuda"):
            raise ValueError(f"the openvino engine runs on the CPU, not on {device}")
        require_openvino()
    return preference
