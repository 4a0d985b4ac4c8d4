"""DHRNet (CROSR): shapes, latents, eval determinism, reconstruction training, per-level laterals."""

from __future__ import annotations

import pytest
import torch

from osrkit.losses.reconstruction import crosr_loss, reconstruction_loss
from osrkit.models.dhrnet import DHRNet
from osrkit.models.output import ModelOutput


@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_output_shapes(channels: int, size: int) -> None:
    torch.manual_seed(0)
    model = DHRNet(10, in_channels=channels, image_size=size)
    out = model(torch.randn(4, channels, size, size))
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (4, 10)
    assert out.embedding.shape == (4, model.embedding_dim)
    assert out.extras["reconstruction"].shape == (4, channels, size, size)
    spatial = [(size + 1) // 2]
    for _ in range(2):
        spatial.append((spatial[-1] + 1) // 2)
    maps = out.extras["latent_maps"]
    assert [tuple(z.shape) for z in maps] == [(4, 32, s, s) for s in spatial]


@pytest.mark.parametrize("pool", ["avg", "max"])
@pytest.mark.parametrize("kernel", [1, 3])
def test_latents(pool: str, kernel: int) -> None:
    torch.manual_seed(0)
    model = DHRNet(5, latent_channels=8, lateral_kernel=kernel, latent_pool=pool).eval()
    out = model(torch.randn(3, 1, 28, 28))
    lat = out.extras["latents"]
    assert lat.shape == (3, 3 * 8)
    reduce = (lambda z: z.mean(dim=(2, 3))) if pool == "avg" else (lambda z: z.amax(dim=(2, 3)))
    expected = torch.cat([reduce(z) for z in out.extras["latent_maps"]], dim=1)
    torch.testing.assert_close(lat, expected)


def test_eval_is_deterministic_and_train_uses_dropout() -> None:
    torch.manual_seed(0)
    model = DHRNet(10, dropout=0.5)
    x = torch.randn(4, 1, 28, 28)
    model.train()
    a, b = model(x).logits, model(x).logits
    assert not torch.allclose(a, b)
    model.eval()
    with torch.no_grad():
        o1, o2 = model(x), model(x)
    torch.testing.assert_close(o1.logits, o2.logits)
    torch.testing.assert_close(o1.extras["reconstruction"], o2.extras["reconstruction"])
    torch.testing.assert_close(o1.extras["latents"], o2.extras["latents"])


def test_logits_can_be_negative() -> None:
    torch.manual_seed(0)
    model = DHRNet(10).eval()
    with torch.no_grad():
        logits = model(torch.randn(8, 1, 28, 28)).logits
    assert (logits < 0).any()


def test_reconstruction_loss_decreases() -> None:
    torch.manual_seed(0)
    model = DHRNet(10, in_channels=1, width=(16, 32, 32), latent_channels=8, dropout=0.0)
    x = torch.rand(8, 1, 28, 28)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = reconstruction_loss(model(x), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_crosr_loss_parts() -> None:
    torch.manual_seed(0)
    model = DHRNet(4, in_channels=3, image_size=32, width=(8, 16, 16), latent_channels=4)
    x = torch.randn(2, 3, 32, 32)
    y = torch.tensor([0, 3])
    out = model(x)
    total, parts = crosr_loss(out, x, y, recon_weight=0.5)
    torch.testing.assert_close(total.detach(), parts["ce"] + 0.5 * parts["recon"])
    torch.testing.assert_close(parts["recon"], reconstruction_loss(out, x).detach())
    total.backward()
    assert all(p.grad is not None for p in model.laterals.parameters())


def test_lateral_layers_are_distinct_per_level() -> None:
    model = DHRNet(10, width=(32, 64, 128))
    assert len(model.laterals) == 3 and len(model.lateral_decoders) == 3
    ids = {id(m) for m in model.laterals} | {id(m) for m in model.lateral_decoders}
    assert len(ids) == 6
    params = [p.data_ptr() for m in model.laterals for p in m.parameters()]
    assert len(params) == len(set(params))
    assert [m.in_channels for m in model.laterals] == [32, 64, 128]
    assert [m.out_channels for m in model.lateral_decoders] == [32, 64, 128]


def test_bad_options() -> None:
    with pytest.raises(ValueError):
        DHRNet(10, lateral_kernel=2)
    with pytest.raises(ValueError):
        DHRNet(10, latent_pool="median")
