"""Building-block workflow nodes of diff-image: the parts of ``image.sample`` as separate, typed nodes.

``image.load_lora`` / ``image.load_controlnet`` (a saved adapter folder applied to a copy of a loaded pipeline)
-> ``image.encode_prompt`` (prompts or labels -> ``conditioning:image``: :meth:`ImagePipeline.condition`, then
the text encoder once, :meth:`ImagePipeline.encode_condition`)
-> ``image.sample_latents`` (pipeline + conditioning + sampler / guidance -> ``latents:image``,
:meth:`ImagePipeline.sample_latents`) -> ``image.decode`` (latents -> ``OUT/grid.png`` and ``OUT/images/``,
:meth:`ImagePipeline.decode_batches`). Chained with the same settings and seed they give the images of ``image.sample``
(the same functions; the text features computed once rather than at every step). The modality contract hands them to
:func:`diffcore.workflows.default_registry` (``Modality.nodes``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from diffcore.config import field_default
from diffcore.device import resolve_device
from diffcore.rng import make_generator
from diffcore.sampling import available as samplers
from diffcore.workflows.builtin import (
    GuidanceSetting,
    PromptSetting,
    SamplerSetting,
    folder_fingerprint,
)
from diffcore.workflows.graph import GraphError
from diffcore.workflows.nodes import NodeCall, NodeType, Param, Port
from torch import Tensor

from diff_image.config import ImageSampleConfig
from diff_image.pipeline.core import CONTROLNET_PREFIX, ImagePipeline

__all__ = ["ImageConditioning", "ImageLatents", "image_nodes"]

PIPELINE = "pipeline:image"
CONDITIONING = "conditioning:image"
LATENTS = "latents:image"


@dataclass(frozen=True)
class ImageConditioning:
    """Network keyword arguments for ``n`` samples: ``cond`` (labels ``y``, or the text encoder's ``context``,
    ``context_mask`` and ``pooled``, and ``control_maps``; batch-first, ``n`` rows) and ``uncond`` (the null condition
    of classifier-free guidance)."""

    n: int
    cond: dict[str, Tensor]
    uncond: dict[str, Tensor]


@dataclass(frozen=True)
class ImageLatents:
    """Samples in the pipeline's model space ``(n, *sample_shape)`` (scaled latents of a latent pipeline), and
    the batch size they were drawn with (the decoder uses the same)."""

    latents: Tensor
    batch_size: int


def _default(key: str) -> Any:
    value = field_default(ImageSampleConfig, key)
    return list(value) if isinstance(value, tuple) else value


def _error(call: NodeCall, port: str, message: str) -> GraphError:
    return GraphError(f"node {call.node_id!r} {port!r}: {message}", node=call.node_id, port=port)


def _folder(call: NodeCall, what: str) -> Any:
    folder = call.path(call.params["path"])
    if not folder.is_dir():
        raise _error(call, "path", f"{folder} is not a folder (expected {what})")
    return folder


def _load_lora(call: NodeCall) -> dict[str, Any]:
    from diff_image.lora import load_adapters

    folder = _folder(call, "a saved LoRA adapter: adapter_config.json + adapter_model.safetensors")
    pipe: ImagePipeline = copy.deepcopy(
        call.inputs["pipeline"]
    )  # the loaded pipeline stays as it was (cache)
    taken = sum(name.startswith("adapter_") for name in getattr(pipe.model, "peft_config", {}) or {})
    load_adapters(pipe, [folder], [float(call.params["weight"])], names=[f"adapter_{taken}"])
    return {"pipeline": pipe}


def _load_controlnet(call: NodeCall) -> dict[str, Any]:
    from diff_image.pipeline.control import CONTROL_CHANNELS

    folder = _folder(
        call, f"a saved ControlNet, e.g. OUT/pipeline/{CONTROLNET_PREFIX}<kind> of diffuse image control"
    )
    kind = call.params["kind"] or folder.name.removeprefix(CONTROLNET_PREFIX)
    if kind not in CONTROL_CHANNELS:
        raise _error(call, "kind", f"expected one of {sorted(CONTROL_CHANNELS)} (or a folder named "
                     f"{CONTROLNET_PREFIX}<kind>), got {kind!r}")  # fmt: skip
    pipe: ImagePipeline = copy.copy(call.inputs["pipeline"])
    pipe.controlnets = dict(pipe.controlnets)
    pipe.controlnets[kind] = ImagePipeline.load_component("controlnet", folder, pipe.device).eval()
    pipe.control_scales = {**pipe.control_scales, kind: float(call.params["strength"])}
    return {"pipeline": pipe}


def _encode_prompt(call: NodeCall) -> dict[str, Any]:
    pipe: ImagePipeline = call.inputs["pipeline"]
    p = call.params
    n = p["num_samples"]
    if n < 1:
        raise _error(call, "num_samples", f"expected >= 1, got {n}")
    given: PromptSetting | None = call.inputs.get("prompt")
    prompts = list(given.prompts) if given is not None else list(p["prompts"])
    try:
        cond, uncond = pipe.condition(n, list(p["labels"]) or None, prompts or None)
    except ValueError as exc:
        raise _error(call, "prompts" if prompts else "labels", str(exc)) from exc
    cond, uncond = (
        pipe.encode_condition(cond),
        pipe.encode_condition(uncond),
    )  # the text encoder runs here, once
    if p["control_image"]:
        cond["control_maps"] = _control_maps(call, pipe, n)
    elif pipe.controlnets:
        raise _error(call, "control_image", f"the pipeline has ControlNets {list(pipe.controlnets)}; expected "
                     "a picture to read their control maps from")  # fmt: skip
    return {"conditioning": ImageConditioning(n, cond, uncond)}


def _control_maps(call: NodeCall, pipe: ImagePipeline, n: int) -> Tensor:
    from diff_image.io import read_png
    from diff_image.pipeline.control import control_maps_from_images

    if not pipe.controlnets:
        raise _error(call, "control_image", "this pipeline has no ControlNet (connect image.load_controlnet)")
    f = call.path(call.params["control_image"])
    if not f.is_file():
        raise _error(call, "control_image", f"{f} is not a file (expected an RGB picture)")
    picture = read_png(f, "RGB")
    if tuple(picture.shape) != pipe.image_shape:
        raise _error(call, "control_image", f"expected a picture of {pipe.image_shape[2]}x{pipe.image_shape[1]} "
                     f"pixels (the pipeline's images), got {picture.shape[2]}x{picture.shape[1]}")  # fmt: skip
    picture = picture.unsqueeze(0)
    maps = control_maps_from_images(picture, list(pipe.controlnets))
    return maps.expand(n, -1, -1, -1).to(pipe.device)


def _sample_latents(call: NodeCall) -> dict[str, Any]:
    pipe: ImagePipeline = call.inputs["pipeline"]
    c: ImageConditioning = call.inputs["conditioning"]
    p = call.params
    sampler, steps, guidance = p["sampler"], p["steps"], p["guidance"]
    s: SamplerSetting | None = call.inputs.get("sampler")
    options: dict[str, Any] = {}
    if s is not None:
        sampler, steps = s.sampler or sampler, s.steps or steps
        if s.grid is not None:
            options["grid"] = s.grid
    g: GuidanceSetting | None = call.inputs.get("guidance")
    if g is not None:
        guidance = g.scale
    if steps < 1:
        raise _error(call, "steps", f"expected >= 1, got {steps}")
    pipe.to(resolve_device(call.device))
    cond = {k: v.to(pipe.device) for k, v in c.cond.items()}
    uncond = {k: v.to(pipe.device) for k, v in c.uncond.items()}
    gen = make_generator(p["seed"], pipe.device)
    latents = pipe.sample_latents(
        c.n, cond, uncond, sampler, steps, guidance, gen, p["batch_size"], **options
    )
    return {"latents": ImageLatents(latents, p["batch_size"])}


def _decode(call: NodeCall) -> dict[str, Any]:
    from diff_image.io import save_grid, save_images

    assert call.out_dir is not None
    pipe: ImagePipeline = call.inputs["pipeline"]
    z: ImageLatents = call.inputs["latents"]
    try:
        images = pipe.decode_batches(z.latents, z.batch_size)
    except ValueError as exc:
        raise _error(call, "latents", str(exc)) from exc
    save_grid(images, call.out_dir / "grid.png")
    save_images(images, call.out_dir / "images")
    return {"files": call.out_dir}


def image_nodes() -> list[NodeType]:
    """The building-block node types (see the module docstring)."""
    pipe_in = Port("pipeline", PIPELINE, help="A loaded image pipeline.")
    pipe_out = Port("pipeline", PIPELINE)
    return [
        NodeType(
            name="image.load_lora",
            title="image load LoRA",
            category="image",
            run=_load_lora,
            inputs=(pipe_in,),
            outputs=(pipe_out,),
            params=(
                Param(
                    "path",
                    "path",
                    "",
                    required=True,
                    help="A LoRA adapter folder (OUT/adapter of image lora).",
                ),
                Param("weight", "float", 1.0, help="The adapter's weight."),
            ),
            description="A copy of the pipeline with a saved LoRA adapter (PEFT format) loaded and active.",
            fingerprint=lambda call: folder_fingerprint(call.path(call.params["path"])),
        ),
        NodeType(
            name="image.load_controlnet",
            title="image load ControlNet",
            category="image",
            run=_load_controlnet,
            inputs=(pipe_in,),
            outputs=(pipe_out,),
            params=(
                Param(
                    "path",
                    "path",
                    "",
                    required=True,
                    help=f"A saved ControlNet folder (OUT/pipeline/{CONTROLNET_PREFIX}<kind> of image control).",
                ),
                Param("kind", "str", "", help="Its control kind; empty: read from the folder's name."),
                Param("strength", "float", 1.0, help="Scales its residuals (0 = the base model alone)."),
            ),
            description="A copy of the pipeline with one more ControlNet; encode_prompt then needs a control image.",
            fingerprint=lambda call: folder_fingerprint(call.path(call.params["path"])),
        ),
        NodeType(
            name="image.encode_prompt",
            title="image encode prompt",
            category="image",
            run=_encode_prompt,
            inputs=(pipe_in, Port("prompt", "prompt", optional=True, help="Overrides the prompts.")),
            outputs=(Port("conditioning", CONDITIONING),),
            params=(
                Param("num_samples", "int", _default("num_samples"), help="How many samples to condition."),
                Param(
                    "prompts", "list", [], item="str", help="Captions, cycled (text-conditioned pipelines)."
                ),
                Param(
                    "labels", "list", [], item="int", help="Class labels, cycled (class-conditional ones)."
                ),
                Param(
                    "control_image", "path", "", help="A picture whose control maps drive the ControlNets."
                ),
            ),
            description="Prompts or labels -> the network's condition and null condition (the text encoder's "
            "features, or labels; control maps) for sample_latents.",
        ),
        NodeType(
            name="image.sample_latents",
            title="image sample latents",
            category="image",
            run=_sample_latents,
            inputs=(
                pipe_in,
                Port("conditioning", CONDITIONING, help="From image.encode_prompt."),
                Port("sampler", "sampler", optional=True, help="Overrides sampler / steps / grid."),
                Port("guidance", "guidance", optional=True, help="Overrides the guidance scale."),
            ),
            outputs=(Port("latents", LATENTS),),
            params=(
                Param("sampler", "choice", _default("sampler"), choices=tuple(samplers()), help="Sampler."),
                Param("steps", "int", _default("steps"), help="Grid intervals."),
                Param(
                    "guidance",
                    "float",
                    _default("guidance"),
                    nullable=True,
                    help="Classifier-free guidance scale; empty: 2 on a conditional model, none otherwise.",
                ),
                Param(
                    "seed", "int", _default("seed"), help="Seeds the noise (the same seed as image.sample's)."
                ),
                Param("batch_size", "int", _default("batch_size"), help="Samples per sampling call."),
            ),
            description="Sample in the model's space (latents of a latent pipeline), not decoded; live previews "
            "show the x0 estimate while it runs.",
        ),
        NodeType(
            name="image.decode",
            title="image decode",
            category="image",
            run=_decode,
            inputs=(pipe_in, Port("latents", LATENTS, help="From image.sample_latents.")),
            outputs=(Port("files", "files", help="OUT/grid.png and OUT/images/."),),
            params=(),
            description="Latents -> images through the pipeline's autoencoder; writes grid.png and images/.",
            writes_files=True,
        ),
    ]
