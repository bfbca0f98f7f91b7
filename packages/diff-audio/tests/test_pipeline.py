"""The pipeline end to end at toy size: train, save/load, generate, edit, evaluate."""

import math

import pytest
import torch
from diff_audio import AudioEvaluateConfig, AudioPipeline, AudioSampleConfig, evaluate, sample
from diff_audio.pipeline.training import train
from diffcore.model_card import hub_folder_problems
from diffcore.rng import make_generator


def test_training_writes_the_run_and_a_loadable_pipeline(tiny_run):
    out, pipe = tiny_run
    for name in ("train_config.json", "vae_run/log.jsonl", "log.jsonl", "pipeline/pipeline.json", "pipeline/vae",
                 "pipeline/model"):  # fmt: skip
        assert (out / name).exists(), name
    loaded = AudioPipeline.from_pretrained(out / "pipeline")
    assert loaded.pipeline_config() == pipe.pipeline_config()
    a = loaded.generate("an organ plays C4", 2, 0.1, steps=3, generator=make_generator(0))
    b = pipe.generate("an organ plays C4", 2, 0.1, steps=3, generator=make_generator(0))
    assert torch.allclose(a, b, atol=1e-5)


def test_a_second_run_in_the_same_folder_is_refused(tiny_run, make_config):
    out, _ = tiny_run
    with pytest.raises(ValueError, match="already holds a training run"):
        train(make_config(out))


def test_clip_length_must_be_whole_tokens(tmp_path, make_config):
    cfg = make_config(tmp_path / "r")
    cfg.data.clip_seconds = 0.129  # 1032 samples: not a multiple of 16 (hop 8 x patch 2)
    with pytest.raises(ValueError, match=r"data\.clip_seconds"):
        train(cfg)


def test_sample_gives_audio_in_range_of_the_asked_window(tiny_run):
    _, pipe = tiny_run
    cfg = AudioSampleConfig(prompts=("an organ plays C4", "a plucked string plays E4"), num_samples=3, steps=3,
                            duration=0.3, seconds_total=0.1, device="cpu")  # fmt: skip
    audio = sample(pipe, cfg)
    assert audio.shape == (3, 1, pipe.window_samples(0.3)) and audio.shape[-1] >= 0.3 * 8000
    assert audio.abs().max() <= 1.0 and torch.isfinite(audio).all()
    again = sample(pipe, cfg)
    assert torch.equal(audio, again)  # seeded by config.seed


def test_timing_beyond_the_trained_range_is_refused(tiny_run):
    _, pipe = tiny_run
    with pytest.raises(ValueError, match="seconds_total"):
        pipe.generate("x", 1, seconds_total=5.0, steps=2)


def test_audio_to_audio_at_strength_zero_is_the_vae_reconstruction(tiny_run):
    _, pipe = tiny_run
    x = torch.zeros(1, 1, pipe.window_samples(0.128))
    x[..., :500] = 0.3 * torch.sin(torch.arange(500) * 0.3)
    same = pipe.audio_to_audio(x, "an organ plays C4", strength=0.0, steps=3)
    assert torch.allclose(same, pipe.decode(pipe.encode(x)), atol=1e-6)
    moved = pipe.audio_to_audio(x, "an organ plays C4", strength=0.7, steps=3, generator=make_generator(0))
    assert moved.shape == x.shape and not torch.allclose(moved, same)


def test_inpainting_keeps_the_known_latents_and_continuation_extends(tiny_run):
    _, pipe = tiny_run
    n = pipe.window_samples(0.128)
    x = 0.2 * torch.randn(2, 1, n, generator=torch.Generator().manual_seed(0))
    keep = torch.zeros(2, n, dtype=torch.bool)
    keep[:, : n // 2] = True
    latents = {}
    decode = pipe.decode
    pipe.decode = lambda z: latents.setdefault("z", z)  # catch the latents before decoding
    try:
        out = pipe.inpaint(x, keep, "an organ plays C4", steps=3, generator=make_generator(0))
    finally:
        del pipe.decode
    assert pipe.decode == decode
    frames = (n // 2) // pipe.hop
    z_known = pipe.encode(x)
    assert out.shape == z_known.shape
    assert torch.allclose(out[..., :frames], z_known[..., :frames], atol=1e-5)  # kept frames are the input's
    assert not torch.allclose(out[..., frames:], z_known[..., frames:], atol=1e-2)
    longer = pipe.continue_audio(x, "an organ plays C4", extra_seconds=0.05, steps=3)
    assert longer.shape[-1] == n + pipe.window_samples(0.05)
    with pytest.raises(ValueError, match="keep"):
        pipe.inpaint(x, keep[:, :10], "x", steps=2)


def test_evaluate_reports_every_metric_with_values_in_range(tiny_run):
    _, pipe = tiny_run
    m = evaluate(pipe, AudioEvaluateConfig(num_samples=4, steps=2, classifier_steps=5, reference_samples=4,
                                           batch_size=4, device="cpu"))  # fmt: skip
    for key in ("pitch_accuracy", "timing_accuracy", "instrument_accuracy", "fad_local", "fad_local_floor",
                "vae_si_sdr_db", "vae_compression", "silence_rate", "clipping_rate", "a2a_success"):  # fmt: skip
        assert key in m, key
    for key in ("pitch_accuracy", "timing_accuracy", "instrument_accuracy", "silence_rate", "a2a_success"):
        assert 0.0 <= m[key] <= 1.0
    assert m["vae_compression"] == pytest.approx(1 * 8 / 4)
    assert math.isfinite(m["vae_latent_effect"]) and m["vae_latent_effect"] > 0  # other latents, other audio


def test_training_on_a_folder_reports_skipped_files_and_records_the_source(tmp_path, make_config):
    import json

    from diff_audio.io import write_audio

    data = tmp_path / "data"
    for i, f in enumerate((220.0, 330.0, 440.0, 550.0)):
        wave = 0.4 * torch.sin(2 * torch.pi * f * torch.arange(2000) / 8000)[None]
        write_audio(data / f"clip{i}.wav", wave, 8000)
    (data / "broken.wav").write_bytes(b"not audio")
    (data / "metadata.jsonl").write_text(
        "\n".join(json.dumps({"file": f"clip{i}.wav", "caption": f"tone {i}"}) for i in range(4))
        + '\n{"file": "broken.wav", "caption": "x"}\n'
    )
    cfg = make_config(tmp_path / "run")
    cfg.data.path = str(data)
    notes: list[str] = []
    from diff_audio.pipeline.training import train as train_with_notes

    pipe = train_with_notes(cfg, notes=notes.append, progress=False)
    assert any("broken.wav" in n and "unreadable" in n for n in notes)
    assert pipe.data_info["source"] == "folder"
    assert "tone" in pipe.model.config.vocabulary
    with pytest.raises(ValueError, match="folder of real audio"):
        evaluate(pipe, AudioEvaluateConfig(num_samples=2, steps=2, device="cpu"))


def test_the_saved_pipeline_has_a_model_card_for_the_hub(tiny_run):
    out, _ = tiny_run
    assert hub_folder_problems(out / "pipeline", modality="audio", trained=True) == []
