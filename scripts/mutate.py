"""Mutation testing for one module at a time: put a wrong but plausible formula in, run a named test selection,
and report which mutants the tests kill and which survive.

    uv run python scripts/mutate.py packages/diffcore/src/diffcore/paths/schedules.py \\
        -- packages/diffcore/tests/test_equations_paths.py packages/diffcore/tests/test_sde.py
    uv run python scripts/mutate.py MODULE --list                      # the mutants, without running anything
    uv run python scripts/mutate.py MODULE --only 12,40 -- TESTS       # rerun two mutants
    uv run python scripts/mutate.py MODULE --json out.json -- TESTS    # also write every result as JSON
    uv run python scripts/mutate.py MODULE --json out.json --resume out.json -- TESTS  # rerun the survivors

The suites of diffcore's numerical core (module, tests, survivors judged equivalent) are :data:`SUITES`;
``benchmarks/core/mutation.py SUITE`` runs one and writes ``benchmarks/results/mutation-SUITE-cpu.json``, and
``docs/verification.md`` has the scores.

Why our own runner and not mutmut 3 (checked against mutmut's ARCHITECTURE.md and ``__main__.py``): mutmut 3
copies the source tree into ``mutants/``, rewrites every function there into a trampoline that dispatches on
the ``MUTANT_UNDER_TEST`` environment variable, collects which tests call which function, and then, like this
runner, forks one child per mutant from a process that has already imported everything (so torch is imported
once, not once per mutant) and runs ``pytest.main`` on the covering tests in it. It would buy no speed here, and
it wants the package under ``mutants/src`` ahead of the workspace's editable install on ``sys.path``, a mutants
copy per run, and a dependency added to ``uv.lock`` (re-locking works again now that the workspace caps Python
below 3.15; not tried). This runner needs none of that: it imports the module once, then for each mutant
forks a child that swaps the changed functions' code objects in place (every live function object compiled
from the original code: methods, closures, lambdas held by registries, functions behind ``lru_cache`` or
``torch.no_grad`` wrappers) and runs ``pytest -x`` on the tests of the selection that call a changed function
(found once, by running the selection with a profiler hook that records which of the module's functions each
test calls, as mutmut 3 does). A mutant is

- ``killed`` when a test fails or cannot be collected (a test module's top level calls the mutant), or the
  run exceeds ``--timeout-factor`` times the unmutated run (``timeout``),
- ``survived`` when every selected test passes (``uncovered`` when no test of the selection calls the function;
  counted as survived),
- ``identical`` when it compiles to the same bytecode as the original (not counted),
- ``equivalent`` when it survives and its suite (:data:`SUITES`) lists it as equivalent, with the reason
  (not counted),
- ``error`` when it cannot be applied (reported, not counted).

Operators (AST, inside function and lambda bodies only, as mutmut 3 does; decorators, default values,
annotations, docstrings, ``raise`` statements and f-strings are left alone, as are lines marked
``# pragma: no mutate``): ``+ <-> -``, ``* <-> /``, ``** -> *``, ``// -> /``; a numeric constant ``c -> c + 1``;
``True <-> False``; ``and <-> or``; unary minus and ``not`` dropped; comparisons ``< <-> <=``,
``> <-> >=``, ``== <-> !=``, ``is <-> is not``, ``in <-> not in``; the names ``min <-> max``, ``minimum <->
maximum``, ``clamp_min <-> clamp_max``, ``sin <-> cos``, ``floor <-> ceil``. Score = killed / (killed +
survived), equivalent survivors left out (the JSON also gives the score counting them as survived). Runs one
mutant at a time with one torch thread by default (the machine is shared), the covering tests fastest first.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import gc
import hashlib
import importlib
import json
import os
import signal
import sys
import time
import types
from dataclasses import asdict, dataclass
from pathlib import Path

BINOP_SWAPS: dict[type, type] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.Pow: ast.Mult,
    ast.FloorDiv: ast.Div,
}
COMPARE_SWAPS: dict[type, type] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
NAME_SWAPS = {
    "min": "max",
    "max": "min",
    "minimum": "maximum",
    "maximum": "minimum",
    "clamp_min": "clamp_max",
    "clamp_max": "clamp_min",
    "sin": "cos",
    "cos": "sin",
    "floor": "ceil",
    "ceil": "floor",
}
SYMBOL = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**", ast.FloorDiv: "//",
    ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
    ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in", ast.And: "and", ast.Or: "or",
}  # fmt: skip


T = "packages/diffcore/tests/"
SRC = "packages/diffcore/src/diffcore/"
SAMPLER_TESTS = [
    T + "test_equations_guidance_sampling.py",
    T + "test_samplers_basic.py",
    T + "test_samplers_dpm.py",
    T + "test_samplers_unipc.py",
    T + "test_samplers_last_step.py",
    T + "test_diffusers_parity.py",
    T + "test_sampler_convergence.py",
]
SAMPLER_EQUIVALENT = {
    "dpm_solver": [
        (
            "mids = _intermediate_points(denoiser, pts, fractions) if order > 1 else [None] * (len(pts) - 1)",
            "- -> +",
            "order 1 only: two more None entries past the end; the loop reads mids[i] only for i < len(pts) - 1, "
            "where both lists hold None",
        ),
        *(
            (
                "return _single_step(1, denoiser, x, grid, cond, callback, 0.5, 2 / 3)",
                what,
                "DPM-Solver-1 has no intermediate point: _single_step reads r1, r2 only for order 2 and 3 "
                "(fractions {1: []}, mids all None), so these placeholder values are never read",
            )
            for what in ("0.5 -> 1.5", "/ -> *", "2 -> 3", "3 -> 4")
        ),
        *(
            (
                "return _single_step(2, denoiser, x, grid, cond, callback, r1, 2 / 3)",
                what,
                "DPM-Solver-2 never reads r2: fractions {2: [r1]}, and only _dpm_solver_3_step takes r2",
            )
            for what in ("/ -> *", "2 -> 3", "3 -> 4")
        ),
        (
            "if not math.isfinite(step_length(history[-k - 1], history[-k])):",
            "drop -",
            "the second minus (history[k] for history[-k]; dropping the first is killed): history holds n <= 3 step "
            "starts in decreasing t, and lambda is infinite only on a leading run of m of them (alpha = 0 only at "
            "the noise end; sigma = 0 only at t = 0, never a step start). The original stops at the first k with "
            "n - k - 1 < m; the pair (history[-k - 1], history[k]) is infinite iff n - k - 1 < m or k < m, which "
            "for n <= 3 first holds at the same k (m >= 2: k = 1 in both; m = 1: k = n - 1 in both); "
            "step_length of a finite point with itself is 0",
        ),
        (
            "w = multistep_weights(p, h, h_prev, solver_type, d2_weight) if p > 1 else [phi(0, h)]",
            "> -> >=",
            "p >= 1 always, and multistep_weights(1, ...) returns [phi(0, h)]: the same list",
        ),
        (
            "if prev is not None and math.isfinite(s.lam - prev[0].lam) and math.isfinite(h):",
            "- -> +",
            "lambda is never NaN and |lambda| is far below 1e308 where finite, so s.lam + prev.lam and "
            "s.lam - prev.lam are both finite exactly when both terms are (inf - inf and -inf + inf are NaN)",
        ),
    ],
    "unipc": [
        (
            "if abs(z) < 0.5:",
            "< -> <=",
            "both branches of phi_k are accurate to rounding at |z| = 0.5 itself",
        ),
        (
            "if abs(z) < 0.5:",
            "0.5 -> 1.5",
            "25 series terms up to |z| = 1.5 leave a remainder below 1.5^25 / 25! ~ 2e-16 of phi_k: rounding",
        ),
        (
            "return sum(z**j / math.factorial(j + k) for j in range(25))",
            "25 -> 26",
            "a 26th series term below |z| = 0.5 is < 0.5^25 / 25! ~ 2e-33: no bit changes",
        ),
        (
            "b = [math.factorial(i) * hh * phi_k(i + 1, hh) / b_h for i in range(1, order + 1)]",
            "1 -> 2",
            "range(1, order + 2) only appends b_{order+1}, which b[:n] (n <= order) never reads",
        ),
        (
            "used = earlier[: order - 1] if m_t is not None else earlier[: max(order - 1, 0)]",
            "is not -> is",
            "the two slices agree for every order >= 1, and both updates are only called with order >= 1",
        ),
        (
            "diffs = [(m - m0) / rk for (_, m), rk in zip(used, rks, strict=True)]",
            "True -> False",
            "rks is built from used one line above: the lengths always match",
        ),
        (
            "for ak, dk in zip(a, diffs, strict=True):",
            "True -> False",
            "unipc_weights returns one weight per rk and rks has one entry per difference: the lengths always match",
        ),
        (
            "if not math.isfinite(step_length(pts[i - k], pts[i - k + 1])):",
            "1 -> 2",
            "lambda is infinite only at the path's ends (t = 1 under zero terminal SNR, t = 0), and the interval "
            "(pts[i - k], pts[i - k + 2]) then is infinite exactly when (pts[i - k], pts[i - k + 1]) is, or the "
            "step onto t = 0 already returned 1",
        ),
        (
            "x_prev, prev_order = x, 0",
            "0 -> 1",
            "prev_order is read only by the corrector, from the second step on, after the first step has set it",
        ),
    ],
    "ode_solvers": [
        (
            "rtol, atol = max(rtol, resolution), max(atol, resolution)",
            "max -> min",
            "one tolerance lowered alone: the other, still raised to the dtype's resolution, keeps the bound "
            "atol + rtol |y| above the rounding noise (bfloat16 mixture: 15 -> 21 and 33 -> 45 evaluations, no "
            "failure); lowering both is caught (test_mutants_samplers.py, half-precision dopri5)",
        ),
        (
            'options={"step_t": t_eval[-1:]},',
            "drop -",
            "step_t only names times the adaptive steps must land on; landing on every output time instead of the "
            "last gives the same solution within the requested rtol/atol",
        ),
        (
            'options={"step_t": t_eval[-1:]},',
            "1 -> 2",
            "landing also on the second-to-last output time: the same solution within the requested rtol/atol",
        ),
    ],
    "euler": [
        (
            "if s_churn <= 0.0 or p.alpha == 0.0:",
            "<= -> <",
            "at S_churn = 0 the other branch gives min(0 / N, sqrt(2) - 1) = 0.0 or 0.0: the same gamma",
        ),
    ],
    "steps": [
        (
            "c = eta * posterior_std(cur, nxt) if eta > 0 else 0.0",
            "> -> >=",
            "at eta = 0 the other branch gives c = 0 * posterior_std = 0.0 too (the spread is finite for s < t)",
        ),
        (
            "if abs(h) < 0.1 * (k + 1):",
            "< -> <=",
            "both branches are accurate to rounding at |h| = 0.1 (k + 1) itself (test_mutants_samplers.py, phi)",
        ),
        (
            "if abs(h) < 0.1 * (k + 1):",
            "1 -> 2",
            "the series up to |h| = 0.1 (k + 2) is still accurate to rounding (4e-16, same test)",
        ),
        (
            "return sum((-1) ** j * h ** (k + 1 + j) / math.factorial(k + 1 + j) for j in range(20))",
            "20 -> 21",
            "a 21st series term below |h| = 0.4 is < 1e-27 of the leading one: no bit changes",
        ),
    ],
}
SUITES: dict[str, dict] = {
    # name: the module, the test selection (the equation tests and the module's own), and the surviving
    # mutants judged equivalent: (stripped source line, mutation, why). benchmarks/core/mutation.py runs one
    # and writes benchmarks/results/mutation-<name>-cpu.json; docs/verification.md has the table.
    "paths.schedules": {
        "module": SRC + "paths/schedules.py",
        "tests": [
            T + "test_mutants_schedules.py",
            T + "test_equations_paths.py",
            T + "test_equations_predictions.py",
            T + "test_equations_sde.py",
            T + "test_sde.py",
            T + "test_diffusers_parity.py",
            T + "test_refusals.py",
            T + "test_properties.py",
            "--deselect",
            T + "test_refusals.py::test_the_end_check_reads_nothing_on_the_meta_device",  # 20 s, no schedule
        ],
        "equivalent": [
            (
                "return 2 * (base.d_alpha(x) / base.alpha(x) - base.d_sigma(x) / base.sigma(x))",
                "2 -> 3",
                "d_warp's end-point fallback divides two values of this function: the factor cancels",
            ),
            (
                "return 2 * (base.d_alpha(x) / base.alpha(x) - base.d_sigma(x) / base.sigma(x))",
                "- -> +",
                "the fallback runs only 1e-6 from an end where one term is ~1e6 times the other (sigma'/sigma ~ "
                "1/(2t) at t = 0, alpha'/alpha ~ 1/(1 - t) at t = 1): flipping the small one's sign moves the "
                "ratio by ~1e-7 relative, below the 1e-6-inside approximation of the limit itself",
            ),
            (
                "bad = t[~inside].reshape(-1)[:3].tolist()",
                "3 -> 4",
                "how many offending values the error message quotes",
            ),
            (
                "for _ in range(64):",
                "64 -> 65",
                "64 halvings of [0, 1] already reach float64 resolution; a 65th changes no bit",
            ),
            (
                "above = self.log_snr(mid) > lam  # log_snr decreases in t: the root lies to the right",
                "> -> >=",
                "differs only where log_snr(mid) == lam exactly, and then either half still holds the root",
            ),
            (
                "return (torch.acos((alpha * f0).clamp(-1, 1)) * 2 / math.pi * (1 + self.s) - self.s).clamp(0, 1)",
                "1 -> 2",
                "clamp(-1, 1) -> (-2, 1) or (-1, 2), clamp(0, 1) -> (0, 2): alpha f0 lies in [0, f0] and the result "
                "never exceeds 1 (checked for 12 offsets s, float32 and float64, lambda down to -inf)",
            ),
            (
                "log_abar = torch.cumsum(torch.log1p(-betas.clamp(max=1 - 1e-20)), 0)",
                "1 -> 2",
                "1 - 1e-20 rounds to 1.0 in float64 and betas <= 1 is checked just above: the clamp is a no-op",
            ),
            (
                "pos = t.clamp(0, 1) * self.num_steps",
                "1 -> 2",
                "t reaches _locate through check_time (host times in [0, 1]); only unchecked device tensors differ",
            ),
            ("return _as_tensor(t) * 1", "* -> /", "x * 1 == x / 1 for every float"),
            (
                "a, b = (x - h).clamp(0, 1), (x + h).clamp(0, 1)",
                "1 -> 2",
                "(x - h).clamp(0, 1) -> (0, 2): x <= 1, so x - h < 1 and the upper bound never binds (the same change "
                "on x + h is killed)",
            ),
        ],
    },
    "paths.predictions": {
        "module": SRC + "paths/predictions.py",
        "tests": [
            T + "test_mutants_predictions.py",
            T + "test_equations_predictions.py",
            T + "test_predictions.py",
            T + "test_properties.py",
        ],
        "equivalent": [],
    },
    "training.weighting": {
        "module": SRC + "training/weighting.py",
        "tests": [T + "test_equations_training.py", T + "test_objectives.py"],
        "equivalent": [],
    },
    "training.objectives": {
        "module": SRC + "training/objectives.py",
        "tests": [T + "test_equations_training.py", T + "test_objectives.py"],
        "equivalent": [
            (
                "drop = torch.rand(b, device=device, generator=generator) < p",
                "< -> <=",
                "differs only when a uniform draw equals p exactly (probability 2^-24 per sample in float32)",
            ),
            (
                "null_value = null_value.expand_as(value) if null_value.shape != value.shape else null_value",
                "!= -> ==",
                "torch.where broadcasts the null value to the condition's shape anyway: same values",
            ),
            (
                "return null.to(device=value.device, dtype=value.dtype, non_blocking=True)",
                "True -> False",
                "non_blocking only changes when a host-to-device copy may overlap; the values are the same",
            ),
            (
                "w_eps = (-0.5 * d_log_snr).nan_to_num(0.0, posinf=0.0, neginf=0.0)",
                "0.0 -> 1.0",
                "the rate is infinite or NaN only where alpha or sigma is 0, where log_snr is +-inf and "
                "log_w_x0 = log(w_eps) + log_snr is +-inf whatever finite value replaced it",
            ),
            (
                "return ((out - velocity) ** 2).reshape(x_t.shape[0], -1).mean(1).mean()",
                "0 -> 1",
                "reshape(shape[1], -1) also cuts the batch into equal rows: the mean of equal-size row means is "
                "the overall mean",
            ),
            (
                "sampler = timesteps_mod.Discrete(num_scales) if num_scales > 1 else timesteps_mod.Constant(1.0)",
                "> -> >=",
                "for num_scales = 1, Discrete(1) draws t = 1 / 1 = 1.0 every time, as Constant(1.0) does",
            ),
        ],
    },
    "guidance.wrappers": {
        "module": SRC + "guidance/wrappers.py",
        "tests": [
            T + "test_mutants_guidance.py",
            T + "test_equations_guidance_sampling.py",
            T + "test_guidance.py",
            T + "test_refusals.py",
            "--deselect",
            T + "test_refusals.py::test_the_end_check_reads_nothing_on_the_meta_device",
        ],
        "equivalent": [
            (
                "if self.rescale > 0:",
                "> -> >=",
                "rescale = 0 through the rescale branch: x0_new = 0 * x0_g * ratio + 1 * x0_g = x0_g exactly (ratio is "
                "finite: its denominator is clamped), and eps_g gets alpha * 0 / sigma: the same values, more work",
            ),
        ],
    },
    "guidance.discrete": {
        "module": SRC + "guidance/discrete.py",
        "tests": [T + "test_mutants_guidance.py"],
        "equivalent": [],
    },
    **{
        f"sampling.{name}": {
            "module": SRC + f"sampling/{name}.py",
            "tests": [T + "test_mutants_samplers.py", *SAMPLER_TESTS],
            "equivalent": SAMPLER_EQUIVALENT.get(name, []),
        }
        for name in ("steps", "ddim", "ddpm", "euler", "dpm_solver", "unipc", "ode_solvers", "sde_solvers")
    },
}


def run_suite(name: str, *, resume: dict | None = None, only: list[int] | None = None) -> dict:
    """Run the suite ``name`` of :data:`SUITES` (one torch thread); return :func:`run`'s result."""
    suite = SUITES[name]
    tests = [t for t in suite["tests"] if not t.endswith(".py") or Path(t).exists()]
    result = run(
        Path(suite["module"]),
        tests,
        only=only,
        equivalent=tuple(tuple(e) for e in suite["equivalent"]),
        resume=resume,
    )
    return {"suite": name, **result}


