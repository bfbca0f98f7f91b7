"""diffcore.io (atomic writes), diffcore.rng (generators, scoped seeding) and diffcore.device."""

import json
import os
import stat

import numpy as np
import pytest
import torch
from diffcore.device import resolve_device
from diffcore.io import atomic_open, atomic_path, write_bytes, write_json, write_text
from diffcore.rng import make_generator, seeded


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_files_take_the_umask_mode_not_the_temp_files_0600(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
        with atomic_path(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"y")
        assert _mode(tmp_path / "a.txt") == 0o644
        assert _mode(tmp_path / "b.bin") == 0o644
        os.umask(0o077)
        write_bytes(tmp_path / "c.bin", b"z")
        assert _mode(tmp_path / "c.bin") == 0o600
    finally:
        os.umask(old)


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    write_json({"a": 1}, target)
    with pytest.raises(RuntimeError), atomic_open(target) as f:
        f.write('{"a": 2')
        raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_atomic_path_keeps_the_extension_for_libraries_that_choose_the_format_by_it(tmp_path):
    with atomic_path(tmp_path / "x.npz") as tmp:
        assert tmp.suffix == ".npz" and tmp.parent == tmp_path and tmp.name.startswith(".")
        np.savez(tmp, a=np.arange(3))
    assert np.load(tmp_path / "x.npz")["a"].tolist() == [0, 1, 2]


def test_write_json_converts_tuples_paths_dataclasses_and_scalars(tmp_path):
    from dataclasses import dataclass

    @dataclass
    class C:
        size: tuple[int, int] = (2, 3)

    write_json({"c": C(), "p": tmp_path, "t": torch.tensor(1.5), "n": np.float32(2.0), "v": np.arange(2)},
               tmp_path / "o.json")  # fmt: skip
    assert json.loads((tmp_path / "o.json").read_text()) == {
        "c": {"size": [2, 3]}, "p": str(tmp_path), "t": 1.5, "n": 2.0, "v": [0, 1],
    }  # fmt: skip


def test_make_generator_is_reproducible_and_never_the_global_rng():
    state = torch.random.get_rng_state()
    a = torch.randn(4, generator=make_generator(3))
    b = torch.randn(4, generator=make_generator(3))
    assert torch.equal(a, b)
    assert torch.equal(torch.random.get_rng_state(), state)
    gen = torch.Generator().manual_seed(1)
    assert make_generator(gen) is gen
    with pytest.raises(ValueError, match="seed"):
        make_generator(-1)
    with pytest.raises(ValueError, match="seed"):
        make_generator(True)


def test_seeded_restores_the_callers_global_rng_state():
    torch.manual_seed(123)
    expected = torch.randn(3)
    torch.manual_seed(123)
    with seeded(7):
        inside = torch.randn(2)
    after = torch.randn(3)
    assert torch.equal(after, expected)  # the block did not consume the caller's stream
    with seeded(7):
        assert torch.equal(torch.randn(2), inside)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device: expected one of"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")


def _layers() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(8, 16),
        torch.nn.Embedding(5, 4),
        torch.nn.TransformerEncoderLayer(16, 2, 32),
        torch.nn.Conv2d(3, 4, 3),
    )


def test_seeded_initialises_modules_from_a_generator_without_seeding_the_global_rng(monkeypatch):
    torch.manual_seed(0)
    reference = _layers().state_dict()  # what torch.manual_seed(0) gives: the same stream as a generator of 0
    calls = []
    monkeypatch.setattr(torch, "manual_seed", lambda *a: calls.append(a))
    torch.set_rng_state(torch.Generator().manual_seed(123).get_state())
    with seeded(0):
        built = _layers().state_dict()
        x, y = torch.randn_like(torch.zeros(3)), torch.rand(2)
        dropped = torch.nn.Dropout(0.5).train()(torch.ones(2000))
    assert not calls
    assert all(torch.equal(reference[k], built[k]) for k in reference)
    # the caller's stream neither moved nor was reseeded: it is the stream of 123
    torch.testing.assert_close(torch.rand(4), torch.rand(4, generator=torch.Generator().manual_seed(123)))
    with seeded(0):
        _layers()
        assert torch.equal(torch.randn_like(torch.zeros(3)), x) and torch.equal(torch.rand(2), y)
        again = torch.nn.Dropout(0.5).train()(torch.ones(2000))
    assert torch.equal(dropped, again)  # dropout's mask comes from the block's generator too
    assert set(dropped.unique().tolist()) == {0.0, 2.0} and abs(float((dropped == 0).float().mean()) - 0.5) < 0.05
