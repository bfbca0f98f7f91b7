"""GraphedCall: eager fallbacks everywhere, and on CUDA the same loss and gradients as the eager call."""

from __future__ import annotations

import pytest
import torch
from diffcore.kernels import GraphedCall
from torch import nn


def cuda(test):
    """A GPU test: marked ``gpu`` and skipped without CUDA."""
    return pytest.mark.gpu(
        pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")(test)
    )


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.Linear(16, 3))


def _call(module: nn.Module, x: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    y = module(x) * scale[:, None]
    return y, y.square().sum(-1)


def test_graphed_call_runs_eagerly_off_cuda_and_in_eval() -> None:
    net = _net()
    x, scale = torch.randn(4, 6), torch.rand(4)
    graphed = GraphedCall(_call)
    for mode in (net.train(), net.eval()):
        got = graphed(mode, x, scale)
        want = _call(mode, x, scale)
        assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    assert graphed.num_graphs == 0 and not GraphedCall.graphable(net.train(), (x, scale))


def test_graphed_call_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="max_graphs"):
        GraphedCall(_call, max_graphs=0)
    with pytest.raises(ValueError, match="warmup_iters"):
        GraphedCall(_call, warmup_iters=0)


def test_graphed_call_names_the_likely_cause_when_a_capture_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    # The capture itself needs a GPU; what is checked here is only how its failure is reported.
    def failing_capture(*args, **kwargs):
        raise RuntimeError(
            "CUDA error: operation would make the legacy stream depend on a capturing blocking stream"
        )

    monkeypatch.setattr(torch.cuda, "make_graphed_callables", failing_capture)
    with pytest.raises(RuntimeError, match="autograd graph of an earlier eager step") as info:
        GraphedCall(_call)._capture(_net(), (torch.randn(4, 6), torch.rand(4)))
    assert "legacy stream" in str(info.value.__cause__)


@cuda
def test_graphed_call_matches_eager_gradients_on_cuda() -> None:
    net = _net().cuda().train()
    graphed = GraphedCall(_call, max_graphs=1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for step in range(3):  # parameters change between replays: the graph reads them in place
        x, scale = torch.randn(8, 6, device="cuda"), torch.rand(8, device="cuda")
        with torch.no_grad():
            first = graphed(net, x, scale)[1].clone()  # a forward without gradient replays the same graph
        y, energy = graphed(net, x, scale)
        torch.testing.assert_close(first, energy)
        (energy.mean() + y.mean()).backward()
        grads = [p.grad.clone() for p in net.parameters()]
        net.zero_grad(set_to_none=True)
        y_e, energy_e = _call(net, x, scale)
        (energy_e.mean() + y_e.mean()).backward()
        torch.testing.assert_close(energy, energy_e)
        for a, p in zip(grads, net.parameters(), strict=True):
            torch.testing.assert_close(a, p.grad)
        opt.step()
        net.zero_grad(set_to_none=True)
        assert graphed.num_graphs == 1, step
    x, scale = torch.randn(8, 6, device="cuda"), torch.rand(8, device="cuda")
    graphed(net, x, scale)[1].sum().backward()
    with pytest.raises(RuntimeError, match="zero_grad"):  # accumulating through the graph would be wrong
        graphed(net, x, scale)
    net.zero_grad(set_to_none=True)
    with pytest.warns(UserWarning, match="max_graphs"):  # a second shape runs eagerly once the cache is full
        out = graphed(net, torch.randn(5, 6, device="cuda"), torch.rand(5, device="cuda"))
    assert out[0].shape == (5, 3) and graphed.num_graphs == 1