def relabel_suite(name: str, result: dict) -> dict:
    """:func:`relabel` ``result`` with the equivalent survivors listed now in the suite ``name``."""
    return {"suite": name, **relabel(result, tuple(tuple(e) for e in SUITES[name]["equivalent"]))}


@dataclass
class Site:
    """One mutation: the ``index``-th node of the candidate walk, what is done to it, and where."""

    index: int
    kind: str
    line: int
    what: str


@dataclass
class Result:
    id: int
    line: int
    what: str
    status: str
    seconds: float
    detail: str = ""


class _Collector(ast.NodeVisitor):
    """Candidate nodes in a deterministic order; ``sites`` pairs each with its mutation."""

    def __init__(self, skip_lines: set[int]) -> None:
        self.in_function = False
        self.skip_lines = skip_lines
        self.nodes: list[ast.AST] = []
        self.sites: list[Site] = []

    def _add(self, node: ast.AST, kind: str, what: str) -> None:
        self.sites.append(Site(len(self.nodes), kind, node.lineno, what))
        self.nodes.append(node)

    def _body(self, stmts: list[ast.stmt]) -> None:
        before, self.in_function = self.in_function, True
        for i, stmt in enumerate(stmts):
            is_docstring = (
                i == 0
                and isinstance(stmt, ast.Expr)
                and isinstance(stmt.value, ast.Constant)
                and isinstance(stmt.value.value, str)
            )
            if not is_docstring:
                self.visit(stmt)
        self.in_function = before

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:  # decorators, defaults, annotations: no
        self._body(node.body)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        before, self.in_function = self.in_function, True
        self.visit(node.body)
        self.in_function = before

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for stmt in node.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.visit(stmt)

    def visit_Raise(self, node: ast.Raise) -> None:
        return

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        return

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)

    def generic_visit(self, node: ast.AST) -> None:
        if self.in_function and getattr(node, "lineno", None) not in self.skip_lines:
            self._mutations(node)
        super().generic_visit(node)

    def _mutations(self, node: ast.AST) -> None:
        if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in BINOP_SWAPS:
            new = BINOP_SWAPS[type(node.op)]
            self._add(node, "binop", f"{SYMBOL[type(node.op)]} -> {SYMBOL[new]}")
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
            self._add(node, "unary", f"drop {'-' if isinstance(node.op, ast.USub) else 'not'}")
        elif isinstance(node, ast.BoolOp):
            self._add(
                node,
                "boolop",
                f"{SYMBOL[type(node.op)]} -> {'or' if isinstance(node.op, ast.And) else 'and'}",
            )
        elif isinstance(node, ast.Compare):
            for j, op in enumerate(node.ops):
                if type(op) in COMPARE_SWAPS:
                    self.sites.append(
                        Site(len(self.nodes), f"compare:{j}", node.lineno,
                             f"{SYMBOL[type(op)]} -> {SYMBOL[COMPARE_SWAPS[type(op)]]}")
                    )  # fmt: skip
            self.nodes.append(node)
        elif isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool):
                self._add(node, "const", f"{v} -> {not v}")
            elif isinstance(v, (int, float)):
                self._add(node, "const", f"{v!r} -> {v + 1!r}")
        elif isinstance(node, ast.Name) and node.id in NAME_SWAPS and isinstance(node.ctx, ast.Load):
            self._add(node, "name", f"{node.id} -> {NAME_SWAPS[node.id]}")
        elif isinstance(node, ast.Attribute) and node.attr in NAME_SWAPS and isinstance(node.ctx, ast.Load):
            self._add(node, "attr", f".{node.attr} -> .{NAME_SWAPS[node.attr]}")


