"""Text: a block diffusion language model (BD3-LM): autoregressive over blocks, masked diffusion within a
block (diff-language).

The default corpus here is English prose from Python's own documentation (``pydoc`` topics, offline), with a
byte-level BPE trained on it. ``train`` optimises the NELBO of masked (absorbing) diffusion inside each block
of 4 tokens, conditioned on the clean previous blocks through a block-causal mask; ``sample`` continues a
prompt block by block (any length, a KV cache over finished blocks); ``evaluate`` reports the validation NELBO
in nats per token and the perplexity bound it gives.

    uv run python examples/language_bd3lm.py                # a small model, a few CPU minutes
    uv run python examples/language_bd3lm.py --steps 20000  # towards the GPU benchmark (diffuse bench language)
"""

import argparse
from pathlib import Path

from diff_language import (
    LanguageEvaluateConfig,
    LanguageSampleConfig,
    LanguageTrainConfig,
    evaluate,
    sample,
    train,
)
from diffcore.config import apply_overrides
from diffcore.io import write_text

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=1500)
parser.add_argument("--smoke", action="store_true", help="the smallest run (what CI runs)")
parser.add_argument("--out", type=Path, default=Path("runs/examples/language_bd3lm"))
args = parser.parse_args()
steps, dim = (4, 16) if args.smoke else (args.steps, 128)

config = apply_overrides(  # the package's defaults, then these settings (as `--set key=value` would)
    LanguageTrainConfig(),
    {
        "corpus": {"kind": "synthetic", "train_tokens": 8192} if args.smoke else {"kind": "pydoc", "bpe_vocab": 512},
        "model": {"seq_len": 64, "block_size": 4, "dim": dim, "n_layers": 1 if args.smoke else 4, "n_heads": 4},
        "batch_size": 32, "eval_windows": 8 if args.smoke else 64, "eval_repeats": 2,
        "train": {"steps": steps, "warmup_steps": min(100, steps // 2), "device": "cpu", "progress_bar": False,
                  "output_dir": str(args.out / "run")},
    },
)  # fmt: skip
pipe = train(config)  # the run and pipeline/ under args.out / "run"
texts = sample(
    pipe,
    LanguageSampleConfig(prompt="The ", num_samples=2, num_tokens=16 if args.smoke else 96, device="cpu"),
)
args.out.mkdir(parents=True, exist_ok=True)
write_text(args.out / "samples.txt", "\n\n".join(texts) + "\n")
print("\n---\n".join(texts))
print(
    {
        k: round(v, 3)
        for k, v in evaluate(pipe, LanguageEvaluateConfig(device="cpu")).items()
        if isinstance(v, float)
    }
)
