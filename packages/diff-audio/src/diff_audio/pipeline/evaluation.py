"""Scoring a pipeline on held-out synthetic captions, whose every parameter is known.

For each held-out example (seed ``data_seed``, never the training seed) the pipeline generates a clip from the
example's caption and ``seconds_total``; then:

- ``pitch_accuracy`` (notes): YIN f0 within a semitone of the caption's note (pitched instruments);
- ``instrument_accuracy``: the instrument classifier (trained here on a third seed) names the caption's
  instrument;
- ``timing_accuracy`` (pitched instruments, whose notes sustain): the sound ends within 0.25 s of
  ``seconds_total``; ``timing_mae_s`` the mean absolute error;
- ``fad_local`` and its floor ``fad_local_floor`` (two real splits of the same size), ``fad_local_ratio``;
- ``structure_score`` (pieces): repeated sections more alike than different ones (0.5 = chance);
- ``onset_f1`` (phrases): generated onsets against the caption's note grid, 50 ms tolerance;
- ``silence_rate``, ``clipping_rate``;
- the VAE on real held-out clips: ``vae_si_sdr_db``, ``vae_mrstft``, ``vae_compression``, ``vae_latent_effect``;
- ``a2a_*`` (notes, at least two pitched instruments): audio-to-audio at ``a2a_strength`` from a clip of one
  instrument to a caption naming another and the same note; success when the output keeps the source pitch
  (within a semitone) and the classifier hears the new instrument.
"""

from __future__ import annotations

import math
import time

import torch
from diffcore.rng import make_generator
from torch import Tensor
from tqdm.auto import tqdm

from diff_audio.config import AudioEvaluateConfig
from diff_audio.data.synth import PITCHED, SynthConfig, SyntheticMusic, _caption
from diff_audio.metrics import features as F
from diff_audio.metrics import signal as S
from diff_audio.pipeline.core import AudioPipeline

__all__ = ["a2a_transfer", "evaluate_and_sample", "heldout_set", "vae_reconstruction"]


def heldout_set(pipe: AudioPipeline, kind: str, n: int, seed: int) -> SyntheticMusic:
    """The synthetic set the pipeline was trained on, drawn from another ``seed``."""
    info = pipe.data_info
    if info.get("source") not in (None, "synthetic"):
        raise ValueError(
            "pipeline: trained on a folder of real audio; evaluate scores against the synthetic set's known "
            "parameters (train on the synthetic set, or score folder models with the metrics functions)"
        )
    cfg = SynthConfig(
        kind=kind, length=n, seed=seed, sample_rate=pipe.sample_rate, channels=pipe.channels,
        clip_seconds=pipe.clip_seconds, min_seconds=min(info.get("min_seconds", 0.4), pipe.clip_seconds),
        instruments=tuple(info.get("instruments", PITCHED)),
    )  # fmt: skip
    return SyntheticMusic(cfg)


def _window(pipe: AudioPipeline, audio: Tensor) -> Tensor:
    n = pipe.window_samples(audio.shape[-1] / pipe.sample_rate)
    return torch.nn.functional.pad(audio, (0, n - audio.shape[-1]))


def vae_reconstruction(pipe: AudioPipeline, audio: Tensor, batch_size: int = 32) -> dict[str, float]:
    """SI-SDR (dB, mean over clips) and MR-STFT distance of ``decode(encode(audio))``, the compression, and
    ``vae_latent_effect``: ``|D(z) - D(z')| / |D(z)|`` with ``z'`` the latents of other clips (near 0: the decoder
    ignores its latent)."""
    audio = _window(pipe, audio)
    latents = torch.cat(
        [pipe.encode(audio[i : i + batch_size]).cpu() for i in range(0, len(audio), batch_size)]
    )
    dev = pipe.device

    def decode(z: Tensor) -> Tensor:
        return torch.cat(
            [pipe.decode(z[i : i + batch_size].to(dev)).cpu() for i in range(0, len(z), batch_size)]
        )

    recon, other = decode(latents), decode(latents.roll(1, dims=0))
    sdr = [S.si_sdr(r, a) for r, a in zip(recon, audio) if a.abs().max() > 0]
    return {
        "vae_si_sdr_db": float(sum(sdr) / max(1, len(sdr))),
        "vae_mrstft": S.mrstft_distance(recon, audio),
        "vae_compression": float(pipe.vae.compression),
        "vae_latent_effect": float((recon - other).norm() / recon.norm().clamp_min(1e-12)),
    }


def a2a_transfer(
    pipe: AudioPipeline,
    classifier: F.InstrumentClassifier,
    n: int,
    strength: float,
    config: AudioEvaluateConfig,
) -> dict[str, float]:
    """Audio-to-audio from one instrument to another at the same note (see the module docstring)."""
    instruments = [i for i in pipe.data_info.get("instruments", PITCHED) if i in PITCHED]
    if len(instruments) < 2:
        return {}
    src = heldout_set(pipe, "notes", n, config.data_seed + 2)
    examples = [src.example(i) for i in range(n)]
    examples = [e for e in examples if e.instrument in instruments]
    gen = make_generator(config.seed + 1, pipe.device)
    audio = _window(pipe, torch.stack([e.audio for e in examples]))
    targets = [instruments[(instruments.index(e.instrument) + 1) % len(instruments)] for e in examples]
    prompts = [_caption(t, [e.pitches[0]], None) for t, e in zip(targets, examples)]
    outs = []
    for lo in range(0, len(examples), config.batch_size):
        sl = slice(lo, lo + config.batch_size)
        outs.append(pipe.audio_to_audio(
            audio[sl], prompts[sl], strength, [e.seconds_total for e in examples[sl]], config.sampler,
            config.steps, config.guidance, gen,
        ).cpu())  # fmt: skip
    out = torch.cat(outs)
    _, errors = S.pitch_accuracy(out, [e.pitches[0] for e in examples], pipe.sample_rate)
    heard = classifier.predict(out)
    keeps = [err == err and err <= 1.0 for err in errors]
    changes = [h == t for h, t in zip(heard, targets)]
    return {
        "a2a_strength": strength,
        "a2a_keeps_pitch": sum(keeps) / len(keeps),
        "a2a_changes_instrument": sum(changes) / len(changes),
        "a2a_success": sum(k and c for k, c in zip(keeps, changes)) / len(keeps),
    }