def _collect(tree: ast.AST, source: str) -> _Collector:
    skip = {i for i, line in enumerate(source.splitlines(), 1) if "pragma: no mutate" in line}
    c = _Collector(skip)
    c.visit(tree)
    return c


class _Replace(ast.NodeTransformer):
    def __init__(self, target: ast.AST, replacement: ast.AST) -> None:
        self.target, self.replacement = target, replacement

    def visit(self, node: ast.AST) -> ast.AST:
        if node is self.target:
            return self.replacement
        return super().visit(node)


def _apply(node: ast.AST, kind: str) -> ast.AST | None:
    """The mutated copy of ``node`` (None: the node is replaced by its operand, returned instead)."""
    new = copy.copy(node)
    if kind == "binop":
        new.op = BINOP_SWAPS[type(node.op)]()
    elif kind == "unary":
        return node.operand
    elif kind == "boolop":
        new.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif kind.startswith("compare:"):
        j = int(kind.split(":")[1])
        new.ops = list(node.ops)
        new.ops[j] = COMPARE_SWAPS[type(node.ops[j])]()
    elif kind == "const":
        new.value = (not node.value) if isinstance(node.value, bool) else node.value + 1
    elif kind == "name":
        new.id = NAME_SWAPS[node.id]
    elif kind == "attr":
        new.attr = NAME_SWAPS[node.attr]
    return new


