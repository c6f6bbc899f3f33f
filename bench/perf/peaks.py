"""Peak matmul throughput: a table of known GPUs' dense bf16 tensor-core peaks, and one measured here.

Table values are the vendors' dense (no 2:4 sparsity) bf16 figures for the SXM/OAM parts: NVIDIA H100 SXM
and H200 989.4 TFLOP/s (H100 PCIe 756), A100 and A800 312, L40S 362, B200 2250. A part the table does not
know gives None; the measured peak (a large bf16 matmul on CUDA, fp32 on CPUs) is printed beside it.
"""
from __future__ import annotations

import time

import torch

BF16_DENSE_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.4), ("H200", 989.4), ("H800", 989.4), ("A100", 312.0),
                     ("A800", 312.0), ("L40S", 362.0), ("B200", 2250.0))


def table_peak(device: torch.device) -> tuple[float | None, str | None]:
    """(dense bf16 TFLOP/s from the table or None, the device's name)."""
    if device.type != "cuda":
        return None, None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_DENSE_TFLOPS if key in name), None), name


def matmul_peak(device: torch.device, n: int | None = None, repeats: int = 10) -> float:
    """TFLOP/s of an ``n x n`` by ``n x n`` matmul (bf16 on CUDA, n 8192; fp32 on CPUs, n 512), best of
    ``repeats`` after a warm-up."""
    cuda = device.type == "cuda"
    n = n or (8192 if cuda else 512)
    dtype = torch.bfloat16 if cuda else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for i in range(repeats + 1):
        if cuda:
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        a @ b
        if cuda:
            torch.cuda.synchronize(device)
        if i:
            best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e12
