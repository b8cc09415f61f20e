"""Device and precision resolution."""
from __future__ import annotations

import contextlib

import pytest

torch = pytest.importorskip("torch")

from worker.ml.device import autocast, resolve_device, resolve_precision  # noqa: E402


def test_cpu_is_resolved_as_asked():
    assert resolve_device("cpu") == torch.device("cpu")


def test_auto_picks_cuda_only_when_it_is_available():
    expected = "cuda" if torch.cuda.is_available() else "cpu"

    assert resolve_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a host without CUDA")
def test_asking_for_cuda_without_cuda_raises():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        resolve_device("cuda")


@pytest.mark.parametrize("has_bf16, inference", [(False, "fp32"), (True, "bf16")])
def test_auto_precision_on_cpu_is_bf16_only_where_the_cpu_has_it_and_fp32_for_training(monkeypatch, has_bf16,
                                                                                      inference):
    import worker.ml.device as device_module

    monkeypatch.setattr(device_module, "cpu_has_fast_bf16", lambda: has_bf16)
    assert resolve_precision(torch.device("cpu"), "auto") == inference
    assert resolve_precision(torch.device("cpu"), "auto", training=True) == "fp32"


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_an_explicit_precision_is_kept(precision):
    assert resolve_precision(torch.device("cpu"), precision) == precision


def test_an_unknown_precision_raises_value_error():
    with pytest.raises(ValueError, match="precision"):
        resolve_precision(torch.device("cpu"), "fp64")


def test_fp32_needs_no_autocast():
    assert isinstance(autocast(torch.device("cpu"), "fp32"), contextlib.nullcontext)


def test_bf16_autocast_on_cpu_computes_matmuls_in_bfloat16():
    a = torch.ones(2, 2)
    with autocast(torch.device("cpu"), "bf16"):
        assert (a @ a).dtype == torch.bfloat16
