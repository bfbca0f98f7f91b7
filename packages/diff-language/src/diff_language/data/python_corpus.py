"""A real, offline corpus built from what every Python install holds: source code and CPython's documentation.

Sources (:class:`PythonCorpusConfig.sources`):

- ``stdlib``: the ``.py`` files of the standard library (``sysconfig.get_paths()["stdlib"]``, without any
  ``site-packages`` below it); CPython is under the PSF License Agreement (``PSF-2.0``).
- ``site-packages``: the ``.py`` files of installed distributions (``purelib`` / ``platlib``), each with its
  distribution, version and declared licence (:mod:`diff_language.data.licences`); with
  ``licences="permissive"`` (the default) only files of permissively licensed distributions are used.
  ``site_packages_mb`` caps how much is taken, files chosen in a seeded order.
- ``docs``: CPython's documentation text available offline: the ``help()`` topics of ``pydoc_data.topics``
  and, per standard-library module, its docstring and those of its public classes and functions.

Every file is read as UTF-8, must parse with :func:`ast.parse` (under the running Python) and be at most
``max_file_kb``; exact and near duplicates are removed (:mod:`diff_language.data.dedup`, first in sorted order
kept). Files are split, never windows: a seeded hash of each document's key puts it into train, validation or
test (a module's docstrings go where its source goes). A byte-level BPE is trained on the train split.

:func:`build_python_corpus` writes a folder:

- ``train.jsonl``, ``validation.jsonl``, ``test.jsonl``: one document per line ``{"key", "kind", "text"}``;
- ``tokens-<split>.safetensors``: the split encoded, documents joined by EOS (``tokens``: (1, n), int16 for
  vocabularies below 32768, else int32);
- ``tokenizer/``: the BPE (:func:`diff_language.io.load_tokenizer`);
- ``manifest.jsonl``: one line per file or topic considered: key, path, distribution, version, licence,
  licence family, bytes, sha256, split, or why it was dropped;
- ``corpus.json``: the settings, the Python version, counts and sizes per split and source; ``LICENCES.md``.

:func:`load_python_corpus` reads it back as a :class:`~diff_language.data.corpus.TokenCorpus`
(``CorpusConfig(kind="python", paths=(folder,))``).
"""

from __future__ import annotations

import ast
import hashlib
import json
import platform
import shutil
import sysconfig
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from diffcore.io import write_json, write_text

from diff_language.config import PythonCorpusConfig
from diff_language.data.dedup import Deduplicator
from diff_language.data.licences import Licence, site_packages_owners

__all__ = [
    "SPLITS",
    "PythonCorpusConfig",
    "SourceFile",
    "build_python_corpus",
    "collect_sources",
    "load_python_corpus",
    "module_docs",
    "split_of",
]

SPLITS = ("train", "validation", "test")
STDLIB_LICENCE = Licence("PSF-2.0", "permissive", "CPython")
LICENCE_NOTE = """# Licences of this corpus

This folder was built by `diffuse language corpus` from the Python installation that ran it.

- Standard library source and CPython documentation (`pydoc_data.topics`, module docstrings): Copyright
  Python Software Foundation, under the PSF License Agreement (PSF-2.0, https://docs.python.org/3/license.html).
  A few standard-library modules carry additional notices in their own source; they travel with the text.
- Files of installed distributions (site-packages): each under its distribution's licence, recorded per file in
  `manifest.jsonl` (`distribution`, `version`, `licence`, `licence_family`, read from the package metadata).
  Built with `licences = {licences}`{note}.

Licence metadata is what the distributions declare, not legal advice. Keep this note and `manifest.jsonl`
with the corpus and with anything that redistributes its text.
"""


@dataclass(frozen=True)
class SourceFile:
    """One candidate ``.py`` file: its ``key`` (``<distribution>/<relative path>``), path and licence."""

    key: str
    path: Path
    source: str
    distribution: str
    version: str
    licence: Licence


def split_of(key: str, seed: int, val_fraction: float, test_fraction: float) -> str:
    """train, validation or test for ``key``: a seeded BLAKE2 hash of the key as a number in [0, 1)."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2**64
    return "test" if u < test_fraction else "validation" if u < test_fraction + val_fraction else "train"


def _stdlib_files() -> Iterator[SourceFile]:
    root = Path(sysconfig.get_paths()["stdlib"]).resolve()
    version = platform.python_version()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if {"site-packages", "dist-packages", "__pycache__"} & set(rel.parts):
            continue
        yield SourceFile(f"cpython/{rel.as_posix()}", path, "stdlib", "cpython", version, STDLIB_LICENCE)


def _site_files(seed: int) -> list[SourceFile]:
    roots = sorted({Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")})
    files = []
    for root in roots:
        for path, (name, version, licence) in site_packages_owners(root).items():
            if path.is_file() and root in path.parents:
                rel = path.relative_to(root).as_posix()
                files.append(SourceFile(f"{name}/{rel}", path, "site-packages", name, version, licence))
    # seeded order, so that the megabyte cap takes a seed-dependent but reproducible sample; salted apart from
    # split_of's hash, or the files taken first would be those that split_of puts into test and validation
    return sorted(
        files, key=lambda f: hashlib.blake2b(f"order:{seed}:{f.key}".encode(), digest_size=8).digest()
    )


def collect_sources(config: PythonCorpusConfig) -> list[SourceFile]:
    """The candidate files of ``config.sources`` (stdlib sorted by path, then site-packages in seeded order)."""
    files: list[SourceFile] = []
    if "stdlib" in config.sources:
        files.extend(_stdlib_files())
    if "site-packages" in config.sources:
        files.extend(_site_files(config.seed))
    return files


def module_docs(name: str, tree: ast.Module) -> str | None:
    """Documentation text of a module: its docstring, then ``name.obj`` and the docstring of each public
    top-level class and function (and of a class's public methods). None when the module has no docstring."""
    doc = ast.get_docstring(tree)
    if not doc:
        return None
    parts = [f"{name}\n\n{doc}"]
    for node in tree.body:
        if isinstance(
            node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
        ) and not node.name.startswith("_"):
            text = ast.get_docstring(node)
            if text:
                parts.append(f"{name}.{node.name}\n\n{text}")
            if isinstance(node, ast.ClassDef):
                for sub in node.body:
                    if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)) and not sub.name.startswith(
                        "_"
                    ):
                        text = ast.get_docstring(sub)
                        if text:
                            parts.append(f"{name}.{node.name}.{sub.name}\n\n{text}")
    return "\n\n".join(parts)


def _module_name(key: str) -> str:
    rel = key.split("/", 1)[1].removesuffix(".py").removesuffix("/__init__")
    return rel.replace("/", ".")


@dataclass
class _Document:
    key: str
    kind: str
    text: str
    split: str


def _read(file: SourceFile, max_bytes: int) -> tuple[str | None, str | None, ast.Module | None]:
    """(text, reason dropped, syntax tree)."""
    try:
        size = file.path.stat().st_size
        if size > max_bytes:
            return None, "too large", None
        text = file.path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None, "not UTF-8", None
    except OSError as exc:
        return None, f"unreadable ({exc.strerror})", None
    if not text.strip():
        return None, "empty", None
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None, "does not parse", None
    return text, None, tree


def _gather(config: PythonCorpusConfig, progress: bool) -> tuple[list[_Document], list[dict]]:
    """Documents (deduplicated, split) and the manifest rows of every candidate."""
    from tqdm.auto import tqdm

    dedup = Deduplicator(config.near_duplicate_threshold, seed=config.seed)
    docs: list[_Document] = []
    manifest: list[dict] = []
    site_budget = int(config.site_packages_mb * 2**20)
    max_bytes = config.max_file_kb * 1024
    files = collect_sources(config)
    for file in tqdm(files, desc="python files", disable=not progress, unit="file"):
        row = {
            "key": file.key,
            "path": str(file.path),
            "source": file.source,
            "distribution": file.distribution,
            "version": file.version,
            "licence": file.licence.name,
            "licence_family": file.licence.family,
        }
        manifest.append(row)
        if config.licences == "permissive" and file.licence.family != "permissive":
            row["dropped"] = f"licence {file.licence.family}"
            continue
        if file.source == "site-packages" and site_budget <= 0:
            row["dropped"] = "over site_packages_mb"
            continue
        text, reason, tree = _read(file, max_bytes)
        if text is None:
            row["dropped"] = reason
            continue
        duplicate = dedup.check(file.key, text)
        if duplicate is not None:
            row["dropped"] = f"{duplicate[0]} duplicate of {duplicate[1]}"
            continue
        size = len(text.encode())
        if file.source == "site-packages":
            site_budget -= size
        split = split_of(file.key, config.seed, config.val_fraction, config.test_fraction)
        row.update(bytes=size, sha256=hashlib.sha256(text.encode()).hexdigest(), split=split)
        docs.append(_Document(file.key, "code", text, split))
        if "docs" in config.sources and file.source == "stdlib" and tree is not None:
            text_doc = module_docs(_module_name(file.key), tree)
            if text_doc:
                docs.append(_Document(f"docs/{file.key}", "docs", text_doc, split))
    if "docs" in config.sources:
        from pydoc_data.topics import topics

        for name in sorted(topics):
            key = f"pydoc-topics/{name}"
            row = {"key": key, "path": "pydoc_data.topics", "source": "docs", "distribution": "cpython",
                   "version": platform.python_version(), "licence": STDLIB_LICENCE.name,
                   "licence_family": STDLIB_LICENCE.family}  # fmt: skip
            manifest.append(row)
            duplicate = dedup.check(key, topics[name])
            if duplicate is not None:
                row["dropped"] = f"{duplicate[0]} duplicate of {duplicate[1]}"
                continue
            split = split_of(key, config.seed, config.val_fraction, config.test_fraction)
            row.update(bytes=len(topics[name].encode()), split=split)
            docs.append(_Document(key, "docs", topics[name], split))
    return docs, manifest


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _encode(tokenizer, texts: list[str]) -> torch.Tensor:
    ids: list[int] = []
    for start in range(0, len(texts), 256):
        for encoding in tokenizer.tokenizer.encode_batch(texts[start : start + 256]):
            ids.extend(encoding.ids)
            ids.append(tokenizer.eos_id)
    small = tokenizer.vocab_size <= torch.iinfo(torch.int16).max  # half the file for vocabularies below 32768
    return torch.tensor(ids, dtype=torch.int16 if small else torch.int32)[None]


def build_python_corpus(config: PythonCorpusConfig, out: str | Path, *, progress: bool = True) -> dict:
    """Build the corpus ``config`` describes into the folder ``out`` (see the module docstring); returns the
    summary written to ``corpus.json``.

    The folder is assembled beside ``out`` and renamed into place at the end: a failed build leaves no
    partial corpus, and an existing ``out`` is refused (remove it first).
    """
    from safetensors.torch import save_file

    from diff_language.io import save_tokenizer
    from diff_language.tokenizer import train_bpe

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"out: {out} exists; remove it or choose another folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    docs, manifest = _gather(config, progress)
    by_split = {s: [d for d in docs if d.split == s] for s in SPLITS}
    empty = [s for s in SPLITS if not by_split[s]]
    if empty:
        raise ValueError(
            f"sources: the {', '.join(empty)} split(s) got no documents from {len(docs)} "
            "(use more sources or larger val_fraction / test_fraction)"
        )
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        for split, items in by_split.items():
            _write_jsonl(
                tmp / f"{split}.jsonl", [{"key": d.key, "kind": d.kind, "text": d.text} for d in items]
            )
        _write_jsonl(tmp / "manifest.jsonl", manifest)
        tokenizer = train_bpe((d.text for d in by_split["train"]), config.bpe_vocab)
        save_tokenizer(tokenizer, tmp / "tokenizer")
        tokens = {}
        for split, items in by_split.items():
            stream = _encode(tokenizer, [d.text for d in items])
            save_file({"tokens": stream}, str(tmp / f"tokens-{split}.safetensors"))
            tokens[split] = int(stream.shape[1])
        summary = _summary(config, by_split, manifest, tokens)
        write_json(summary, tmp / "corpus.json")
        note = " (site-packages files of distributions without a permissive licence were left out)"
        write_text(
            tmp / "LICENCES.md",
            LICENCE_NOTE.format(
                licences=config.licences, note=note if config.licences == "permissive" else ""
            ),
        )
        _set_modes(tmp)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def _set_modes(folder: Path) -> None:
    """Give the folder and its files the modes ``mkdir`` / ``open`` would (mkdtemp and safetensors use 0o700 / 0o600)."""
    from diffcore.io import default_file_mode

    mode = default_file_mode()
    for path in [folder, *folder.rglob("*")]:
        path.chmod(mode | 0o111 if path.is_dir() else mode)


def _summary(config: PythonCorpusConfig, by_split: dict, manifest: list[dict], tokens: dict) -> dict:
    return {
        "config": asdict(config),
        "python": platform.python_version(),
        "documents": {s: len(v) for s, v in by_split.items()},
        "bytes": {s: sum(len(d.text.encode()) for d in v) for s, v in by_split.items()},
        "tokens": tokens,
        "bytes_by_kind": dict(_bytes_by(by_split, "kind")),
        "licence_families": dict(Counter(r["licence_family"] for r in manifest if "split" in r)),
        "dropped": dict(
            sorted(Counter(r["dropped"].split(" of ")[0] for r in manifest if "dropped" in r).items())
        ),
        "distributions": len({r["distribution"] for r in manifest if "split" in r}),
    }


def _bytes_by(by_split: dict, attr: str) -> Counter:
    counts: Counter = Counter()
    for items in by_split.values():
        for d in items:
            counts[getattr(d, attr)] += len(d.text.encode())
    return counts


def load_python_corpus(folder: str | Path, tokenizer: str = "bpe"):
    """The corpus folder :func:`build_python_corpus` wrote, as a ``TokenCorpus`` of its train and validation
    splits (``tokenizer="bpe"``: the saved token streams; ``"bytes"``: the text re-encoded as UTF-8 bytes)."""
    from safetensors.torch import load_file

    from diff_language.data.corpus import TokenCorpus, text_corpus
    from diff_language.io import load_tokenizer
    from diff_language.tokenizer import ByteTokenizer

    folder = Path(folder)
    if not (folder / "corpus.json").is_file():
        raise FileNotFoundError(f"paths: {folder} is not a corpus folder (no corpus.json; build it with "
                                "`diffuse language corpus --out DIR`)")  # fmt: skip
    if tokenizer == "bytes":

        def texts(split: str) -> list[str]:
            lines = (folder / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
            return [json.loads(line)["text"] for line in lines]

        return text_corpus("python", texts("train"), texts("validation"), ByteTokenizer())
    streams = {
        s: load_file(str(folder / f"tokens-{s}.safetensors"))["tokens"].long()
        for s in ("train", "validation")
    }
    return TokenCorpus(
        "python", streams["train"], streams["validation"], load_tokenizer(folder / "tokenizer")
    )
