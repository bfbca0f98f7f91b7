"""The pipeline end to end on a tiny model: training runs through diffcore's Trainer and writes a loadable
pipeline; given frames are held exactly; saved and loaded pipelines sample the same clips; the objective
leaves given frames out of its loss."""

import dataclasses

import pytest
import torch
from diff_video import VideoPipeline, VideoSampleConfig, VideoTrainConfig, sample, train
from diff_video.config import VideoDataConfig, VideoModelConfig
from diff_video.data.shapes import ShapesConfig
from diff_video.pipeline import FrameConditioned, VideoFlowObjective, flow_schedule
from diff_video.pipeline.evaluation import validation_loss
from diffcore.rng import make_generator
from diffcore.training import TrainConfig
from diffcore.training.time_sampling import Constant

SHAPES = ShapesConfig(frames=4, height=8, width=8, num_objects=(1,), shapes=("square",), events=(),
                      speeds=("steadily",), directions=4, colours=("red", "blue"), size=0.4, length=64)  # fmt: skip


def _config(tmp_path, **kw):
    return VideoTrainConfig(
        model=VideoModelConfig(
            width=24, depth=2, heads=4, patch_size=(1, 4, 4), text_width=16, text_layers=1, text_heads=2
        ),
        data=VideoDataConfig(shapes=SHAPES),
        batch_size=8,
        frame_cond_prob=0.5,
        image_prob=0.2,
        train=TrainConfig(
            output_dir=str(tmp_path / "run"),
            steps=3,
            lr=1e-3,
            ema_decay=None,
            device="cpu",
            progress_bar=False,
            log_every=1,
        ),
        **kw,
    )


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    p = train(_config(tmp_path_factory.mktemp("video")))
    for param in p.model.parameters():  # leave adaLN-Zero's start so the samples depend on the weights
        param.data.normal_(0, 0.05, generator=make_generator(1))
    return p


def test_training_writes_a_pipeline_that_loads_and_samples_the_same_clips(pipe, tmp_path):
    cfg = VideoSampleConfig(num_samples=2, prompts=("a red square moves left",), steps=3, formats=("gif",))
    a = sample(pipe, cfg, out=tmp_path / "samples")
    assert a.shape == (2, 3, 4, 8, 8) and a.abs().max() <= 1
    assert (tmp_path / "samples" / "sample_001.gif").is_file() and (
        tmp_path / "samples" / "grid.png"
    ).is_file()
    pipe.save_pretrained(tmp_path / "saved")
    loaded = VideoPipeline.from_pretrained(tmp_path / "saved")
    assert ShapesConfig(**loaded.shapes) == SHAPES and loaded.text_encoder.config.vocabulary
    torch.testing.assert_close(sample(loaded, cfg), a)


def test_given_frames_are_held_exactly_whatever_the_network_says(pipe):
    first = torch.rand(3, 3, 1, 8, 8) * 2 - 1
    clips = pipe.image_to_video(first, ["a blue square moves up"], steps=4, generator=make_generator(0))
    assert clips.shape == (3, 3, 4, 8, 8)
    torch.testing.assert_close(clips[:, :, :1], first, atol=1e-5, rtol=0)
    assert not torch.allclose(clips[:, :, 1], first[:, :, 0], atol=1e-2)


def test_sliding_window_extension_reaches_the_length_and_keeps_the_overlap(pipe):
    long = pipe.extend(
        2, 10, overlap=2, prompts=["a red square moves right"], steps=2, generator=make_generator(0)
    )
    assert long.shape == (2, 3, 10, 8, 8) and torch.isfinite(long).all()


def test_frame_conditioned_velocity_carries_x_t_straight_to_the_given_frames():
    sched = flow_schedule(2.0)
    net = FrameConditioned(lambda x, t, **c: torch.randn_like(x), sched)
    x, frames = torch.randn(2, 3, 4, 4, 4), torch.randn(2, 3, 4, 4, 4)
    mask = torch.tensor([[True, False, False, True]] * 2)
    t = torch.tensor([0.3, 0.8])
    v = net(x, t, frames=frames, frame_mask=mask)
    alpha, sigma = (sched.alpha(t.double()).float(), sched.sigma(t.double()).float())
    eps = (x - alpha.view(-1, 1, 1, 1, 1) * frames) / sigma.view(-1, 1, 1, 1, 1)
    d_alpha, d_sigma = (sched.d_alpha(t.double()).float(), sched.d_sigma(t.double()).float())
    expected = d_alpha.view(-1, 1, 1, 1, 1) * frames + d_sigma.view(-1, 1, 1, 1, 1) * eps
    torch.testing.assert_close(v[:, :, [0, 3]], expected[:, :, [0, 3]], rtol=1e-4, atol=1e-4)


def test_the_objective_leaves_given_frames_out_of_its_loss():
    sched = flow_schedule(1.0)
    x0 = torch.randn(4, 3, 4, 4, 4)
    noise_gen = make_generator(5)
    objective = VideoFlowObjective(sched, Constant(0.5), frame_cond_prob=1.0)

    class Oracle(torch.nn.Module):  # exact velocity where frames are not given, nonsense where they are
        def forward(self, x_t, t, frame_mask):
            eps = (x_t - 0.5 * x0) / 0.5
            v = eps - x0
            return torch.where(frame_mask[:, None, :, None, None], torch.full_like(v, 100.0), v)

    loss, logs = objective(Oracle(), {"x": x0}, generator=noise_gen)
    assert logs["given_frames"] > 0 and loss.item() == pytest.approx(0.0, abs=1e-8)


