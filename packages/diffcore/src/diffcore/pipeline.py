"""A trained model of one modality with everything needed to use it, saved as one folder.

Every modality package's pipeline (``ImagePipeline``, ``ProteinPipeline``, ...) subclasses :class:`Pipeline`,
so they all save, load and move the same way::

    pipe.save_pretrained("runs/x/pipeline")
    pipe = ImagePipeline.from_pretrained("runs/x/pipeline", device="cuda")

On disk::

    pipeline.json      {"pipeline_class": "diff_image.pipeline:ImagePipeline", "format": 1,
                        "diffcore_version": ..., "config": {...the pipeline's own settings...},
                        "components": ["model", "autoencoder", ...], "card": {...training, metrics...}}
    README.md          the model card (:mod:`diffcore.model_card`), with Hub front matter
    <component>/       one folder per component (``save_pretrained`` of a
                       :class:`~diffcore.pretrained.PretrainedModel`, or the component's own format)

A subclass says what it is made of (:meth:`components`), what else describes it (:meth:`pipeline_config`),
and how to put it back together (:meth:`from_parts`). Saving writes a complete new folder beside the old one
and swaps it in, so a failed save leaves the previous pipeline intact.
"""

from __future__ import annotations

import abc
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from diffcore.io import read_json, write_json, write_text
from diffcore.model_card import CARD_NAME, ModelCardInfo, render_model_card

__all__ = ["PIPELINE_FILE", "Pipeline", "read_pipeline_meta"]

PIPELINE_FILE = "pipeline.json"
FORMAT = 1

P = TypeVar("P", bound="Pipeline")


def read_pipeline_meta(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """``pipeline.json`` of a saved pipeline folder, with an error naming the file when it is missing or bad."""
    path = Path(directory) / PIPELINE_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"pipeline: {Path(directory)} has no {PIPELINE_FILE} (expected a saved pipeline)"
        )
    try:
        meta = read_json(path, "a saved pipeline's description")
    except ValueError as exc:
        raise ValueError(f"pipeline: {exc}") from exc
    if not isinstance(meta.get("config", {}), dict):
        raise ValueError(f"pipeline: {path} must hold a JSON object with a 'config' object")
    components = meta.get("components", [])
    if not isinstance(components, list) or not all(isinstance(c, str) for c in components):
        raise ValueError(f"pipeline: {path}: 'components' must be a list of folder names, got {components!r}")
    return meta


class Pipeline(abc.ABC):
    """Base class of every modality's pipeline: saving, loading and moving between devices.

    Subclasses implement :meth:`components`, :meth:`pipeline_config` and :meth:`from_parts`; they may
    override :meth:`save_component` / :meth:`load_component` for parts that are not
    :class:`~diffcore.pretrained.PretrainedModel` (a transformers text encoder, a tokenizer file).
    """

    pipeline_file: ClassVar[str] = PIPELINE_FILE
    _card: ModelCardInfo | None = None

    @property
    def card(self) -> ModelCardInfo:
        """What the model card says about training, metrics and licence (kept in ``pipeline.json``)."""
        if self._card is None:
            self._card = ModelCardInfo()
        return self._card

    @card.setter
    def card(self, info: ModelCardInfo) -> None:
        self._card = info

    # ------------------------------------------------------------------ what a subclass provides

    @abc.abstractmethod
    def components(self) -> dict[str, Any]:
        """The parts saved in their own folders, by name (``None`` values are skipped)."""

    @abc.abstractmethod
    def pipeline_config(self) -> dict[str, Any]:
        """The JSON-serialisable settings that, with the components, rebuild the pipeline."""

    @classmethod
    @abc.abstractmethod
    def from_parts(cls: type[P], config: dict[str, Any], components: dict[str, Any]) -> P:
        """Rebuild the pipeline from :meth:`pipeline_config`'s output and the loaded components."""

    def save_component(self, name: str, component: Any, folder: Path) -> None:
        """Write one component into ``folder`` (default: its ``save_pretrained``)."""
        if not hasattr(component, "save_pretrained"):
            raise TypeError(
                f"component {name!r}: {type(component).__name__} has no save_pretrained; "
                f"override {type(self).__name__}.save_component"
            )
        component.save_pretrained(folder)

    @classmethod
    def load_component(cls, name: str, folder: Path, device: torch.device) -> Any:
        """Read one component from ``folder`` (default: :func:`diffcore.pretrained.load_pretrained`)."""
        from diffcore.pretrained import load_pretrained

        return load_pretrained(folder, device=device)

    # ------------------------------------------------------------------ shared behaviour

    def modules(self) -> list[nn.Module]:
        """The components that are ``nn.Module`` (moved by :meth:`to`)."""
        return [c for c in self.components().values() if isinstance(c, nn.Module)]

    @property
    def device(self) -> torch.device:
        """The device of the first parameter of the first module component (the CPU when none has any)."""
        for module in self.modules():
            for p in module.parameters():
                return p.device
        return torch.device("cpu")

    def to(self: P, device: str | torch.device) -> P:
        """Move every module component to ``device``; returns ``self``."""
        for module in self.modules():
            module.to(device)
        return self

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write the pipeline folder at ``directory`` (replacing an existing pipeline there, atomically)."""
        target = Path(directory)
        if target.exists() and not target.is_dir():
            raise NotADirectoryError(f"directory: {target} exists and is not a folder")
        if target.is_dir() and any(target.iterdir()) and not (target / self.pipeline_file).is_file():
            raise FileExistsError(
                f"directory: {target} holds files but no saved pipeline; refusing to replace it"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.saving-"))
        try:
            saved = {}
            for name, component in self.components().items():
                if component is None:
                    continue
                self.save_component(name, component, staging / name)
                saved[name] = component
            cls = type(self)
            settings = self.pipeline_config()
            write_json(
                {
                    "pipeline_class": f"{cls.__module__}:{cls.__qualname__}",
                    "format": FORMAT,
                    "diffcore_version": _diffcore_version(),
                    "config": settings,
                    "components": list(saved),
                    "card": self.card.to_dict(),
                },
                staging / self.pipeline_file,
            )
            card = render_model_card(cls, self.card, saved, settings, _diffcore_version())
            write_text(staging / CARD_NAME, card)
            os.chmod(staging, 0o777 & ~_umask())
            _swap_in(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    @classmethod
    def from_pretrained(
        cls: type[P], directory: str | os.PathLike[str], device: str | torch.device = "cpu"
    ) -> P:
        """Load a folder written by :meth:`save_pretrained` onto ``device``."""
        folder = Path(directory)
        meta = read_pipeline_meta(folder)
        saved = str(meta.get("pipeline_class", ""))
        if saved and saved.rpartition(":")[2] != cls.__qualname__ and cls is not Pipeline:
            raise ValueError(f"pipeline: {folder} holds a {saved}, not a {cls.__module__}:{cls.__qualname__}")
        dev = torch.device(device)
        components: dict[str, Any] = {}
        for name in meta.get("components", []):
            sub = folder / name
            if not sub.is_dir():
                raise FileNotFoundError(
                    f"pipeline: {folder} lists component {name!r} but has no {name}/ folder"
                )
            components[name] = cls.load_component(name, sub, dev)
        try:
            pipe = cls.from_parts(meta.get("config", {}), components)
            pipe.card = ModelCardInfo.from_dict(meta.get("card"))
            return pipe
        except (KeyError, TypeError, ValueError) as exc:
            detail = f"missing setting {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ValueError(
                f"pipeline: {folder / PIPELINE_FILE} does not describe a usable {cls.__name__} ({detail})"
            ) from exc


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _swap_in(staging: Path, target: Path) -> None:
    """Replace ``target`` by ``staging``: rename the old folder aside, rename the new one in, delete the old."""
    if not target.exists():
        os.replace(staging, target)
        return
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
    os.rmdir(old)
    os.replace(target, old)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _diffcore_version() -> str:
    from diffcore import __version__

    return __version__
