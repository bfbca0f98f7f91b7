"""Randomness as arguments: seeds and ``torch.Generator`` objects, never the global RNG.

Library functions take ``generator: torch.Generator | None`` (or a ``seed``) and draw from it; none calls
``torch.manual_seed``. Two helpers make that short to write:

    gen = make_generator(seed, device)            # a fresh generator on the device the noise lives on
    with seeded(seed):                              # module initialisation, which only uses the global RNG
        model = DiT(config)                         # the global RNG state is restored on exit
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["make_generator", "seeded"]


def make_generator(seed: int | torch.Generator | None, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``; a generator passes through unchanged.

    ``None`` gives a generator seeded from the OS (non-reproducible), so callers never fall back to the
    global RNG. A generator on the wrong device type is refused: noise drawn on the CPU and moved would differ
    from noise drawn on the GPU.
    """
    dev = torch.device(device)
    if isinstance(seed, torch.Generator):
        if seed.device.type != dev.type:
            raise ValueError(f"generator: expected a generator on {dev.type}, got one on {seed.device.type}")
        return seed
    gen = torch.Generator(device=dev)
    if seed is None:
        gen.seed()
        return gen
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: expected an integer >= 0, a torch.Generator or None, got {seed!r}")
    return gen.manual_seed(seed)


@contextmanager
def seeded(seed: int, devices: list[torch.device] | None = None) -> Iterator[None]:
    """Run a block with the global RNGs seeded by ``seed``, restoring their previous state afterwards.

    For code that can only use the global RNG (``nn.Module`` initialisation, dropout inside a third-party
    model). The state of the CPU RNG and of ``devices`` (default: every visible CUDA device) is saved and
    restored, so the caller's randomness is untouched (``torch.random.fork_rng``).
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: expected an integer >= 0, got {seed!r}")
    cuda = devices if devices is not None else list(range(torch.cuda.device_count()))
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield
