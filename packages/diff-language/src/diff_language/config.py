"""Configurations of diff-language: dataclasses, read from YAML / TOML files and ``--set key=value`` overrides
through :mod:`diffcore.config`. Training settings are the core's :class:`~diffcore.training.TrainConfig`, nested
as ``train`` (``--set train.lr=1e-4``), never restated here; the block-diffusion settings (block size, clip
search, corpus) are the package's own.

Each default is stated once, here; each field's meaning once, in its class's ``Attributes:`` section (also the
``--help`` text of the commands). This module imports no torch beyond what ``diffcore.training.TrainConfig``
brings, so the command line can read configurations before loading any model code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from diffcore.device import Device
from diffcore.training import TrainConfig

__all__ = [
    "CorpusConfig",
    "LanguageEvaluateConfig",
    "LanguageModelConfig",
    "LanguageSampleConfig",
    "LanguageTrainConfig",
    "PythonCorpusConfig",
    "SamplingConfig",
]

CorpusKind = Literal["synthetic", "pydoc", "files", "python"]
TokenizerKind = Literal["bpe", "bytes"]
Attention = Literal["sdpa", "flex", "auto"]
Sampler = Literal["ancestral", "first-hitting"]

_CORPORA = ("synthetic", "pydoc", "files", "python")
_TOKENIZERS = ("bpe", "bytes")
_ATTENTION = ("sdpa", "flex", "auto")
_SAMPLERS = ("ancestral", "first-hitting")
_SOURCES = ("stdlib", "site-packages", "docs")


def _at_least(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")


def _threads(value: int | None) -> None:
    if value is not None:
        _at_least("cpu_threads", value, 1)


@dataclass
class CorpusConfig:
    """The training text: which corpus, how it is tokenised (saved with a pipeline, so evaluation rebuilds it).

    Attributes:
        kind: synthetic (the seeded sparse HMM language, exact likelihood), pydoc (English prose of Python's
            help topics, every 10th topic is validation), files (the .txt / .jsonl files of ``paths``) or
            python (the folder ``paths[0]`` built by ``diffuse language corpus``: Python source and CPython
            documentation, split by file).
        paths: .txt files (one document each) or .jsonl files (one document per line, field ``text``) for
            kind files, every 10th document is validation; the corpus folder for kind python.
        tokenizer: bpe (a byte-level BPE trained on the training split; for kind python the one saved with
            the corpus) or bytes; the synthetic language always uses its word-level vocabulary.
        bpe_vocab: size of the BPE vocabulary (>= 258: 256 bytes, EOS and merges).
        hmm_states, hmm_vocab, hmm_branching, hmm_emit, hmm_seed: the synthetic language's HMM (states, symbols,
            successors per state, symbols emitted per state, the seed that draws it).
        train_tokens: tokens of synthetic training text (validation: a tenth of it, at least 20 000).
    """

    kind: CorpusKind = "synthetic"
    paths: tuple[str, ...] = ()
    tokenizer: TokenizerKind = "bpe"
    bpe_vocab: int = 512
    hmm_states: int = 6
    hmm_vocab: int = 16
    hmm_branching: int = 3
    hmm_emit: int = 3
    hmm_seed: int = 0
    train_tokens: int = 1_000_000

    def __post_init__(self) -> None:
        self.paths = tuple(str(p) for p in self.paths)
        if self.kind not in _CORPORA:
            raise ValueError(f"kind: expected one of {_CORPORA}, got {self.kind!r}")
        if self.tokenizer not in _TOKENIZERS:
            raise ValueError(f"tokenizer: expected one of {_TOKENIZERS}, got {self.tokenizer!r}")
        if self.kind == "files" and not self.paths:
            raise ValueError("paths: expected at least one .txt or .jsonl file for kind='files'")
        if self.kind == "python" and len(self.paths) != 1:
            raise ValueError(
                f"paths: expected one corpus folder (diffuse language corpus --out DIR) for kind='python', "
                f"got {self.paths!r}"
            )
        if self.kind not in ("files", "python") and self.paths:
            raise ValueError(
                f"paths: only read for kind='files' or 'python' (got kind={self.kind!r}); add --corpus files"
            )
        _at_least("bpe_vocab", self.bpe_vocab, 258)
        _at_least("train_tokens", self.train_tokens, 1)


@dataclass
class PythonCorpusConfig:
    """Settings of :func:`diff_language.data.python_corpus.build_python_corpus` (``diffuse language corpus``).

    Attributes:
        sources: any of stdlib, site-packages, docs.
        licences: permissive (only files whose distribution declares a permissive licence) or all.
        site_packages_mb: at most this many megabytes of site-packages source (files in a seeded order).
        max_file_kb: skip larger files (generated tables, vendored bundles).
        val_fraction, test_fraction: expected share of documents in validation and test.
        near_duplicate_threshold: estimated Jaccard similarity (word 5-shingles) at which a file is dropped as
            a near duplicate of one kept before it.
        bpe_vocab: size of the byte-level BPE trained on the train split (>= 258).
        seed: decides the split of every document, the order of site-packages files and the MinHash functions.
    """

    sources: tuple[str, ...] = _SOURCES
    licences: Literal["permissive", "all"] = "permissive"
    site_packages_mb: float = 48.0
    max_file_kb: int = 256
    val_fraction: float = 0.05
    test_fraction: float = 0.05
    near_duplicate_threshold: float = 0.8
    bpe_vocab: int = 16384
    seed: int = 0

    def __post_init__(self) -> None:
        self.sources = tuple(self.sources)
        bad = [s for s in self.sources if s not in _SOURCES]
        if bad or not self.sources:
            raise ValueError(f"sources: expected some of {_SOURCES}, got {self.sources!r}")
        if self.licences not in ("permissive", "all"):
            raise ValueError(f"licences: expected 'permissive' or 'all', got {self.licences!r}")
        if not self.site_packages_mb >= 0:
            raise ValueError(f"site_packages_mb: expected a number >= 0, got {self.site_packages_mb!r}")
        if self.max_file_kb < 1:
            raise ValueError(f"max_file_kb: expected an integer >= 1, got {self.max_file_kb!r}")
        for name in ("val_fraction", "test_fraction"):
            if not 0 < getattr(self, name) < 0.5:
                raise ValueError(f"{name}: expected a number in (0, 0.5), got {getattr(self, name)!r}")
        if not 0 < self.near_duplicate_threshold <= 1:
            raise ValueError(
                f"near_duplicate_threshold: expected a number in (0, 1], got {self.near_duplicate_threshold!r}"
            )
        if self.bpe_vocab < 258:
            raise ValueError(f"bpe_vocab: expected >= 258, got {self.bpe_vocab}")


@dataclass
class LanguageModelConfig:
    """The BD3-LM network's shape and block structure (its vocabulary comes from the tokenizer).

    Attributes:
        seq_len: the training context L (tokens per window).
        block_size: L', a divisor of seq_len; 1 is an autoregressive model, seq_len is MDLM.
        dim: width of the transformer (a multiple of 2 * n_heads).
        n_layers: transformer blocks.
        n_heads: attention heads.
        mlp_ratio: hidden width of the MLP over dim.
        dropout: dropout after attention and MLP.
        rope_base: base of the rotary position embedding's frequencies.
        attention: sdpa, flex (FlexAttention for the training pass) or auto (flex on CUDA when torch has it).
    """

    seq_len: int = 128
    block_size: int = 4
    dim: int = 128
    n_layers: int = 4
    n_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    rope_base: float = 10000.0
    attention: Attention = "auto"

    def __post_init__(self) -> None:
        _at_least("seq_len", self.seq_len, 1)
        _at_least("n_layers", self.n_layers, 1)
        _at_least("n_heads", self.n_heads, 1)
        if self.block_size < 1 or self.seq_len % self.block_size != 0:
            raise ValueError(
                f"block_size: expected a divisor of seq_len={self.seq_len}, got {self.block_size}"
            )
        if self.dim % self.n_heads != 0 or (self.dim // self.n_heads) % 2 != 0:
            raise ValueError(f"dim: expected a multiple of 2 * n_heads={2 * self.n_heads}, got {self.dim}")
        if self.attention not in _ATTENTION:
            raise ValueError(f"attention: expected one of {_ATTENTION}, got {self.attention!r}")


@dataclass
class SamplingConfig:
    """How each block is denoised (BD3-LM Alg. 2 with diffcore's masked-diffusion samplers).

    Attributes:
        sampler: ancestral (MDLM's ancestral sampler with cached predictions) or first-hitting (exact, one
            token per denoiser call).
        steps: ancestral time steps per block; none uses 2 * block_size.
        temperature: divides the logits before sampling (> 0).
        top_p: nucleus sampling, the smallest set of tokens holding this much probability (0 < top_p <= 1).
        use_kv_cache: keep the keys and values of finished blocks (False recomputes the prefix at every
            call: the same tokens, slower).
        cuda_graph: on CUDA, replay each cached block call as one CUDA graph (removes the launch cost of
            small models).
    """

    sampler: Sampler = "ancestral"
    steps: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    use_kv_cache: bool = True
    cuda_graph: bool = False

    def __post_init__(self) -> None:
        if self.sampler not in _SAMPLERS:
            raise ValueError(f"sampler: expected one of {_SAMPLERS}, got {self.sampler!r}")
        if self.steps is not None:
            _at_least("steps", self.steps, 1)
        if not self.temperature > 0:
            raise ValueError(f"temperature: expected a number > 0, got {self.temperature!r}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p: expected a number in (0, 1], got {self.top_p!r}")


def _default_train() -> TrainConfig:
    return TrainConfig(
        steps=2000,
        lr=1e-3,
        betas=(0.9, 0.98),
        lr_schedule="cosine",
        warmup_steps=50,
        ema_decay=None,
        log_every=100,
        checkpoint_every=None,
        keep_last=1,
        output_dir="runs/language",
        tensorboard=False,
    )


@dataclass
class LanguageTrainConfig:
    """One training run: corpus, network, block-diffusion settings and the core's optimisation settings.

    Attributes:
        corpus: the training text and its tokenizer.
        model: the network's shape and block size.
        batch_size: windows per optimizer step (per process).
        stride: offset between training windows in the token stream; none uses seq_len // 2.
        clip_search_every: steps between searches of the masking-rate range for block_size > 1 (BD3-LM
            Sec. 4.2; 0 trains on the full range throughout). block_size 1 always trains on [1, 1], exactly
            the autoregressive loss.
        clip_search_batches: batches on which each search measures the variance of the loss (>= 2).
        eval_windows: validation windows scored after training (metrics.json); none scores them all.
        eval_repeats: stratified noise draws per validation window after training (even, >= 2).
        cpu_threads: torch's threads while running on the CPU (restored afterwards); none keeps torch's
            default. One by default: these small models gain little from more, and on a shared machine extra
            threads wait at every barrier (2.1 s of CPU per training step on 2 threads against 0.39 s on 1).
        train: the optimisation, checkpoints, output folder, device and seed
            (:class:`diffcore.training.TrainConfig`).
    """

    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    model: LanguageModelConfig = field(default_factory=lambda: LanguageModelConfig(seq_len=64))
    batch_size: int = 32
    stride: int | None = None
    clip_search_every: int = 500
    clip_search_batches: int = 8
    eval_windows: int | None = 128
    eval_repeats: int = 8
    cpu_threads: int | None = 1
    train: TrainConfig = field(default_factory=_default_train)

    def __post_init__(self) -> None:
        _at_least("batch_size", self.batch_size, 1)
        if self.stride is not None:
            _at_least("stride", self.stride, 1)
        _at_least("clip_search_every", self.clip_search_every, 0)
        _at_least("clip_search_batches", self.clip_search_batches, 2)
        if self.eval_windows is not None:
            _at_least("eval_windows", self.eval_windows, 2)
        _even_repeats("eval_repeats", self.eval_repeats)
        _threads(self.cpu_threads)


def _even_repeats(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 2 or value % 2:
        raise ValueError(f"{name}: expected an even integer >= 2, got {value!r}")


@dataclass
class LanguageSampleConfig:
    """Generating text from a saved pipeline, block by block.

    Attributes:
        num_samples: sequences to generate.
        num_tokens: new tokens per sequence (any length: past seq_len the attention window slides).
        prompt: text every sequence continues.
        stop_at_eos: stop after the block where every sequence has produced EOS, and cut each at its first EOS.
        sampling: how each block is denoised.
        cpu_threads: torch's threads while running on the CPU (restored afterwards); none keeps torch's
            default.
        seed: seeds the sampling noise.
        device: where to run (the pipeline is moved there).
    """

    num_samples: int = 4
    num_tokens: int = 128
    prompt: str = ""
    stop_at_eos: bool = True
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    cpu_threads: int | None = 1
    seed: int = 0
    device: Device = "auto"

    def __post_init__(self) -> None:
        _at_least("num_samples", self.num_samples, 1)
        _at_least("num_tokens", self.num_tokens, 1)
        _at_least("seed", self.seed, 0)
        _threads(self.cpu_threads)


@dataclass
class LanguageEvaluateConfig:
    """Scoring a saved pipeline: the NELBO per token (full time range) on held-out text.

    Attributes:
        windows: validation windows of seq_len tokens to score (in order); none scores them all.
        repeats: stratified noise draws per window (even, >= 2; split in two halves for the Monte-Carlo error).
        batch_size: sequences per forward pass (windows times draws).
        paths: .txt / .jsonl files to score instead of the validation split of the pipeline's corpus.
        cpu_threads: torch's threads while running on the CPU (restored afterwards); none keeps torch's
            default.
        seed: seeds the noise draws.
        device: where to run (the pipeline is moved there).
    """

    windows: int | None = 512
    repeats: int = 32
    batch_size: int = 256
    paths: tuple[str, ...] = ()
    cpu_threads: int | None = 1
    seed: int = 0
    device: Device = "auto"

    def __post_init__(self) -> None:
        self.paths = tuple(str(p) for p in self.paths)
        if self.windows is not None:
            _at_least("windows", self.windows, 2)
        _even_repeats("repeats", self.repeats)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("seed", self.seed, 0)
        _threads(self.cpu_threads)