def test_validation_loss_is_deterministic_and_refuses_nothing(pipe):
    clips = torch.rand(4, 3, 4, 8, 8) * 2 - 1
    captions = ["a red square moves left"] * 4
    assert validation_loss(pipe, clips, captions) == validation_loss(pipe, clips, captions)


def test_a_run_folder_is_not_overwritten(pipe, tmp_path):
    cfg = _config(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "log.jsonl").write_text("")
    with pytest.raises(ValueError, match="already holds a training run"):
        train(cfg)


def test_prompts_with_unknown_words_and_guidance_on_unconditional_models_are_refused(pipe):
    with pytest.raises(ValueError, match="'purple'"):
        pipe.generate(1, prompts=["a purple square moves left"], steps=1)
    uncond = VideoPipeline(pipe.model, clip_shape=pipe.clip_shape)
    with pytest.raises(ValueError, match="unconditional"):
        uncond.resolve_guidance(2.0)


def test_training_batches_move_the_way_their_captions_say(tmp_path):
    """The clips the Trainer's loader delivers, frame axis 2 of (B, C, T, H, W), move as their captions say."""
    from diff_video.metrics.motion import motion_adherence
    from diff_video.pipeline.training import _loader, build_training_data

    shapes = ShapesConfig(frames=8, height=16, width=16, num_objects=(1,), directions=8, events=(), length=64)
    config = dataclasses.replace(_config(tmp_path), data=VideoDataConfig(shapes=shapes))
    data = build_training_data(config)
    batch = next(iter(_loader(data, config)))
    assert batch["x"].shape == (8, 3, 8, 16, 16)
    m = motion_adherence(batch["x"], list(batch["caption"]), directions=8)
    assert m["direction_adherence"] == 1.0 and m["num_objects"] == 8
    assert (
        motion_adherence(batch["x"].flip(2), list(batch["caption"]), directions=8)["direction_adherence"]
        == 0.0
    )


class _ExactPerClass(torch.nn.Module):
    """The exact rectified-flow velocity of a class-conditional set of clips: each class a
    :class:`diffcore.paths.analytic.GaussianMixture` of narrow Gaussians around its clips, the null class the
    mixture of all clips (``net(x, t, y=)``, ``x`` ``(B, C, T, H, W)``)."""

    def __init__(self, clips, labels, num_classes, schedule):
        from diffcore.paths.analytic import GaussianMixture

        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # the pipeline's device

        def mixture(chosen):
            flat = chosen.flatten(1).double()
            return GaussianMixture(torch.full((len(flat),), 1 / len(flat)), flat, torch.full_like(flat, 1e-4))

        parts = [mixture(clips[labels == k]) for k in range(num_classes)] + [mixture(clips)]
        self.fns = [m.network(schedule, "velocity") for m in parts]
        self.ignore_label = False

    def forward(self, x, t, y=None, frame_mask=None):
        if y is None or self.ignore_label:
            y = torch.full((x.shape[0],), len(self.fns) - 1)
        return torch.cat([self.fns[int(k)](x[i : i + 1], t[i : i + 1]) for i, k in enumerate(y)])


def test_sampling_follows_the_label_of_an_exact_class_conditional_velocity():
    """With the exact velocity field of clips grouped by direction, generate (shifted rectified flow, Euler, CFG)
    (shift 2, as the GPU bench's clips get) makes clips that the tracker finds moving the label's way, every one of
    them: sampler, time shift, guidance, frame order and the tracker's direction convention agree, so a trained model
    whose samples ignore the direction is the model's doing. A network that ignores its label (the null field for
    every class) stays near chance, and a frame order reversed anywhere on that path scores 0."""
    from diff_video.data.shapes import MovingShapes
    from diff_video.metrics.motion import motion_adherence

    shapes = dataclasses.replace(SHAPES, frames=6, height=12, width=12, colours=("red",), size=0.3, length=48)
    data = MovingShapes(shapes)
    clips, _ = data.render(48)
    names = shapes.direction_names
    labels = torch.tensor([names.index(data.spec(i).objects[0].direction) for i in range(48)])
    pipe = VideoPipeline(torch.nn.Identity(), num_classes=4, clip_shape=(3, 6, 12, 12), time_shift=2.0)
    pipe.model = _ExactPerClass(clips, labels, 4, pipe.schedule)
    wanted = [i % 4 for i in range(16)]
    captions = [f"a red square moves {names[k]}" for k in wanted]
    out = pipe.generate(16, labels=wanted, guidance=2.0, steps=8, generator=torch.Generator().manual_seed(0))
    assert motion_adherence(out, captions, directions=4)["direction_adherence"] == 1.0
    assert motion_adherence(out.flip(2), captions, directions=4)["direction_adherence"] == 0.0
    pipe.model.ignore_label = True
    blind = pipe.generate(
        16, labels=wanted, guidance=2.0, steps=8, generator=torch.Generator().manual_seed(0)
    )
    assert motion_adherence(blind, captions, directions=4)["direction_adherence"] < 0.6


def assert_hub_ready(folder, modality: str, trained: bool = True) -> None:
    """The saved folder's README.md is a model card huggingface_hub reads, and nothing in it is pickled."""
    from diffcore.model_card import hub_folder_problems
    from huggingface_hub import ModelCard

    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "diffcore" and modality in card.data.tags
    assert f"diffuse {modality} sample --pipeline" in card.text
    assert ("- steps: " in card.text) == trained
    assert hub_folder_problems(folder) == []


def test_the_saved_pipeline_has_a_model_card_for_the_hub(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "p")
    assert_hub_ready(tmp_path / "p", "video")
