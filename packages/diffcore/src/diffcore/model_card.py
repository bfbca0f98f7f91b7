"""Model cards: the README.md every saved pipeline folder carries, in the Hugging Face Hub's form.

A card is Markdown with YAML front matter (``library_name``, ``license``, ``tags``, ``pipeline_tag`` where one
fits), then what the model is (its class and components with their sizes), how it was trained (steps, data,
the configuration), what it measured (when :meth:`ModelCardInfo.record_metrics` was given numbers), and the
exact command and code that sample it. With ``pipeline.json`` and one ``config.json`` + ``model.safetensors``
per component, the folder is what ``huggingface_hub.upload_folder`` takes as it is.

:class:`~diffcore.pipeline.Pipeline` keeps a :class:`ModelCardInfo` (``pipe.card``), stores it in
``pipeline.json`` and renders the card on every :meth:`~diffcore.pipeline.Pipeline.save_pretrained`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")

__all__ = [
    "CARD_NAME",
    "PIPELINE_TAGS",
    "ModelCardInfo",
    "hub_folder_problems",
    "modality_of",
    "render_model_card",
]

CARD_NAME = "README.md"

PIPELINE_TAGS = {
    "image": "unconditional-image-generation",
    "language": "text-generation",
    "timeseries": "time-series-forecasting",
}
"""Hub ``pipeline_tag`` of a modality, where the Hub has one that fits (none for proteins, crystals, ...)."""


def _jsonable(value: Any) -> Any:
    """``value`` as JSON types (dataclasses as dicts, tuples as lists, non-finite floats and others as text)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


@dataclasses.dataclass
class ModelCardInfo:
    """What a pipeline's card says beyond what the pipeline itself holds.

    Attributes:
        training: how it was trained: ``steps``, ``data`` and the full ``config`` (see :meth:`record_training`).
        metrics: measured numbers by name (see :meth:`record_metrics`).
        license: the licence field of the card (an SPDX id, or ``"other"``).
        description: one paragraph written by the person sharing the model.
    """

    training: dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    license: str = "other"
    description: str = ""

    def record_training(self, config: Any) -> None:
        """Keep a training configuration (a modality's ``<X>TrainConfig``, with the core's ``TrainConfig`` as its
        ``train``): its steps, every setting whose name mentions data, and the whole of it."""
        settings = _jsonable(config)
        if not isinstance(settings, dict):
            raise TypeError(
                f"config: expected a dataclass or dict of training settings, got {type(config).__name__}"
            )
        train = settings.get("train", settings)
        data = {k: v for k, v in settings.items() if "data" in k.lower() and v not in (None, "", [], {})}
        self.training = {"steps": train.get("steps") if isinstance(train, dict) else None, "data": data,
                         "config": settings}  # fmt: skip

    def record_metrics(self, metrics: dict[str, Any]) -> None:
        """Add measured numbers (what a modality's ``evaluate`` returns) to the card."""
        self.metrics.update(_jsonable(metrics))

    def to_dict(self) -> dict[str, Any]:
        """The card's information as JSON types (stored in ``pipeline.json``)."""
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ModelCardInfo:
        """Read back :meth:`to_dict`'s output (missing keys take their defaults)."""
        data = data or {}
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def modality_of(module: str) -> str | None:
    """The ``diffuse`` subcommand (entry point name) of the installed modality package ``module`` belongs to."""
    root = module.split(".")[0]
    for ep in entry_points(group="diffcore.modalities"):
        if ep.value.split(":")[0].split(".")[0] == root:
            return ep.name
    return None


def _count(component: Any) -> str:
    params = getattr(component, "parameters", None)
    if not callable(params):
        return "-"
    n = sum(p.numel() for p in params())
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n:,}"


def _yaml_list(items: list[str]) -> str:
    return "".join(f"\n  - {json.dumps(i)}" for i in items)


