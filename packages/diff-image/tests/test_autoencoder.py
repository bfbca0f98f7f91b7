"""The KL autoencoder: shapes at downsampling 4 and 8, the KL term, latent scaling from data, saving."""

import pytest
import torch
from diff_image.autoencoder import AutoencoderKL, AutoencoderObjective, DiagonalGaussian, fit_latent_scaling
from diff_image.config import AutoencoderConfig


@pytest.mark.parametrize("down", [4, 8])
def test_shapes(down):
    ae = AutoencoderKL(AutoencoderConfig(in_channels=3, latent_channels=4, downsample=down, base_channels=8))
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    recon, q = ae(x)
    assert recon.shape == x.shape
    assert q.mean.shape == (2, 4, 16 // down, 16 // down) == ae.encode(x).shape
    assert ae.decode(ae.encode(x)).shape == x.shape
    assert ae.latent_shape((3, 16, 16)) == (4, 16 // down, 16 // down)


def test_kl_matches_the_closed_form():
    mean, logvar = torch.randn(3, 2, 2, 2), torch.randn(3, 2, 2, 2)
    q = DiagonalGaussian(mean, logvar)
    std = (0.5 * logvar).exp()
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean, std), torch.distributions.Normal(0.0, 1.0)
    )
    torch.testing.assert_close(q.kl(), ref.flatten(1).mean(1))
    assert float(DiagonalGaussian(torch.zeros(1, 1), torch.zeros(1, 1)).kl()) == 0.0


def test_latent_scaling_standardises_the_data_latents(tmp_path):
    torch.manual_seed(0)
    ae = AutoencoderKL(AutoencoderConfig(in_channels=1, latent_channels=2, downsample=4, base_channels=8))
    x = torch.rand(64, 1, 8, 8) * 2 - 1
    scale, shift = fit_latent_scaling(ae, x)
    z = ae.encode(x).double()
    assert abs(float(z.mean())) < 1e-5 and abs(float(z.std()) - 1.0) < 1e-4
    ae.save_pretrained(tmp_path / "ae")
    back = AutoencoderKL.from_pretrained(tmp_path / "ae")
    assert back.config.scaling_factor == scale and back.config.shift_factor == shift
    torch.testing.assert_close(back.encode(x), ae.encode(x))


def test_objective_trains_the_reconstruction():
    torch.manual_seed(0)
    ae = AutoencoderKL(AutoencoderConfig(in_channels=1, latent_channels=2, downsample=4, base_channels=8))
    x = torch.rand(16, 1, 8, 8) * 2 - 1
    feats = torch.nn.Conv2d(1, 4, 3)
    obj = AutoencoderObjective(kl_weight=1e-3, perceptual_weight=0.1, perceptual=feats)
    opt = torch.optim.Adam(ae.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss, logs = obj(ae, {"x": x}, generator=torch.Generator().manual_seed(1))
        first = first if first is not None else float(logs["recon_l1"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert set(logs) == {"recon_l1", "kl", "perceptual"}
    assert float(logs["recon_l1"]) < 0.8 * first
    with pytest.raises(ValueError, match="perceptual"):
        AutoencoderObjective(perceptual_weight=1.0)