def mutant_code(source: str, filename: str, site: Site) -> types.CodeType:
    tree = ast.parse(source)
    node = _collect(tree, source).nodes[site.index]
    tree = _Replace(node, _apply(node, site.kind)).visit(tree)
    ast.fix_missing_locations(tree)
    return compile(tree, filename, "exec", dont_inherit=True)


def _function_codes(code: types.CodeType) -> list[types.CodeType]:
    """Every code object nested in ``code`` (functions, lambdas, class bodies, comprehensions), depth first."""
    out = []
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            out.append(const)
            out.extend(_function_codes(const))
    return out


def changed_functions(
    original: types.CodeType, mutated: types.CodeType
) -> list[tuple[types.CodeType, types.CodeType]]:
    """``(original, mutated)`` pairs of the code objects that differ (mutations never add or drop a function, so
    the nested code objects pair up in order)."""
    a, b = _function_codes(original), _function_codes(mutated)
    if len(a) != len(b):
        raise RuntimeError("the mutant changed the number of code objects")
    return [(x, y) for x, y in zip(a, b) if x != y]


def swap_in(pairs: list[tuple[types.CodeType, types.CodeType]], filename: str) -> int:
    """Give every live function compiled from one of the original code objects its mutated code; return how many."""
    by_code = dict(pairs)
    swapped = 0
    for obj in gc.get_objects():
        if type(obj) is types.FunctionType and obj.__code__.co_filename == filename:
            new = by_code.get(obj.__code__)
            if new is not None:
                obj.__code__ = new
                swapped += 1
    return swapped


