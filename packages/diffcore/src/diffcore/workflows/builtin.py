"""The nodes every workflow can use, whatever modality is installed: sampler settings, guidance, prompts, LoRA
adapters, and saving a node's files by kind (image, video, audio, structure).

The settings nodes carry values to a modality's command node (:mod:`diffcore.workflows.commands`), which puts
them into its configuration: ``sampler`` sets ``sampler`` / ``steps`` / ``grid``, ``guidance`` sets ``guidance``
or ``guidance_scale``, ``prompt`` sets ``prompts``, ``captions`` or ``prompt``, ``lora`` loads adapters.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffcore.io import atomic_path
from diffcore.workflows.graph import GraphError
from diffcore.workflows.nodes import NodeCall, NodeRegistry, NodeType, Param, Port

__all__ = [
    "SAVE_KINDS",
    "GuidanceSetting",
    "LoraSetting",
    "PromptSetting",
    "SamplerSetting",
    "add_builtin_nodes",
]

SAVE_KINDS: dict[str, tuple[str, ...]] = {
    "image": (".png", ".jpg", ".jpeg", ".webp", ".gif"),
    "video": (".mp4", ".webm", ".gif"),
    "audio": (".wav", ".flac", ".mp3", ".ogg"),
    "structure": (".pdb", ".cif", ".mmcif", ".ply", ".obj", ".xyz"),
    "files": (),
}
"""``save.<kind>`` copies the files with these suffixes (``files``: every file)."""


@dataclass(frozen=True)
class SamplerSetting:
    """A named sampler, its step count and (where the command has one) its time grid; None leaves the default."""

    sampler: str | None
    steps: int | None
    grid: str | None


@dataclass(frozen=True)
class GuidanceSetting:
    """A classifier-free guidance scale (1 = no guidance)."""

    scale: float


@dataclass(frozen=True)
class PromptSetting:
    """Prompts (captions), one per sample cycle."""

    prompts: tuple[str, ...]


@dataclass(frozen=True)
class LoraSetting:
    """LoRA adapter folders and their weights, in order."""

    paths: tuple[Path, ...]
    weights: tuple[float, ...]


def _sampler_node() -> NodeType:
    from diffcore.sampling import available
    from diffcore.sampling.grids import available as grids

    def run(call: NodeCall) -> dict[str, Any]:
        p = call.params
        return {"sampler": SamplerSetting(p["sampler"] or None, p["steps"], p["grid"] or None)}

    return NodeType(
        name="sampler",
        title="Sampler",
        category="sampling",
        run=run,
        outputs=(Port("sampler", "sampler"),),
        params=(
            Param(
                "sampler",
                "choice",
                "",
                choices=("", *available()),
                help="A diffcore sampler ('' = the command's).",
            ),
            Param("steps", "int", None, nullable=True, help="Sampler steps (empty = the command's)."),
            Param(
                "grid", "choice", "", choices=("", *grids()), help="Time grid, for commands that take one."
            ),
        ),
        description="A named sampler, step count and time grid for a sample node.",
    )


def _guidance_node() -> NodeType:
    def run(call: NodeCall) -> dict[str, Any]:
        scale = call.params["scale"]
        if scale < 0:
            raise GraphError(
                f"node {call.node_id!r} param 'scale': expected >= 0, got {scale}",
                node=call.node_id,
                port="scale",
            )
        return {"guidance": GuidanceSetting(float(scale))}

    return NodeType(
        name="guidance",
        title="Guidance",
        category="sampling",
        run=run,
        outputs=(Port("guidance", "guidance"),),
        params=(Param("scale", "float", 2.0, help="Classifier-free guidance scale (1 = none)."),),
        description="Classifier-free guidance scale for a sample node.",
    )


def _prompt_node() -> NodeType:
    def run(call: NodeCall) -> dict[str, Any]:
        lines = tuple(line.strip() for line in call.params["text"].splitlines() if line.strip())
        if not lines:
            raise GraphError(
                f"node {call.node_id!r} param 'text': expected at least one prompt line",
                node=call.node_id,
                port="text",
            )
        return {"prompt": PromptSetting(lines)}

    return NodeType(
        name="prompt",
        title="Prompt",
        category="conditioning",
        run=run,
        outputs=(Port("prompt", "prompt"),),
        params=(Param("text", "text", "", required=True, help="One prompt per line."),),
        description="Prompts (captions) for a text-conditioned sample node; the pipeline's text encoder encodes them.",
    )


def _lora_node() -> NodeType:
    def run(call: NodeCall) -> dict[str, Any]:
        folder = call.path(call.params["path"])
        if not folder.is_dir():
            raise GraphError(
                f"node {call.node_id!r} param 'path': {folder} is not a folder (expected a saved LoRA adapter)",
                node=call.node_id,
                port="path",
            )
        return {"lora": LoraSetting((folder,), (float(call.params["weight"]),))}

    return NodeType(
        name="lora",
        title="Load LoRA",
        category="conditioning",
        run=run,
        outputs=(Port("lora", "lora"),),
        params=(
            Param(
                "path",
                "path",
                "",
                required=True,
                help="A LoRA adapter folder (diffuse image lora writes one).",
            ),
            Param("weight", "float", 1.0, help="The adapter's weight."),
        ),
        description="A LoRA adapter for a sample node of a modality that loads adapters.",
        fingerprint=lambda call: folder_fingerprint(call.path(call.params["path"])),
    )


def folder_fingerprint(folder: Path) -> str:
    """The relative path, size and modification time of every file under ``folder`` (a cache key part: a
    re-saved pipeline or adapter runs its readers again)."""
    if not folder.is_dir():
        return "missing"
    rows = []
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            st = f.stat()
            rows.append(f"{f.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(rows)


def _save_node(kind: str) -> NodeType:
    suffixes = SAVE_KINDS[kind]

    def run(call: NodeCall) -> dict[str, Any]:
        src: Path = call.inputs["files"]
        dest = call.path(call.params["folder"])
        picked = [
            f
            for f in sorted(src.rglob("*"))
            if f.is_file() and (not suffixes or f.suffix.lower() in suffixes)
        ]
        if not picked:
            what = "files" if not suffixes else f"{kind} files ({', '.join(suffixes)})"
            raise GraphError(
                f"node {call.node_id!r} input 'files': no {what} in {src}", node=call.node_id, port="files"
            )
        for f in picked:
            target = dest / f.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                shutil.copyfile(f, tmp)
        return {"files": dest, "saved": [dest / f.relative_to(src) for f in picked]}

    what = "every file" if not suffixes else f"the {kind} files ({', '.join(suffixes)})"
    return NodeType(
        name=f"save.{kind}",
        title=f"Save {kind}",
        category="save",
        run=run,
        inputs=(Port("files", "files", help="A node's output folder."),),
        outputs=(Port("files", "files"),),
        params=(Param("folder", "path", "", required=True, help="Destination folder (made if missing)."),),
        description=f"Copy {what} of a node's output into a folder; the UI's gallery shows them.",
        cacheable=False,
    )


def add_builtin_nodes(registry: NodeRegistry) -> NodeRegistry:
    """Add the sampler, guidance, prompt, LoRA and save nodes to ``registry``."""
    for node in (_sampler_node(), _guidance_node(), _prompt_node(), _lora_node()):
        registry.add(node)
    for kind in SAVE_KINDS:
        registry.add(_save_node(kind))
    return registry
