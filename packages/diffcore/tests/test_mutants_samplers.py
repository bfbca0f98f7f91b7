"""Value checks of the sampler steps (``diffcore.sampling``) that the equation tests left open: each kills
mutants that ``scripts/mutate.py`` found surviving (issue #24; ``docs/verification.md`` lists what is left)."""

from __future__ import annotations

import torch
from diffcore.paths import schedules
from diffcore.paths.analytic import GaussianMixture
from diffcore.sampling import steps

F64 = torch.float64
GM = GaussianMixture(
    torch.tensor([0.4, 0.6]), torch.tensor([[-1.5, 0.5], [1.0, -1.0]]), torch.full((2, 2), 0.3)
)


def test_deterministic_ddim_draws_no_noise():
    """eta = 0 (and a step whose spread c is 0) leaves the generator untouched: deterministic DDIM draws
    nothing (a draw multiplied by 0 would give the same x but move the caller's random stream)."""
    sched = schedules.get("vp-cosine")
    den = GM.denoiser(sched, "eps")
    x = torch.randn(5, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    cur, nxt = steps.grid_points(sched, [0.7, 0.4])
    g = torch.Generator().manual_seed(1)
    before = g.get_state()
    out = steps.ddim_step(den.estimate(x, cur.t), cur, nxt, 0.0, g)
    assert torch.equal(g.get_state(), before)
    assert torch.equal(out, steps.ddim_step(den.estimate(x, cur.t), cur, nxt, 0.0, None))
    steps.ddim_step(den.estimate(x, cur.t), cur, nxt, 0.5, g)
    assert not torch.equal(g.get_state(), before)  # eta > 0 draws
