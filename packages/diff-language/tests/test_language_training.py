"""Training through diffcore.training.Trainer, and the ring KV cache against the uncached forward."""

import json
import math

import pytest
import torch
from diff_language.config import LanguageTrainConfig
from diff_language.data import SparseHMM, StreamWindows, synthetic_corpus
from diff_language.models import BD3LM, BD3LMConfig, RingKVCache
from diff_language.objective import BD3Objective, initial_clip
from diff_language.pipeline import cpu_threads, train_model
from diffcore.config import apply_overrides


def _config(**settings) -> LanguageTrainConfig:
    """The package's defaults with ``settings`` (``train`` a dict of core settings) applied, on the CPU."""
    train = {"device": "cpu", **settings.pop("train", {})}
    return apply_overrides(LanguageTrainConfig(), {**settings, "train": train})


def _model(block_size: int, seq_len: int = 16) -> BD3LM:
    torch.manual_seed(0)
    return BD3LM(
        BD3LMConfig(vocab_size=9, seq_len=seq_len, block_size=block_size, dim=32, n_layers=1, n_heads=2)
    )


def test_trainer_lowers_the_loss_and_searches_the_clip_range(tmp_path):
    corpus = synthetic_corpus(
        SparseHMM(n_states=3, vocab_size=8, seed=0), train_tokens=20_000, val_tokens=4_000
    )
    cfg = _config(
        batch_size=16,
        clip_search_every=15,
        clip_search_batches=2,
        train={
            "steps": 30,
            "lr": 3e-3,
            "warmup_steps": 4,
            "log_every": 10,
            "output_dir": str(tmp_path / "run"),
        },
    )
    model, result = train_model(_model(4), corpus.train, cfg)
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
    cfg = _config(batch_size=4, clip_search_every=1, train={"steps": 3, "warmup_steps": 1})
    _, result = train_model(_model(1), stream, cfg, keep_run=False)
    assert result.clips == [] and result.output_dir == ""
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


def test_default_training_settings_are_the_cores_with_the_packages_choices():
    cfg = LanguageTrainConfig()
    assert cfg.train.ema_decay is None  # EMA off
    assert (cfg.train.lr, cfg.train.betas, cfg.train.lr_schedule) == (1e-3, (0.9, 0.98), "cosine")
    assert (cfg.train.warmup_steps, cfg.train.max_grad_norm, cfg.train.device) == (50, 1.0, "auto")
    assert cfg.model.seq_len == 64 and cfg.model.block_size == 4
    with pytest.raises(ValueError, match="eval_repeats"):
        LanguageTrainConfig(eval_repeats=3)
    with pytest.raises(ValueError, match="block_size"):
        apply_overrides(LanguageTrainConfig(), ["model.block_size=5"])


def test_a_batch_larger_than_the_training_windows_is_refused():
    stream = torch.randint(0, 8, (1, 40), generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="batch_size: expected at most the 4 training windows"):
        train_model(_model(4), stream, _config(batch_size=8), keep_run=False)


def test_cpu_threads_are_set_for_the_block_and_restored():
    before = torch.get_num_threads()
    with cpu_threads(1, torch.device("cpu")):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with cpu_threads(None, torch.device("cpu")):
        assert torch.get_num_threads() == before


def test_a_corpus_shorter_than_one_window_is_named_before_training(tmp_path):
    from diff_language.pipeline import train

    (tmp_path / "tiny.txt").write_text("a few words")
    config = apply_overrides(
        LanguageTrainConfig(),
        {"corpus": {"kind": "files", "paths": [str(tmp_path / "tiny.txt")], "tokenizer": "bytes"},
         "model": {"seq_len": 32, "block_size": 4, "dim": 16, "n_layers": 1, "n_heads": 2},
         "train": {"steps": 2, "warmup_steps": 1, "device": "cpu", "output_dir": str(tmp_path / "run")}},
    )  # fmt: skip
    with pytest.raises(
        ValueError, match=r"corpus: the training text of .*tiny\.txt is \d+ tokens long, shorter than"
    ):
        train(config)
    assert not (tmp_path / "run").exists()


def test_a_resumed_run_continues_from_the_clip_range_its_checkpoint_saved(tmp_path):
    stream = torch.randint(0, 8, (2, 400), generator=torch.Generator().manual_seed(0))
    run = {"warmup_steps": 1, "checkpoint_every": 2, "log_every": 1, "output_dir": str(tmp_path / "run")}
    first = _config(batch_size=4, clip_search_every=2, clip_search_batches=2, train={"steps": 4, **run})
    _, before = train_model(_model(4), stream, first)
    assert [step for step, _, _ in before.clips] == [2]  # searched at step 2 (not at the last step)
    saved = json.loads(
        (tmp_path / "run" / "checkpoints" / "checkpoint-00000004" / "clip_search.json").read_text()
    )
    assert saved["clip"] == list(before.clips[-1][1:])
    again = _config(batch_size=4, clip_search_every=2, clip_search_batches=2,
                    train={"steps": 8, "resume": "latest", **run})  # fmt: skip
    _, after = train_model(_model(4), stream, again)
    assert after.clips[0] == tuple(before.clips[0]) and [s for s, _, _ in after.clips] == [2, 6]
    logged = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    step5 = next(r for r in logged if r.get("step") == 5)  # after the resume: the range chosen at step 2
    assert (step5["clip_low"], step5["clip_high"]) == tuple(before.clips[0][1:])
