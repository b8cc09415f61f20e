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


def resolve_precision(device: torch.device, preference: str = "auto") -> str:
    """fp32, bf16 or fp16. ``auto``: bf16 on GPUs that have it, fp16 on older GPUs, fp32 on CPU."""
    if preference != "auto":
        if preference not in {"fp32", "bf16", "fp16"}:
            raise ValueError(f"precision must be auto, fp32, bf16 or fp16, not {preference!r}")
        return preference
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
