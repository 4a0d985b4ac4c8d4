"""m-OvR's auxiliary rotation head: rotation of a batch, the combined loss, training and resume."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from osrkit.data.tasks import make_task
from osrkit.engine.checkpoint import load_checkpoint
from osrkit.engine.pipeline import fit_method
from osrkit.losses.ovr import MOvRLoss
from osrkit.losses.rotation import RotationAuxiliaryLoss, rotate_batch
from osrkit.methods import default_config
from osrkit.models import create_model


def test_rotate_batch_matches_per_image_rot90() -> None:
    x = torch.arange(2 * 4 * 1 * 3 * 3, dtype=torch.float32).reshape(8, 1, 3, 3)
    turns = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    got = rotate_batch(x, turns)
    for i in range(8):
        assert torch.equal(got[i], torch.rot90(x[i], int(turns[i]), dims=(1, 2)))
    # one hand-checked case: a quarter turn counter-clockwise moves the top-right corner to the top-left
    img = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    assert rotate_batch(img[None], torch.tensor([1]))[0, 0].tolist() == [[2.0, 4.0], [1.0, 3.0]]
    with pytest.raises(ValueError, match="square"):
        rotate_batch(torch.zeros(2, 1, 3, 4), torch.zeros(2, dtype=torch.long))


def test_loss_is_base_plus_weighted_rotation_cross_entropy() -> None:
    torch.manual_seed(0)
    model = create_model("small", num_classes=3, in_channels=1, image_size=8, classifier="cosine")
    aux = RotationAuxiliaryLoss(MOvRLoss(3), weight=0.1)
    aux.bind(model, 1, 8)
    assert aux.head is not None and aux.head.out_features == 4
    x, y = torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    model.eval()  # BatchNorm in eval mode, so the two forwards below see the same statistics
    out = model(x)
    torch.manual_seed(5)
    got = aux(out, x, y)
    torch.manual_seed(5)
    turns = torch.randint(0, 4, (6,))
    rotated = torch.stack([torch.rot90(x[i], int(turns[i]), dims=(1, 2)) for i in range(6)])
    expected = MOvRLoss(3)(out.logits, y) + 0.1 * F.cross_entropy(aux.head(model(rotated).embedding), turns)
    assert torch.allclose(got, expected, atol=1e-6)
    assert set(aux.last_terms) == {"base", "rotation", "loss"}


def test_the_rotated_pass_leaves_batchnorm_statistics_to_the_upright_images() -> None:
    torch.manual_seed(0)
    model = create_model("small", num_classes=3, in_channels=1, image_size=8, classifier="cosine")
    aux = RotationAuxiliaryLoss(MOvRLoss(3), weight=0.1)
    aux.bind(model, 1, 8)
    twin = copy.deepcopy(model)
    x, y = torch.randn(6, 1, 8, 8) * 3 + 1, torch.tensor([0, 1, 2, 0, 1, 2])
    model.train(), twin.train()
    aux(model(x), x, y).backward()  # upright forward, then the rotated one inside the loss
    twin(x)  # the upright forward alone
    stats = lambda m: {k: v for k, v in m.state_dict().items() if "running" in k or "num_batches" in k}  # noqa: E731
    assert stats(model).keys() and all(torch.equal(stats(model)[k], v) for k, v in stats(twin).items())
    assert aux.head.weight.grad is not None and aux.head.weight.grad.abs().sum() > 0  # the rotated pass still trains
    # and the statistics did move with the upright batch (so the check above is not vacuous)
    fresh = create_model("small", num_classes=3, in_channels=1, image_size=8, classifier="cosine")
    assert not all(torch.equal(stats(fresh)[k], v) for k, v in stats(model).items())


def test_zero_weight_is_the_plain_loss_without_a_head() -> None:
    model = create_model("small", num_classes=3, in_channels=1, image_size=8, classifier="cosine")
    aux = RotationAuxiliaryLoss(MOvRLoss(3), weight=0.0)
    aux.bind(model, 1, 8)
    assert aux.head is None and list(aux.parameters()) == []
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    out = model(x)
    assert torch.equal(aux(out, x, y), MOvRLoss(3)(out.logits, y))
    with pytest.raises(ValueError, match="weight"):
        RotationAuxiliaryLoss(MOvRLoss(3), weight=-1.0)
    with pytest.raises(RuntimeError, match="bind"):
        RotationAuxiliaryLoss(MOvRLoss(3), weight=0.1)(out, x, y)


def test_movr_with_rotation_trains_checkpoints_and_resumes(tmp_path) -> None:
    task = make_task("digits", 0)
    cfg = default_config("movr", "digits").replace(epochs=2, method_params={"rotation_weight": 0.1})
    full = fit_method("movr", task, cfg, checkpoint=tmp_path / "full.pt", progress=False)
    state = load_checkpoint(tmp_path / "full.pt")
    assert state["loss"]["head.weight"].shape == (4, full.model.embedding_dim)
    assert full.history[-1]["train_loss"] < full.history[0]["train_loss"]

    class Stop(Exception):
        pass

    def stop(epoch, rec):
        if epoch == 0:
            raise Stop

    with pytest.raises(Stop):
        fit_method("movr", task, cfg, checkpoint=tmp_path / "part.pt", progress=False, on_epoch=stop)
    resumed = fit_method("movr", task, cfg, checkpoint=tmp_path / "part.pt", resume=True, progress=False)
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert torch.equal(load_checkpoint(tmp_path / "part.pt")["loss"]["head.weight"], state["loss"]["head.weight"])
