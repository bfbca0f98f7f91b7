"""Training through diffcore.training.Trainer, and the ring KV cache against the uncached forward."""

import math

import torch
from diff_language.data import synthetic_corpus
from diff_language.model import BD3LM, BD3LMConfig, RingKVCache
from diff_language.objective import BD3Objective, initial_clip
from diff_language.pipeline import StreamWindows, TrainConfig, train
from diff_language.synthetic import SparseHMM


def _model(block_size: int, seq_len: int = 16) -> BD3LM:
    torch.manual_seed(0)
    return BD3LM(
        BD3LMConfig(vocab_size=9, seq_len=seq_len, block_size=block_size, dim=32, n_layers=1, n_heads=2)
    )


def test_trainer_lowers_the_loss_and_searches_the_clip_range(tmp_path):
    corpus = synthetic_corpus(
        SparseHMM(n_states=3, vocab_size=8, seed=0), train_tokens=20_000, val_tokens=4_000
    )
    cfg = TrainConfig(
        steps=30,
        batch_size=16,
        lr=3e-3,
        warmup=4,
        clip_search_every=15,
        clip_search_batches=2,
        log_every=10,
        output_dir=str(tmp_path / "run"),
    )
    model, result = train(_model(4), corpus.train, cfg)
    assert isinstance(model, BD3LM) and not model.training
    assert result.losses[-1][1] < math.log(8) - 0.15  # it learns: below the uniform distribution's entropy
    assert [step for step, _, _ in result.clips] == [15]  # searched once (not at the last step)
    assert (tmp_path / "run" / "model" / "config.json").is_file()  # the Trainer's save_pretrained
    again = BD3LM.from_pretrained(tmp_path / "run" / "model").eval()
    x = corpus.val[:, :16]
    torch.testing.assert_close(again(x), model(x))


def test_autoregressive_training_uses_the_full_mask_and_no_search():
    assert initial_clip(1).low == initial_clip(1).high == 1.0
    assert (initial_clip(4).low, initial_clip(4).high) == (0.0, 1.0)
    stream = torch.randint(0, 8, (2, 200), generator=torch.Generator().manual_seed(0))
    _, result = train(_model(1), stream, TrainConfig(steps=3, batch_size=4, clip_search_every=1, warmup=1))
    assert result.clips == []
    loss, logs = BD3Objective(initial_clip(1))(_model(1), stream[:, :16])
    assert loss.ndim == 0 and logs["clip_low"] == 1.0


def test_stream_windows_cover_rows_at_the_stride():
    stream = torch.arange(40).view(2, 20)
    ds = StreamWindows(stream, 8, 4)
    assert len(ds) == 2 * 4  # starts 0, 4, 8, 12 in each row
    assert ds[5].tolist() == list(range(24, 32))


@torch.no_grad()
def test_ring_cache_logits_equal_the_block_causal_forward():
    """Blocks written one by one into the preallocated cache give the logits of the full block-causal pass."""
    model = _model(4, seq_len=16).eval()
    x = torch.randint(0, 8, (2, 16), generator=torch.Generator().manual_seed(1))
    reference = model(x)
    cache = RingKVCache.empty(model.config, 2, 16, 4, "cpu", torch.float32)
    offsets = torch.arange(4)
    for j in range(4):
        cache.slots.copy_(offsets + 4 * j)
        cache.valid[: 4 * (j + 1)] = True
        logits = model.forward_tokens(x[:, 4 * j : 4 * j + 4], offsets + 4 * j, None, cache)
        torch.testing.assert_close(logits, reference[:, 4 * j : 4 * j + 4], atol=1e-5, rtol=1e-5)
