"""diffcore.config: dataclass configurations from mappings and ``key=value`` overrides, types checked."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from diffcore.config import apply_overrides, config_from_dict, parse_overrides


@dataclass(frozen=True)
class Inner:
    depth: int = 2


@dataclass(frozen=True)
class Outer:
    lr: float = 1e-3
    cap: float | None = None
    names: tuple[str, ...] = ("a",)
    pairs: tuple[tuple[str, float], ...] = ()
    inner: Inner = field(default_factory=Inner)


def test_overrides_are_typed_nested_and_checked() -> None:
    assert apply_overrides(Outer(), ["lr=1e-4"]).lr == 1e-4  # YAML 1.1 reads 1e-4 as a string
    cfg = apply_overrides(Outer(), ["lr=1", "cap=null", "inner.depth=6", "names=[x, y]", "pairs=[[lin, 10]]"])
    assert cfg == Outer(lr=1.0, cap=None, names=("x", "y"), pairs=(("lin", 10.0),), inner=Inner(6))
    assert isinstance(cfg.lr, float) and isinstance(cfg.pairs[0][1], float)
    assert parse_overrides(["a.b=1"]) == {"a": {"b": 1}}
    with pytest.raises(ValueError, match="unknown keys"):
        apply_overrides(Outer(), ["lrr=1"])
    with pytest.raises(TypeError, match="lr"):
        apply_overrides(Outer(), ["lr=fast"])
    with pytest.raises(TypeError, match=r"inner\.depth"):
        apply_overrides(Outer(), ["inner.depth=deep"])
    with pytest.raises(ValueError, match="expected 2 items"):
        config_from_dict(Outer, {"pairs": [["lin", 10, 3]]})


@dataclass
class Optim:
    steps: int = 100
    lr: float = 1e-4


@dataclass
class Run:
    optim: Optim = field(default_factory=lambda: Optim(steps=5, lr=0.5))
    name: str = "run"


def test_a_file_keeps_the_defaults_a_nested_factory_sets(tmp_path) -> None:
    from diffcore.config import load_config

    (tmp_path / "c.yaml").write_text("run:\n  optim: {steps: 7}\n")
    cfg = load_config(Run, tmp_path / "c.yaml", section="run")
    assert cfg == Run(optim=Optim(steps=7, lr=0.5))  # lr from Run's factory, not Optim's own 1e-4
    assert load_config(Run, tmp_path / "c.yaml", ["optim.lr=2"], section="run").optim == Optim(7, 2.0)
    (tmp_path / "bad.yaml").write_text("optim: {stepz: 7}\n")
    with pytest.raises(ValueError, match="stepz"):
        load_config(Run, tmp_path / "bad.yaml")