class _CallMap:
    """A pytest plugin that records, for each test, which functions of ``filename`` it calls (setup included)."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.calls: dict[str, set[tuple[str, int]]] = {}
        self.seconds: dict[str, float] = {}
        self._current: set[tuple[str, int]] | None = None
        self._start = 0.0

    def _profile(self, frame, event, arg) -> None:
        if event == "call" and self._current is not None and frame.f_code.co_filename == self.filename:
            self._current.add((frame.f_code.co_name, frame.f_code.co_firstlineno))

    def pytest_runtest_protocol(self, item, nextitem):
        import threading

        self._current = self.calls.setdefault(item.nodeid, set())
        self._start = time.perf_counter()
        sys.setprofile(self._profile)
        threading.setprofile(self._profile)

    def pytest_runtest_logfinish(self, nodeid, location):
        import threading

        sys.setprofile(None)
        threading.setprofile(None)
        self._current = None
        self.seconds[nodeid] = time.perf_counter() - self._start


def call_map(
    filename: str, pytest_args: list[str], threads: int, out: Path
) -> dict[str, set[tuple[str, int]]]:
    """Run the unmutated selection once in a child, recording the module's functions each test calls; the
    tests come fastest first, so that a mutant run (``pytest -x`` on them, in that order) fails early."""
    pid = os.fork()
    if pid == 0:
        status = 3
        try:
            import pytest
            import torch

            torch.set_num_threads(threads)
            plugin = _CallMap(filename)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            status = int(pytest.main([*pytest_args, "-q", "-p", "no:cacheprovider"], plugins=[plugin]))
            fastest_first = sorted(plugin.calls, key=lambda k: plugin.seconds.get(k, 0.0))
            out.write_text(json.dumps({k: sorted(plugin.calls[k]) for k in fastest_first}))
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("the unmutated module fails the selection; fix that first")
    return {k: {tuple(f) for f in v} for k, v in json.loads(out.read_text()).items()}  # fastest test first


def preload(pytest_args: list[str]) -> None:
    """Collect the selection once in this process, so that every library the tests and their conftest import
    (accelerate, diffusers, scipy, ...) is imported before forking; then forget the test modules and conftests
    themselves, so that each child imports them afresh (module-level code runs against the mutant)."""
    import pytest

    before = set(sys.modules)
    saved = os.dup(1), os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        pytest.main([*pytest_args, "--collect-only", "-q", "-p", "no:cacheprovider"])
    finally:
        sys.stdout.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
    for name in set(sys.modules) - before:
        file = getattr(sys.modules[name], "__file__", None) or ""
        if "/tests/" in file or name.split(".")[-1] == "conftest" or Path(file).name.startswith("test_"):
            del sys.modules[name]


NO_LIVE_FUNCTION = 99


def _run_child(pairs, filename: str, pytest_args: list[str], threads: int) -> None:
    """In the forked child: swap the code in, run pytest quietly, exit with its status (never returns)."""
    status = 3
    try:
        if pairs and swap_in(pairs, filename) == 0:
            os._exit(NO_LIVE_FUNCTION)
        import pytest
        import torch

        torch.set_num_threads(threads)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        status = int(pytest.main([*pytest_args, "-x", "-q", "-p", "no:cacheprovider"]))
    finally:
        os._exit(status)


def run_one(pairs, filename: str, pytest_args: list[str], timeout: float, threads: int) -> tuple[str, float]:
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        _run_child(pairs, filename, pytest_args, threads)
    deadline = start + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.perf_counter() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout", time.perf_counter() - start
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    # pytest: 1 tests failed, 2 collection errors (a test module's top level calls the mutant), 4 "found no
    # collectors" after such an error: each is the mutant breaking the tests
    return {
        0: "survived",
        1: "killed",
        2: "killed",
        4: "killed",
        NO_LIVE_FUNCTION: "error: no live function",
    }.get(code, f"error: exit {code}"), elapsed


def _module_name(path: Path) -> str:
    parts = path.resolve().with_suffix("").parts
    if "src" not in parts:
        raise SystemExit(f"module: expected a file under a src/ folder, got {path}")
    src = len(parts) - 1 - parts[::-1].index("src")
    return ".".join(parts[src + 1 :])


def run(
    module: Path,
    tests: list[str],
    *,
    only: list[int] | None = None,
    timeout_factor: float = 5.0,
    threads: int = 1,
    preload_modules: tuple[str, ...] = (),
    equivalent: tuple[tuple[str, str, str], ...] = (),
    resume: dict | None = None,
) -> dict:
    """Run every mutant of ``module`` (or those in ``only``) against ``tests``; return the results and their
    summary. ``equivalent``: ``(source line, mutation, reason)`` of survivors judged equivalent (matched on the
    stripped line's text and the mutation's description, so a changed line falls back to ``survived``).
    ``resume``: an earlier result of the same source (same sha256) whose killed and identical mutants are kept
    as they are (tests only added since: a killed mutant stays killed); the others are run again."""
    path = module.resolve()
    source = path.read_text()
    digest = hashlib.sha256(source.encode()).hexdigest()
    kept: dict[int, dict] = {}
    if resume is not None:
        if resume.get("source_sha256") != digest:
            raise SystemExit(f"--resume: the result is of another version of {path.name}; run it all again")
        kept = {r["id"]: r for r in resume["results"] if r["status"] in ("killed", "timeout", "identical")}
    lines = source.splitlines()
    sites = _collect(ast.parse(source), source).sites
    mod = importlib.import_module(_module_name(path))
    filename = mod.__file__
    for name in preload_modules:
        importlib.import_module(name)
    original = compile(source, filename, "exec", dont_inherit=True)
    preload(tests)

    start = time.perf_counter()
    calls = call_map(filename, tests, threads, Path(f"/tmp/mutate-calls-{os.getpid()}.json"))
    base = time.perf_counter() - start
    print(
        f"{path.name}: {len(sites)} mutants; the unmutated selection ({len(calls)} tests) passes in {base:.1f} s"
        " (traced)",
        flush=True,
    )

    reasons = {(text, what): why for text, what, why in equivalent}
    chosen = only or range(len(sites))
    results: list[Result] = []
    for i in chosen:
        s = sites[i]
        if i in kept:
            results.append(Result(**kept[i]))
            continue
        try:
            pairs = changed_functions(original, mutant_code(source, filename, s))
        except (RuntimeError, SyntaxError, ValueError) as exc:
            results.append(Result(i, s.line, s.what, "error", 0.0, str(exc)))
            continue
        if not pairs:
            results.append(Result(i, s.line, s.what, "identical", 0.0))
            continue
        changed = {(c.co_name, c.co_firstlineno) for c, _ in pairs}
        selected = [node for node, funcs in calls.items() if funcs & changed]
        if selected:
            status, secs = run_one(pairs, filename, selected, timeout_factor * base + 10, threads)
        else:
            status, secs = "uncovered", 0.0
        detail = f"{len(selected)} tests"
        text = lines[s.line - 1].strip()
        if status in ("survived", "uncovered") and (text, s.what) in reasons:
            status, detail = "equivalent", reasons[text, s.what]
        results.append(Result(i, s.line, s.what, status, secs, detail))
        if status in ("survived", "uncovered") or status.startswith("error"):
            print(f"  {status:9s} #{i:<4d} L{s.line:<4d} {s.what:24s} | {text}", flush=True)
        if len(results) % 25 == 0:
            print(f"  ... {len(results)} of {len(chosen)} done", flush=True)

    rel = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
    return _report(
        {"module": str(rel), "source_sha256": digest, "tests": tests, "unmutated_seconds": round(base, 1)},
        results,
        lines,
    )


def _report(head: dict, results: list[Result], lines: list[str]) -> dict:
    """``head`` plus the summary, the survivors (with their source line) and every result."""
    count = {st: sum(r.status == st for r in results) for st in sorted({r.status for r in results})}
    killed = count.get("killed", 0) + count.get("timeout", 0)
    survived = count.get("survived", 0) + count.get("uncovered", 0)
    equiv = count.get("equivalent", 0)
    summary = {
        "mutants": len(results),
        "killed": killed,
        "survived": survived,
        "equivalent": equiv,
        "identical": count.get("identical", 0),
        "errors": sum(n for st, n in count.items() if st.startswith("error")),
        "score": round(killed / max(killed + survived, 1), 4),
        "score_counting_equivalent_as_survived": round(killed / max(killed + survived + equiv, 1), 4),
    }
    print(
        f"{head['module']}: {killed} killed, {survived} survived, {equiv} equivalent ({count}); "
        f"score {100 * summary['score']:.1f}%"
    )
    return {
        **head,
        "summary": summary,
        "survivors": [
            {"id": r.id, "line": r.line, "what": r.what, "status": r.status, "source": lines[r.line - 1].strip(),
             **({"reason": r.detail} if r.status == "equivalent" else {})}
            for r in results
            if r.status in ("survived", "uncovered", "equivalent")
        ],
        "results": [asdict(r) for r in results],
    }  # fmt: skip


def relabel(result: dict, equivalent: tuple[tuple[str, str, str], ...]) -> dict:
    """``result`` (of the same source) with its survivors judged again against ``equivalent``, nothing rerun:
    a listed survivor becomes ``equivalent`` with its reason, an unlisted one ``survived`` again."""
    lines = Path(result["module"]).read_text().splitlines()
    if hashlib.sha256(Path(result["module"]).read_text().encode()).hexdigest() != result["source_sha256"]:
        raise SystemExit(f"relabel: {result['module']} changed since the run; run it again")
    reasons = {(text, what): why for text, what, why in equivalent}
    results = []
    for r in map(lambda d: Result(**d), result["results"]):
        if r.status in ("survived", "equivalent"):
            why = reasons.get((lines[r.line - 1].strip(), r.what))
            r.status, r.detail = ("equivalent", why) if why else ("survived", "")
        results.append(r)
    head = {k: v for k, v in result.items() if k not in ("meta", "summary", "survivors", "results")}
    return _report(head, results, lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    tests: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, tests = argv[:i], argv[i + 1 :]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("module", type=Path, help="the source file to mutate")
    p.add_argument("--list", action="store_true", help="list the mutants and exit")
    p.add_argument("--only", default="", help="comma-separated mutant ids to run")
    p.add_argument("--json", type=Path, help="write every result to this file")
    p.add_argument(
        "--timeout-factor", type=float, default=5.0, help="kill a mutant run after this x baseline"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads in each test run")
    p.add_argument("--preload", default="", help="comma-separated modules to import once before forking")
    p.add_argument(
        "--resume", type=Path, help="an earlier --json result: keep its killed mutants, rerun the rest"
    )
    args = p.parse_args(argv)

    if args.list:
        source = args.module.read_text()
        sites = _collect(ast.parse(source), source).sites
        for i, s in enumerate(sites):
            print(f"{i:4d}  L{s.line:<4d} {s.what}")
        print(f"{len(sites)} mutants")
        return 0
    if not tests:
        p.error("give the test selection after --")
    result = run(
        args.module,
        tests,
        only=[int(i) for i in args.only.split(",") if i] or None,
        timeout_factor=args.timeout_factor,
        threads=args.threads,
        preload_modules=tuple(filter(None, args.preload.split(","))),
        resume=json.loads(args.resume.read_text()) if args.resume else None,
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
