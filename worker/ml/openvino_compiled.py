"""Compiled models kept beside the converted one: a worker pays OpenVINO's CPU compilation once per kind of host and
setting, not on every load, and loads a compiled model only after its sha256 checks out, like everything else.

    <artifact>.openvino/<kind>/compiled-<key>.blob    one JSON line (the key, the sha256 of the converted files it
                                                     was compiled from, the sha256 and length of the rest), then
                                                     the bytes of ``CompiledModel.export_model()``; one file,
                                                     written atomically

The CPU plugin exports the model after its CPU-specific transformations (which read the instruction sets and the
compile properties) and builds the kernels again on import; OpenVINO's own model cache keys a blob on the OpenVINO
build, the CPU's name and the compile properties. The key here holds those and more (the CPU's name alone, "AMD
EPYC", covers several instruction sets): the OpenVINO build, the CPU's name, architecture and capabilities as
OpenVINO reports them, its instruction-set flags, and the compile properties. Another host, OpenVINO or setting
looks for another file; a file under the right name whose record, converted model or bytes do not match is
compiled again and rewritten. OpenVINO's ``CACHE_DIR`` is not used: it would load its blobs unchecked.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
from pathlib import Path

from worker.ml.files import atomic_file

FORMAT = 1
CHUNK = 8 << 20  # read and hashed in pieces that stay in the CPU's cache between the two
ISA_PREFIXES = ("sse", "ssse", "avx", "amx", "fma", "f16c", "vnni", "asimd", "sve", "fp16", "bf16", "i8mm")


class CompiledModelProblem(Exception):
    """A compiled model that may not be used; the message says why, as a phrase (``is missing``)."""


@functools.cache
def core():
    """One OpenVINO Core per process: its CPU plugin starts once."""
    import openvino as ov

    return ov.Core()


def isa_flags() -> list[str]:
    """The CPU's instruction-set flags (x86: sse*, avx*, amx*, ...; arm: asimd, sve, ...), from /proc/cpuinfo."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return [platform.machine(), platform.processor()]
    for line in lines:
        if line.startswith(("flags", "Features")):
            return sorted({flag for flag in line.split(":", 1)[1].split() if flag.startswith(ISA_PREFIXES)})
    return [platform.machine()]


@functools.cache
def _host() -> dict:
    c = core()
    return {"device": "CPU", "name": c.get_property("CPU", "FULL_DEVICE_NAME"),
            "architecture": c.get_property("CPU", "DEVICE_ARCHITECTURE"),
            "capabilities": sorted(c.get_property("CPU", "OPTIMIZATION_CAPABILITIES")), "isa": isa_flags()}


def openvino_build() -> str:
    import openvino as ov

    return ov.get_version()


def cache_key(properties: dict) -> dict:
    """What the compiled code depends on, besides the model: the OpenVINO build, the CPU and the properties."""
    return {"openvino": openvino_build(), **_host(), "properties": {k: str(v) for k, v in sorted(properties.items())}}


def compiled_path(folder: Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(folder) / f"compiled-{digest}.blob"


def import_compiled(folder: Path, converted_sha256: str, properties: dict):
    """The compiled model saved in ``folder`` for this host, compiled from the converted model whose files hash to
    ``converted_sha256`` with ``properties``; CompiledModelProblem when there is none or it does not check out."""
    key = cache_key(properties)
    path = compiled_path(folder, key)
    try:
        with open(path, "rb") as fh:
            record = json.loads(fh.readline())
            if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("key") != key:
                raise CompiledModelProblem("was compiled for another host, OpenVINO or setting")
            if record.get("converted_sha256") != converted_sha256:
                raise CompiledModelProblem("was compiled from another converted model")
            blob, sha256 = _read_blob(fh, record.get("bytes"))
    except FileNotFoundError:
        raise CompiledModelProblem("is missing") from None
    except (OSError, ValueError) as exc:
        raise CompiledModelProblem(f"is unreadable ({type(exc).__name__})") from None
    if sha256 != record.get("sha256"):
        raise CompiledModelProblem("does not match its recorded sha256")
    try:
        return core().import_model(blob, "CPU", properties)
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError for any blob it cannot read
        raise CompiledModelProblem(f"cannot be imported ({' '.join(str(exc).split())[:200]})") from None


def _read_blob(fh, size) -> tuple[object, str]:
    """(the rest of ``fh`` in an OpenVINO tensor, its sha256), read once and hashed as it is read. The tensor's
    memory belongs to OpenVINO, so the imported model may keep pointing into it (it does: no second copy), and the
    bytes hashed are the bytes imported."""
    import openvino as ov

    if not isinstance(size, int) or size != os.fstat(fh.fileno()).st_size - fh.tell() or size <= 0:
        raise CompiledModelProblem("is not as long as its record says")
    blob = ov.Tensor(ov.Type.u8, ov.Shape([size]))
    view, digest, done = memoryview(blob.data), hashlib.sha256(), 0
    while done < size:
        n = fh.readinto(view[done:done + CHUNK])
        if not n:
            raise CompiledModelProblem("is not as long as its record says")
        digest.update(view[done:done + n])
        done += n
    return blob, digest.hexdigest()


def export_compiled(folder: Path, compiled, converted_sha256: str, properties: dict) -> Path:
    """Save ``compiled`` (compiled with ``properties`` from the converted model ``converted_sha256``) in ``folder``
    for the next load on this kind of host; atomically: a reader sees the old file, the new one or none."""
    key = cache_key(properties)
    data = compiled.export_model().getbuffer()
    record = {"format": FORMAT, "key": key, "converted_sha256": converted_sha256,
              "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    path = compiled_path(folder, key)
    with atomic_file(path) as fh:
        fh.write(json.dumps(record, sort_keys=True).encode() + b"\n")
        fh.write(data)
    return path
