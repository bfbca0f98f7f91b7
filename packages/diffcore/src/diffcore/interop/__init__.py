"""Interoperability with the tools the field shares: diffusers model folders, scheduler configurations and LoRA
files (diffusers / PEFT and kohya key formats). diffusers itself is never imported: the converters read and
write safetensors and JSON.

- :mod:`diffcore.interop.diffusers`: DiT / MMDiT / U-Net <-> ``DiTTransformer2DModel`` /
  ``SD3Transformer2DModel`` / ``UNet2DConditionModel`` folders.
- :mod:`diffcore.interop.schedulers`: a diffusers ``scheduler_config.json`` as our schedule, prediction, time
  grid and sampler.
- :mod:`diffcore.interop.lora`: LoRA adapters in diffusers / PEFT and kohya files.
"""