def render_model_card(
    cls: type, info: ModelCardInfo, components: dict[str, Any], settings: dict[str, Any], version: str
) -> str:
    """The README.md of a pipeline of class ``cls`` with ``components`` (saved in their own folders) and
    ``settings`` (its ``pipeline_config``), saved by diffcore ``version``."""
    modality = modality_of(cls.__module__)
    package = cls.__module__.split(".")[0]
    tags = ["diffcore", "diffusion", *([modality] if modality else []), cls.__name__]
    front = f"---\nlibrary_name: diffcore\nlicense: {json.dumps(info.license)}\ntags:{_yaml_list(tags)}\n"
    if modality in PIPELINE_TAGS:
        front += f"pipeline_tag: {PIPELINE_TAGS[modality]}\n"
    front += "---\n"
    title = f"# {cls.__name__}" + (f" (`diffuse {modality}`)" if modality else "")
    rows = "\n".join(
        f"| `{name}/` | `{type(c).__module__}.{type(c).__qualname__}` | {_count(c)} |"
        for name, c in components.items()
    )
    what = (
        f"{info.description}\n\n" if info.description else ""
    ) + f"A diffusion pipeline of the `{package}` package, saved by diffcore {version}. Its parts:\n\n"
    what += f"| folder | class | parameters |\n| --- | --- | --- |\n{rows}\n"
    training = "Not recorded: this pipeline was assembled, not trained through the package's `train`.\n"
    if info.training:
        data = json.dumps(info.training.get("data", {}), indent=2, sort_keys=True)
        config = json.dumps(info.training.get("config", {}), indent=2, sort_keys=True)
        training = (
            f"- steps: {info.training.get('steps')}\n- data:\n\n```json\n{data}\n```\n\n"
            f"The whole training configuration:\n\n```json\n{config}\n```\n"
        )
    if info.metrics:
        metrics = "| metric | value |\n| --- | --- |\n" + "\n".join(
            f"| {k} | {v} |" for k, v in sorted(info.metrics.items())
        )
    else:
        metrics = "Not measured yet" + (
            f": `diffuse {modality} evaluate --pipeline .` measures it.\n" if modality else ".\n"
        )
    command = f"diffuse {modality} sample --pipeline path/to/this/folder --out samples" if modality else ""
    code = (
        f"from {package} import {cls.__name__}, sample\n\n"
        f'pipe = {cls.__name__}.from_pretrained("path/to/this/folder", device="cuda")\n'
        "out = sample(pipe, config)  # config: the package's SampleConfig"
    )
    use = (f"```bash\n{command}\n```\n\n" if command else "") + f"```python\n{code}\n```\n"
    settings_json = json.dumps(_jsonable(settings), indent=2, sort_keys=True)
    return (
        f"{front}\n{title}\n\n{what}\n## How it was trained\n\n{training}\n## Metrics\n\n{metrics}\n\n"
        f"## Sampling\n\nInstall `{package.replace('_', '-')}` (it brings `diffcore`), then:\n\n{use}\n"
        f"## Files\n\n`pipeline.json` names the class and holds these settings:\n\n```json\n{settings_json}\n```\n\n"
        "Each component folder holds `config.json` and `model.safetensors` (or the component's own files); "
        "nothing is pickled.\n\n"
        f"## Licence\n\n`{info.license}`\n"
    )


def hub_folder_problems(directory: str | os.PathLike[str]) -> list[str]:
    """What keeps a saved pipeline folder from being shared as it is (empty when it is ready): a missing card or
    ``pipeline.json``, pickled files, a component folder with ``config.json`` but no safetensors weights."""
    folder = Path(directory)
    problems = [f"no {name}" for name in (CARD_NAME, "pipeline.json") if not (folder / name).is_file()]
    for path in sorted(folder.rglob("*")):
        if path.suffix in PICKLE_SUFFIXES:
            problems.append(f"{path.relative_to(folder)} is a pickle; save it as safetensors")
        if path.name == "config.json" and not any(path.parent.glob("*.safetensors")):
            problems.append(f"{path.parent.relative_to(folder)}/ has config.json but no .safetensors weights")
    return problems
