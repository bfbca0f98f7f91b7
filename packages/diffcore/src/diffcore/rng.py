"""Randomness as arguments: seeds and ``torch.Generator`` objects, never the global RNG.

Library functions take ``generator: torch.Generator | None`` (or a ``seed``) and draw from it; none calls
``torch.manual_seed``. Two helpers make that short to write:

    gen = make_generator(seed, device)            # a fresh generator on the device the noise lives on
    with seeded(seed):                              # module initialisation draws from generators of ``seed``
        model = DiT(config)                         # the global RNG is neither seeded nor drawn from
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

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


# Random ops that take ``generator=``: a Tensor method draws on its tensor's device, a factory on ``device=``.
_TENSOR_METHODS = {
    torch.Tensor.uniform_, torch.Tensor.normal_, torch.Tensor.bernoulli_, torch.Tensor.random_,
    torch.Tensor.exponential_, torch.Tensor.geometric_, torch.Tensor.cauchy_, torch.Tensor.log_normal_,
}  # fmt: skip
_FACTORIES = {torch.rand, torch.randn, torch.randint, torch.randperm, torch.normal}
_FROM_INPUT = {torch.bernoulli, torch.multinomial, torch.poisson}
_LIKE = {torch.rand_like: torch.rand, torch.randn_like: torch.randn}


class _GeneratorMode(TorchFunctionMode):
    """Gives every random op in its block ``generator=`` from one seed (one generator per device), so code that
    takes no generator (``nn.Module`` initialisation, ``nn.Dropout``) draws reproducibly without the global RNG."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed, self.generators = seed, {}

    def generator(self, device: torch.device | str | None) -> torch.Generator:
        dev = torch.device("cpu" if device is None else device)
        key = (
            str(dev)
            if dev.type != "cuda"
            else f"cuda:{dev.index if dev.index is not None else torch.cuda.current_device()}"
        )
        if key not in self.generators:
            self.generators[key] = make_generator(self.seed, key)
        return self.generators[key]

    def __torch_function__(
        self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = dict(kwargs or {})
        if func in _FACTORIES and kwargs.get("generator") is None:
            kwargs["generator"] = self.generator(kwargs.get("device"))
        elif func in _LIKE:
            x = args[0]
            kwargs.setdefault("dtype", x.dtype)
            kwargs.setdefault("device", x.device)
            kwargs.pop("memory_format", None)
            return _LIKE[func](x.shape, generator=self.generator(kwargs["device"]), **kwargs)
        elif func is F.dropout:
            return _dropout(self, *args, **kwargs)
        elif kwargs.get("generator") is None and (
            func in _TENSOR_METHODS or func in _FROM_INPUT or "generator" in kwargs
        ):  # ``nn.init`` functions arrive here whole, passing ``generator=None`` on
            tensor = args[0] if args else kwargs["tensor"]
            kwargs["generator"] = self.generator(tensor.device)
        return func(*args, **kwargs)


def _dropout(
    mode: _GeneratorMode, x: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False
):
    """``F.dropout`` with its mask drawn from the mode's generator (inverted dropout, as torch's)."""
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x.mul_(0.0) if inplace else x * 0.0
    keep = torch.empty_like(x).bernoulli_(1.0 - p, generator=mode.generator(x.device))
    return x.mul_(keep).div_(1.0 - p) if inplace else x * keep / (1.0 - p)


@contextmanager
def seeded(seed: int, devices: list[torch.device] | None = None) -> Iterator[None]:
    """Run a block whose random ops draw from generators seeded by ``seed``, not from the global RNG.

    For code that takes no generator: ``nn.Module`` initialisation (``nn.init``'s in-place draws, ``torch.randn``
    in a constructor) and ``nn.Dropout``. Every random op in the block without a ``generator=`` gets one (a
    ``torch.Generator`` per device, seeded with ``seed``: on the CPU the same stream ``torch.manual_seed(seed)``
    would give); ``F.dropout`` draws its mask from it. The global RNGs are not seeded; they are also saved and
    restored (``torch.random.fork_rng`` over the CPU and ``devices``, default every visible CUDA device), so an
    op this does not know of cannot change the caller's stream either.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: expected an integer >= 0, got {seed!r}")
    cuda = devices if devices is not None else list(range(torch.cuda.device_count()))
    with torch.random.fork_rng(devices=cuda), _GeneratorMode(seed):
        yield
