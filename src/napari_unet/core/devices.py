"""Device choice (``auto`` = CUDA, then Apple MPS, then CPU) and the precision each device runs at."""

from __future__ import annotations

import torch


def choose_device(name: str = "auto") -> torch.device:
    """Turn a device name into a :class:`torch.device` that exists here.

    ``auto`` prefers CUDA, then Apple MPS, then the CPU.

    Raises
    ------
    ValueError
        For an unknown name or a device that is not available.

    """
    name = name.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("device 'mps' requested but Apple MPS is not available")
        return torch.device("mps")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        return device
    raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")


def native_mixed_precision(device: torch.device) -> bool:
    """Whether ``device`` computes bf16/fp16 natively (so autocast pays off).

    CUDA does; CPUs do with AVX512-BF16 or AMX (elsewhere bf16 is emulated
    and slower than float32).
    """
    if device.type == "cuda":
        return True
    if device.type == "cpu":
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)
    return False
