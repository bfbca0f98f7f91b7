"""The verbs every modality offers (train, sample, evaluate) and LanguagePipeline on disk."""

import json

import pytest
import torch
from diff_language import (
    LanguageEvaluateConfig,
    LanguagePipeline,
    LanguageSampleConfig,
    LanguageTrainConfig,
    evaluate,
    sample,
    train,
)
from diff_language.data import build_corpus
from diff_language.metrics import validation_nelbo
from diff_language.models import BD3LM, BD3LMConfig
from diff_language.tokenizer import ByteTokenizer, word_level
from diffcore.config import apply_overrides
from diffcore.rng import make_generator

TINY = {
    "corpus": {"train_tokens": 8192},
    "model": {"seq_len": 16, "block_size": 4, "dim": 16, "n_layers": 1, "n_heads": 2},
    "batch_size": 8,
    "eval_windows": 6,
    "eval_repeats": 2,
    "train": {"steps": 4, "warmup_steps": 1, "device": "cpu"},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = apply_overrides(
        LanguageTrainConfig(), {**TINY, "train": {**TINY["train"], "output_dir": str(out)}}
    )
    return train(config), out, config


def test_train_writes_the_run_and_returns_the_saved_pipeline(trained):
    pipe, out, config = trained
    assert isinstance(pipe, LanguagePipeline) and pipe.corpus == config.corpus
    for name in ("pipeline/pipeline.json", "pipeline/model/config.json", "pipeline/model/model.safetensors",
                 "pipeline/tokenizer/tokenizer.json", "metrics.json", "train_config.json", "log.jsonl"):  # fmt: skip
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    data = build_corpus(config.corpus)
    expected = validation_nelbo(pipe.model, data.val, max_windows=6, repeats=2, seed=0)
    assert metrics["validation"]["nelbo"] == pytest.approx(expected.nelbo, rel=1e-9)
    assert [step for step, _ in metrics["losses"]] == [4]  # log_every 100: the last step only
    assert json.loads((out / "train_config.json").read_text())["model"]["seq_len"] == 16


def test_training_is_reproducible_from_the_seed(trained, tmp_path):
    pipe, _, config = trained
    again = train(apply_overrides(config, {"train": {"output_dir": str(tmp_path / "again")}}))
    for a, b in zip(pipe.model.parameters(), again.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_saved_pipeline_loads_back_with_the_same_model_tokenizer_and_corpus(trained):
    pipe, out, _ = trained
    loaded = LanguagePipeline.from_pretrained(out / "pipeline")
    x = torch.randint(0, 16, (2, 16), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loaded.model(x), pipe.model(x))
    assert loaded.corpus == pipe.corpus and loaded.tokenizer.encode("s3 s1") == [3, 1]
    assert not loaded.model.training


def test_sample_returns_prompted_texts_reproducibly(trained):
    pipe, _, _ = trained
    config = LanguageSampleConfig(
        num_samples=3, num_tokens=8, prompt="s1 s2", stop_at_eos=False, device="cpu"
    )
    texts = sample(pipe, config)
    assert len(texts) == 3 and texts == sample(pipe, config)
    for text in texts:
        words = text.split()
        assert words[:2] == ["s1", "s2"] and len(words) == 10
        assert set(words) <= {f"s{i}" for i in range(16)} | {"[EOS]"}, words
    # the generator argument replaces the seed: the same noise gives the same texts
    assert sample(pipe, config, generator=make_generator(0)) == texts
    assert sample(pipe, LanguageSampleConfig(**{**config.__dict__, "seed": 1})) != texts


def test_evaluate_scores_the_validation_split_and_gives_the_true_entropy(trained):
    pipe, _, config = trained
    result = evaluate(pipe, LanguageEvaluateConfig(windows=6, repeats=2, device="cpu"))
    data = build_corpus(config.corpus)
    expected = validation_nelbo(pipe.model, data.val, max_windows=6, repeats=2, seed=0)
    assert result["nelbo"] == pytest.approx(expected.nelbo, rel=1e-9)
    assert result["tokens"] == 6 * 16 and result["perplexity"] == pytest.approx(
        torch.tensor(expected.nelbo).exp()
    )
    truth, _ = data.hmm.window_entropy(16, generator=make_generator(0))
    assert result["true_window_entropy"] == pytest.approx(truth)
    assert result["nelbo"] > result["true_window_entropy"] - 4 * result["true_entropy_stderr"]


def test_evaluate_on_given_files_and_refuses_a_pipeline_without_corpus(tmp_path):
    torch.manual_seed(0)
    model = BD3LM(BD3LMConfig(vocab_size=258, seq_len=8, block_size=4, dim=16, n_layers=1, n_heads=2))
    pipe = LanguagePipeline(model, ByteTokenizer())
    with pytest.raises(ValueError, match="paths: this pipeline records no corpus"):
        evaluate(pipe, LanguageEvaluateConfig(device="cpu"))
    (tmp_path / "a.txt").write_text("abcdefgh" * 4)
    result = evaluate(pipe, LanguageEvaluateConfig(paths=(str(tmp_path / "a.txt"),), repeats=2, device="cpu"))
    assert result["tokens"] == 4 * 8  # 33 tokens (32 bytes + EOS): 4 windows of 8
    with pytest.raises(ValueError, match=r"model: expected vocab_size = tokenizer.vocab_size \+ 1 = 5"):
        LanguagePipeline(model, word_level(["a", "b", "c"]))


def test_bad_sample_settings_are_named():
    with pytest.raises(ValueError, match="steps"):
        apply_overrides(LanguageSampleConfig(), {"sampling": {"steps": -2}})
    with pytest.raises(ValueError, match="sampler"):
        apply_overrides(LanguageSampleConfig(), {"sampling": {"sampler": "foo"}})
    with pytest.raises(ValueError, match="top_p"):
        apply_overrides(LanguageSampleConfig(), {"sampling": {"top_p": 0}})


def assert_hub_ready(folder, modality: str, trained: bool = True) -> None:
    """The saved folder's README.md is a model card huggingface_hub reads, and nothing in it is pickled."""
    from diffcore.model_card import hub_folder_problems
    from huggingface_hub import ModelCard

    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "diffcore" and modality in card.data.tags
    assert f"diffuse {modality} sample --pipeline" in card.text
    assert ("- steps: " in card.text) == trained
    assert hub_folder_problems(folder) == []


def test_the_saved_pipeline_has_a_model_card_for_the_hub(trained):
    _, out, _ = trained
    assert_hub_ready(out / "pipeline", "language")