def evaluate_and_sample(
    pipe: AudioPipeline, config: AudioEvaluateConfig, a2a_strength: float | None = 0.5
) -> tuple[dict[str, float], Tensor, list[str]]:
    """The metrics of the module docstring, the generated clips ``(n, channels, samples)`` and their captions."""
    start = time.perf_counter()
    test = heldout_set(pipe, config.kind, config.num_samples, config.data_seed)
    examples = [test.example(i) for i in range(config.num_samples)]
    captions = [e.caption for e in examples]
    gen = make_generator(config.seed, pipe.device)
    audio = []
    bar = tqdm(
        range(0, len(examples), config.batch_size),
        desc="generating",
        disable=len(examples) <= config.batch_size,
    )
    for lo in bar:
        part = examples[lo : lo + config.batch_size]
        audio.append(pipe.generate(
            [e.caption for e in part], len(part), [e.seconds_total for e in part], sampler=config.sampler,
            steps=config.steps, guidance=config.guidance, generator=gen, batch_size=config.batch_size,
        ).cpu())  # fmt: skip
    samples = torch.cat(audio)
    sr = pipe.sample_rate
    metrics: dict[str, float] = {
        "num_samples": float(len(samples)),
        "generate_seconds": time.perf_counter() - start,
    }
    pitched = [i for i, e in enumerate(examples) if e.instrument in PITCHED]
    if config.kind == "notes" and pitched:
        acc, errors = S.pitch_accuracy(samples[pitched], [examples[i].pitches[0] for i in pitched], sr)
        metrics["pitch_accuracy"] = acc
        metrics["pitch_unvoiced_rate"] = sum(e != e for e in errors) / len(errors)
    if pitched:  # sustained notes end at seconds_total; a drum hit decays on its own before it
        t_acc, t_err = S.timing_accuracy(samples[pitched], [examples[i].seconds_total for i in pitched], sr)
        metrics["timing_accuracy"] = t_acc
        metrics["timing_mae_s"] = sum(abs(e) for e in t_err) / len(t_err)
    metrics["silence_rate"] = S.silence_rate(samples)
    metrics["clipping_rate"] = S.clipping_rate(samples)
    if config.kind == "pieces":
        scores = [F.structure_score(a, sr, e.sections) for a, e in zip(samples, examples)]
        scores = [s for s in scores if s == s]
        metrics["structure_score"] = sum(scores) / len(scores) if scores else math.nan
        real = [F.structure_score(e.audio, sr, e.sections) for e in examples]
        real = [s for s in real if s == s]
        metrics["structure_score_real"] = sum(real) / len(real) if real else math.nan
    if config.kind == "phrases":
        f1 = [S.onset_f1(S.onset_times(a, sr), e.onsets) for a, e in zip(samples, examples)]
        metrics["onset_f1"] = sum(f1) / len(f1)
    # instrument classifier, FAD-local and its train-vs-test floor
    n_ref = config.reference_samples
    clf_set = heldout_set(pipe, config.kind, max(n_ref, 256), config.data_seed + 1)
    clf_audio = torch.stack([clf_set[i]["audio"] for i in range(len(clf_set))])
    clf_labels = [clf_set.example(i).instrument for i in range(len(clf_set))]
    classifier = F.train_instrument_classifier(
        clf_audio, clf_labels, sr, config.classifier_steps, seed=config.seed
    )
    heard = classifier.predict(samples)
    metrics["instrument_accuracy"] = sum(h == e.instrument for h, e in zip(heard, examples)) / len(examples)
    real_test = torch.stack([e.audio for e in examples])
    metrics["instrument_accuracy_real"] = sum(
        h == e.instrument for h, e in zip(classifier.predict(real_test), examples)
    ) / len(examples)
    k = min(len(samples), n_ref)
    ref_set = heldout_set(pipe, config.kind, k, config.data_seed + 3)
    ref_audio = torch.stack([ref_set[i]["audio"] for i in range(k)])
    emb_gen, emb_test, emb_ref = (
        classifier.embed(samples[:k]),
        classifier.embed(real_test[:k]),
        classifier.embed(ref_audio),
    )
    metrics["fad_local"] = F.frechet_distance(emb_gen, emb_ref)
    metrics["fad_local_floor"] = F.frechet_distance(emb_test, emb_ref)
    metrics["fad_local_ratio"] = metrics["fad_local"] / max(metrics["fad_local_floor"], 1e-12)
    metrics.update(vae_reconstruction(pipe, real_test))
    if config.kind == "notes" and a2a_strength is not None:
        metrics.update(a2a_transfer(pipe, classifier, min(config.num_samples, 64), a2a_strength, config))
    metrics["evaluate_seconds"] = time.perf_counter() - start
    return metrics, samples, captions
