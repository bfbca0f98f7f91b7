"""The private accelerate / torch state the Trainer relies on (diffcore.training._compat) is still there.

Each test names the attribute; a failure after an upgrade means ``_compat.py`` needs a new way to do that
one thing (its docstring says why each is needed and which versions it was checked on).
"""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.state import AcceleratorState, GradientState
from diffcore.training import _compat
from torch.utils.data import DataLoader, TensorDataset


@pytest.fixture(autouse=True)
def _clean_accelerate():
    _compat.reset_accelerate_state(distributed=True)
    yield
    _compat.reset_accelerate_state(distributed=True)


def test_accelerate_still_has_its_private_state_resets_and_they_allow_a_new_mixed_precision() -> None:
    assert callable(getattr(AcceleratorState, "_reset_state", None)), "AcceleratorState._reset_state is gone"
    assert callable(getattr(GradientState, "_reset_state", None)), "GradientState._reset_state is gone"
    assert Accelerator(cpu=True, mixed_precision="bf16").mixed_precision == "bf16"
    with pytest.raises(ValueError, match="already been initialized"):  # why the reset is needed at all
        Accelerator(cpu=True, mixed_precision="no")
    _compat.reset_accelerate_state()
    accelerator = Accelerator(cpu=True, mixed_precision="no", gradient_accumulation_steps=3)
    assert accelerator.mixed_precision == "no" and accelerator.gradient_accumulation_steps == 3


def test_prepared_loaders_still_keep_non_blocking_in_the_private_attribute_and_skipping_carries_it() -> None:
    accelerator = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(non_blocking=True))
    loader = accelerator.prepare(DataLoader(TensorDataset(torch.arange(10.0)), batch_size=2))
    assert getattr(loader, _compat.NON_BLOCKING_ATTRIBUTE, None) is True, (
        f"accelerate's prepared loader has no {_compat.NON_BLOCKING_ATTRIBUTE}"
    )
    rebuilt = _compat.skip_first_batches(accelerator, loader, 2)
    assert getattr(rebuilt, _compat.NON_BLOCKING_ATTRIBUTE, None) is True
    assert [float(b[0][0]) for b in rebuilt] == [4.0, 6.0, 8.0]


def test_dynamo_still_reads_optimize_ddp_from_its_config() -> None:
    config = torch._dynamo.config
    assert hasattr(config, "optimize_ddp"), "torch._dynamo.config.optimize_ddp is gone"
    before = config.optimize_ddp
    with _compat.dynamo_optimize_ddp(not before):
        assert config.optimize_ddp == (not before)
    assert config.optimize_ddp == before
