"""The one device setting every package and command takes: ``"auto"``, ``"cpu"`` or ``"cuda"``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICES", "Device", "resolve_device"]

Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else the CPU; ``"cpu"``, ``"cuda"`` and ``"cuda:N"`` as given.

    Asking for CUDA on a machine without it is an error, not a silent fall-back to the CPU.
    """
    import torch  # here, so that configurations can import Device without loading torch

    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif isinstance(device, str) and (device in ("cpu", "cuda") or device.startswith("cuda:")):
        dev = torch.device(device)
    else:
        raise ValueError(f"device: expected one of {DEVICES} (or 'cuda:N'), got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device: 'cuda' was asked for but no CUDA device is available; use --device cpu or auto"
        )
    return dev
