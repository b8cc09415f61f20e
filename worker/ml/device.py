"""Device and precision decided in one place."""
from __future__ import annotations

import contextlib

import torch


def resolve_device(preference: str = "auto") -> torch.device:
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {preference!r} asked for but CUDA is not available")
    return device


INFERENCE_PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has bf16 instructions (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):  # torch.cpu's own CPUID checks
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            return True
    capability = str(torch.backends.cpu.get_cpu_capability()).upper()  # "AVX512" does not imply bf16
    return "AMX" in capability or "BF16" in capability


def resolve_precision(device: torch.device, preference: str = "auto", *, training: bool = False) -> str:
    """fp32, bf16, fp16 or int8. ``auto``: bf16 on GPUs that have it, fp16 on older GPUs; on CPU bf16 where
    the CPU has bf16 instructions, else fp32 (training on CPU: always fp32 unless asked).
    ``int8`` (dynamic quantization of the linear layers) is CPU
    inference only and always opt-in: it changes the predictions slightly."""
    if preference != "auto":
        if preference not in INFERENCE_PRECISIONS:
            allowed = ", ".join(INFERENCE_PRECISIONS)
            raise ValueError(f"precision must be one of {allowed}, not {preference!r}")
        if preference == "int8" and device.type != "cpu":
            raise ValueError("int8 dynamic quantization runs on the CPU only")
        return preference
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_fast_bf16() and not training else "fp32"


def autocast(device: torch.device, precision: str):
    if precision in ("fp32", "int8"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def one_cpu_thread():
    """Small CPU tensor work (a page's softmax over its logits) on the calling thread alone. torch's softmax
    splits even a 512 x 2 tensor over its intra-op threads, and waking them cost 40x the op itself (measured on
    2 cores: 7.8 ms against 0.2 ms of CPU a page). The thread count is the calling thread's (OpenMP's is per
    thread), restored on the way out; the results are the same bit for bit (each row is computed alike)."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def quantize_int8(model):
    """Dynamic int8 quantization of the Linear layers (weights int8, activations quantized per batch)."""
    return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
