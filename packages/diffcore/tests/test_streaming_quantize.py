"""Quantised streams through torchao (``StreamConfig.quantize``), on the CPU.

Reference: the same stream run in float on a copy of the network whose linear weights are the quantised values
computed here by hand (per output channel, symmetric: int8 ``s = max|w_row| / 127.5``, e4m3 ``s = max|w_row| /
448``) and, for ``int8``, whose linear inputs are quantised per token by hand (``s = max|x_token| / 127``). A
quantised stream must equal that reference to float rounding, and stay close to the float stream.
"""

from __future__ import annotations

import copy
import sys

import pytest
import torch
from diffcore.nn import DiT, DiTConfig
from diffcore.paths.denoiser import Denoiser
from diffcore.streaming import FrameStream, StreamConfig, quantize_weights
from torch import Tensor, nn

torchao = pytest.importorskip("torchao")

SHAPE = (2, 8, 8)
# Relative L2 distance of a quantised stream's frames from the float stream's. Rounding moves each weight by at
# most half a step: int8 s / 2 = max|w_row| / 255 (0.4% of the row's largest weight), e4m3 one part in 16 of the
# weight itself; int8 activations add max|x_token| / 254 per linear input. Through the 14 linears of this DiT
# and two stream steps these measured 0.9% (int8-weight), 1.4% (int8) and 6.1% (fp8-weight); the tolerances
# leave about 3x, and a quantiser off by a factor of 2 in its scale or not rounding per channel breaks them.
TOLERANCE = {"int8-weight": 0.03, "int8": 0.04, "fp8-weight": 0.15}
CODE_DTYPE = {"int8-weight": torch.int8, "int8": torch.int8, "fp8-weight": torch.float8_e4m3fn}


def _network() -> DiT:
    torch.manual_seed(0)  # test-local: module initialisation (overwritten below)
    net = DiT(DiTConfig(input_size=(8, 8), patch_size=2, in_channels=2, hidden_size=32, depth=2, num_heads=2,
                        num_classes=0))  # fmt: skip
    g = torch.Generator().manual_seed(0)
    for p in net.parameters():
        p.data = torch.randn(p.shape, generator=g) * 0.2
    return net.eval()


def _stream_frames(net: nn.Module, quantize: str = "none") -> Tensor:
    config = StreamConfig(t_index_list=(10, 30), num_steps=50, quantize=quantize)
    stream = FrameStream(Denoiser(net, "rectified-flow", "velocity"), config, SHAPE,
                         generator=torch.Generator().manual_seed(3))  # fmt: skip
    frames = torch.randn((5, 1, *SHAPE), generator=torch.Generator().manual_seed(1))
    return torch.stack([stream(f) for f in frames])


def _fake_quant_weight(w: Tensor, mode: str) -> Tensor:
    """Per-output-channel symmetric quantisation of ``w (out, in)``, back in float."""
    if mode == "fp8-weight":
        s = w.abs().amax(1, keepdim=True) / torch.finfo(torch.float8_e4m3fn).max
        return (w / s).to(torch.float8_e4m3fn).float() * s
    s = w.abs().amax(1, keepdim=True) / 127.5
    return (w / s).round().clamp(-128, 127) * s


def _fake_quant_tokens(module: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor]:
    """int8 activations per token (last axis), symmetric in [-127, 127]."""
    x = args[0]
    s = (x.abs().amax(-1, keepdim=True) / 127).clamp_min(1e-5)
    return ((x / s).round().clamp(-127, 127) * s,)


def _codes(weight: Tensor) -> Tensor:
    """The stored codes of a torchao weight (int8 or float8)."""
    weight = getattr(
        weight, "original_weight_tensor", weight
    )  # int8: the weight inside the activation wrapper
    return weight.qdata if hasattr(weight, "qdata") else weight.tensor_impl.get_plain()[0]


def _dequantized(weight: Tensor) -> Tensor:
    return getattr(weight, "original_weight_tensor", weight).dequantize()


@pytest.mark.parametrize("mode", ["int8-weight", "int8", "fp8-weight"])
def test_a_quantised_stream_equals_the_float_stream_on_the_quantised_values_and_stays_close(mode):
    net, original = _network(), _network()
    float_frames = _stream_frames(original)
    frames = _stream_frames(net, mode)  # quantises net in place
    linears = [(a, b) for a, b in zip(original.modules(), net.modules()) if isinstance(b, nn.Linear)]
    assert len(linears) == 14
    reference = copy.deepcopy(original)
    for (_, q), r in zip(linears, (m for m in reference.modules() if isinstance(m, nn.Linear))):
        assert isinstance(q.weight, torchao.utils.TorchAOBaseTensor)
        assert _codes(q.weight).dtype == CODE_DTYPE[mode]
        r.weight.data = _dequantized(q.weight)
        if mode == "int8":
            r.register_forward_pre_hook(_fake_quant_tokens)
    for a, q in linears:  # the stored values are the per-channel quantisation of the float weight
        w, expected = a.weight.detach(), _fake_quant_weight(a.weight.detach(), mode)
        step = w.abs().amax(1, keepdim=True) / 127.5
        tol = step * 1.001 if mode != "fp8-weight" else 0.0  # int8: a tie may round the other way
        assert ((_dequantized(q.weight) - expected).abs() <= tol).all()
    torch.testing.assert_close(frames, _stream_frames(reference), atol=1e-5, rtol=1e-5)
    distance = ((frames - float_frames).norm() / float_frames.norm()).item()
    assert 1e-4 < distance < TOLERANCE[mode]  # changed by quantisation, by no more than its rounding allows


def test_fp8_with_float8_activations_is_refused_on_the_cpu_in_one_line():
    net = _network()
    with pytest.raises(
        ValueError, match=r"quantize: 'fp8' runs float8 matmuls, which need a CUDA GPU"
    ) as info:
        FrameStream(Denoiser(net, "rectified-flow", "velocity"), StreamConfig(quantize="fp8"), SHAPE)
    assert "\n" not in str(info.value) and "network is on cpu" in str(info.value)
    assert all(type(m.weight) is nn.Parameter for m in net.modules() if isinstance(m, nn.Linear))


def test_a_network_without_linear_layers_is_refused():
    with pytest.raises(ValueError, match=r"quantize: expected a network with nn\.Linear layers"):
        quantize_weights(nn.Conv2d(2, 2, 3), "int8-weight")


def test_without_torchao_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao", None)  # an import of torchao now fails as if not installed
    monkeypatch.setitem(sys.modules, "torchao.quantization", None)
    with pytest.raises(ImportError, match=r"quantize: FP8 / INT8 weights need torchao.*diffcore\[quant\]"):
        quantize_weights(nn.Linear(2, 2), "int8")


def test_import_diffcore_does_not_import_torchao():
    """Every ``import torchao`` in diffcore's source sits inside a function (so ``import diffcore`` and
    ``import diffcore.streaming`` never load it), and there is at least one (the quantiser's)."""
    import ast
    from pathlib import Path

    import diffcore

    found = []
    for path in Path(diffcore.__file__).parent.rglob("*.py"):
        tree = ast.parse(path.read_text())
        nested = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for n in ast.walk(f)}  # fmt: skip
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n.split(".")[0] == "torchao" for n in names):
                found.append((path.name, node.lineno, id(node) in nested))
    assert found and all(inside for *_, inside in found), found
