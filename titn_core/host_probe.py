"""How fast this host trains the project's own workload, so hours measured here convert to the reference machine's.

Why not the matmul peak alone: across the 2-core EPYC hosts it tracked training speed (fastcnn trained 2.3x slower
on a host whose bf16 matmuls were 2.2x slower), but a 2-core AMX Xeon measured the reference machine's bf16 matmul
peak or up to about twice it and trained TITN-tiny at about half its speed, no faster than the EPYC hosts
(results/benchmarks/throughput-*-intel-xeon-amx_bf16.json): small matmuls, norms and elementwise work do not gain
from AMX. The probe times what the reference machine's benchmark records hold for it:
TITN-tiny, eager, one training step (forward, cross-entropy, backward, fused AdamW) at batch 128 on 32x32 RGB.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from .model import build_titn
from .profiles import model_preset

PROBE_MODEL, PROBE_BATCH, PROBE_IMAGE = "titn-tiny", 128, (3, 32, 32)


def titn_train_speed(precision: str, steps: int = 3) -> float:
    """TITN-tiny's eager training images/s on this CPU in "bf16" (autocast) or "fp32": best of `steps` timed steps
    after one warm-up (~5 s on 2 cores). Runs on its own copy of the RNG state, so a training run that calls it
    between epochs draws the same numbers as one that does not."""
    with torch.random.fork_rng(devices=[]):
        gen = torch.Generator().manual_seed(0)
        size = PROBE_IMAGE[1]
        model = build_titn(model_preset(PROBE_MODEL, size), size, PROBE_IMAGE[0], 10).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
        x, y = (
            torch.randn(PROBE_BATCH, *PROBE_IMAGE, generator=gen),
            torch.randint(0, 10, (PROBE_BATCH,), generator=gen),
        )

        def step() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        step()
        best = float("inf")
        for _ in range(steps):
            start = time.perf_counter()
            step()
            best = min(best, time.perf_counter() - start)
    return round(PROBE_BATCH / best, 1)
