"""Tokenisers: raw bytes, or a ``tokenizers`` model (a byte-level BPE trained on the corpus, or a word-level
vocabulary). A pipeline saves its tokeniser in its own folder (:func:`diff_language.io.save_tokenizer`).

Every tokeniser has an end-of-sequence id ``eos_id``; the model adds ``[MASK]`` as one more id on top of
``vocab_size``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

__all__ = ["EOS", "ByteTokenizer", "HFTokenizer", "TextTokenizer", "train_bpe", "word_level"]

EOS = "[EOS]"


class TextTokenizer:
    """Common interface: ``encode``, ``decode``, ``vocab_size``, ``eos_id``."""

    vocab_size: int
    eos_id: int

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""
        raise TypeError(f"{type(self).__name__} must implement encode")

    def decode(self, ids: Sequence[int]) -> str:
        """The text of token ids ``ids`` (ids outside the vocabulary are dropped)."""
        raise TypeError(f"{type(self).__name__} must implement decode")

    def encode_documents(self, docs: Iterable[str]) -> list[int]:
        """All documents, each followed by EOS, as one stream of ids."""
        out: list[int] = []
        for d in docs:
            out.extend(self.encode(d))
            out.append(self.eos_id)
        return out


class ByteTokenizer(TextTokenizer):
    """UTF-8 bytes 0..255 and EOS = 256."""

    vocab_size = 257
    eos_id = 256

    def encode(self, text: str) -> list[int]:
        """The UTF-8 bytes of ``text`` as ids in ``[0, 256)``."""
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        """The UTF-8 text of the byte ids in ``ids`` (other ids dropped; invalid sequences replaced)."""
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")


class HFTokenizer(TextTokenizer):
    """A ``tokenizers.Tokenizer`` with an ``[EOS]`` special token."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        eos = tokenizer.token_to_id(EOS)
        if eos is None:
            raise ValueError(f"tokenizer: expected a special token {EOS!r} in the vocabulary")
        self.tokenizer = tokenizer
        self.eos_id = eos
        self.vocab_size = tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` from the ``tokenizers`` model."""
        return self.tokenizer.encode(text).ids

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids`` (ids outside the vocabulary, such as the mask, dropped)."""
        return self.tokenizer.decode([i for i in ids if 0 <= i < self.vocab_size])


def train_bpe(docs: Iterable[str], vocab_size: int = 512) -> HFTokenizer:
    """Train a byte-level BPE (GPT-2 style pre-tokenisation) of ``vocab_size`` ids on ``docs``."""
    if vocab_size < 258:
        raise ValueError(f"vocab_size: expected >= 258 (256 bytes + EOS + merges), got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer=trainer)
    return HFTokenizer(tok)


def word_level(words: Sequence[str]) -> HFTokenizer:
    """Whitespace-separated words with fixed ids ``0..len(words)-1`` and EOS after them."""
    vocab = {w: i for i, w in enumerate(words)}
    if len(vocab) != len(words):
        raise ValueError("words: expected distinct words")
    vocab[EOS] = len(words)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=EOS))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return HFTokenizer(tok)
