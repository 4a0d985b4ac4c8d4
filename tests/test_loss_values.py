"""Training losses checked value by value on tiny hand-worked batches, plus their defaults,
argument messages and device / dtype placement (CAC, OvR / m-OvR, CROSR, rotation, cross-entropy)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from osrkit.losses.cac import CACLoss
from osrkit.losses.cross_entropy import CrossEntropyLoss
from osrkit.losses.ovr import MOvRLoss, OvRLoss, margin_logits
from osrkit.losses.reconstruction import ClassificationReconstructionLoss, crosr_loss, reconstruction_step
from osrkit.losses.rotation import RotationAuxiliaryLoss, rotate_batch
from osrkit.models.output import ModelOutput

LN2, LN3 = math.log(2.0), math.log(3.0)


# ---------------------------------------------------------------- cross-entropy


def test_cross_entropy_default_is_plain_negative_log_softmax():
    # logits (0, ln 2, ln 3) give softmax (1/6, 2/6, 3/6); class 2 costs -ln(1/2) = ln 2
    loss = CrossEntropyLoss(3)
    assert (loss.num_classes, loss.label_smoothing) == (3, 0.0)
    assert loss.last_terms == {}  # nothing to log before the first batch
    logits = torch.tensor([[0.0, LN2, LN3]], dtype=torch.float64)
    got = loss(logits, torch.tensor([2]))
    assert got.item() == pytest.approx(LN2, abs=1e-12)
    assert set(loss.last_terms) == {"ce"}
    assert loss.last_terms["ce"].item() == pytest.approx(LN2, abs=1e-12)
    assert not loss.last_terms["ce"].requires_grad


def test_cross_entropy_label_smoothing_formula():
    # smoothed target: (1 - eps) one-hot + eps / K everywhere
    eps = 0.3
    loss = CrossEntropyLoss(3, label_smoothing=eps)
    assert (loss.num_classes, loss.label_smoothing) == (3, eps)
    logits = torch.tensor([[0.0, LN2, LN3]], dtype=torch.float64, requires_grad=True)
    got = loss(logits, torch.tensor([2]))
    nll = [math.log(6.0), math.log(3.0), math.log(2.0)]
    expected = (1 - eps) * nll[2] + eps / 3 * sum(nll)
    assert got.item() == pytest.approx(expected, abs=1e-12)
    assert loss.last_terms["ce"].item() == pytest.approx(expected, abs=1e-12)
    got.backward()  # the loss itself keeps its graph
    assert logits.grad is not None


# ---------------------------------------------------------------- CAC


def test_cac_defaults_alpha_10_and_lambda_0_1_hand_worked():
    loss = CACLoss(3)
    assert (loss.alpha, loss.lbda) == (10.0, 0.1)
    assert torch.equal(loss.anchors, 10.0 * torch.eye(3))
    # z = 0 is 10 away from every anchor: anchor term 10, tuplet log(1 + 2 e^0) = ln 3
    got = loss(torch.zeros(1, 3), torch.tensor([0]))
    assert got.item() == pytest.approx(0.1 * 10.0 + LN3, abs=1e-6)
    assert loss.last_terms["anchor"].item() == pytest.approx(10.0, abs=1e-6)
    assert loss.last_terms["tuplet"].item() == pytest.approx(LN3, abs=1e-6)


def test_cac_distances_keep_the_logits_dtype_when_anchors_are_float64():
    loss = CACLoss(2, alpha=1.0).double()  # anchors buffer in float64 (e.g. re-centred from float64 logits)
    z = torch.tensor([[3.0, 4.0]], dtype=torch.float32)
    d = loss.distances(z)
    assert d.dtype == torch.float32
    # ||(3,4)-(1,0)|| = sqrt(4+16), ||(3,4)-(0,1)|| = sqrt(9+9)
    assert d[0].tolist() == pytest.approx([math.sqrt(20.0), math.sqrt(18.0)], abs=1e-6)
    explicit = loss.distances(z, anchors=torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=torch.float64))
    assert explicit.dtype == torch.float32
    assert explicit[0].tolist() == pytest.approx([0.0, 5.0], abs=1e-6)


def test_cac_state_dict_round_trip_carries_recentred_anchors():
    src = CACLoss(2)
    src.anchors.copy_(torch.tensor([[1.0, 2.0], [4.0, 6.0]]))  # (1,2) to (4,6): 3-4-5
    dst = CACLoss(2)
    dst.load_state_dict(src.state_dict())
    assert torch.equal(dst.anchors, src.anchors)
    z = torch.tensor([[1.0, 2.0]])
    assert dst.distances(z)[0].tolist() == pytest.approx([0.0, 5.0], abs=1e-6)


# ---------------------------------------------------------------- OvR / m-OvR


def test_ovr_loss_accepts_a_single_class_hand_worked():
    # one class, both samples positive: -log sigmoid(0) = ln 2, -log sigmoid(ln 3) = -ln(3/4)
    loss = OvRLoss(1)
    assert loss.num_classes == 1
    got = loss(torch.tensor([[0.0], [LN3]], dtype=torch.float64), torch.tensor([0, 0]))
    assert got.item() == pytest.approx((LN2 + math.log(4.0 / 3.0)) / 2, abs=1e-12)
    with pytest.raises(ValueError, match=r"^num_classes must be >= 1, got 0$"):
        OvRLoss(0)


def test_ovr_loss_checks_the_class_count_it_was_built_for():
    with pytest.raises(ValueError, match=r"^logits have 2 classes, the loss expects 3$"):
        OvRLoss(3)(torch.zeros(1, 2), torch.tensor([0]))


def test_ovr_messages_name_the_type_of_a_non_tensor_input():
    with pytest.raises(ValueError, match=r"^logits must be a tensor \(N, K\), got <class 'list'>$"):
        OvRLoss(2)([[0.0, 1.0]], torch.tensor([0]))
    with pytest.raises(ValueError, match=r"^labels must be a 1-d tensor of length 1, got <class 'list'>$"):
        OvRLoss(2)(torch.zeros(1, 2), [0])
    with pytest.raises(ValueError, match=r"^labels must be a 1-d tensor of length 1, got <class 'list'>$"):
        MOvRLoss(2)(torch.zeros(1, 2), [0])


def test_movr_single_class_and_small_temperature_hand_worked():
    # K = 1, T = 0.5, m = 0: -log sigmoid(0.5 * 0.6) = log(1 + e^-0.3)
    loss = MOvRLoss(1, temperature=0.5, margin=0.0)
    assert (loss.num_classes, loss.temperature) == (1, 0.5)
    got = loss(torch.tensor([[0.6]], dtype=torch.float64), torch.tensor([0]))
    assert got.item() == pytest.approx(math.log1p(math.exp(-0.3)), abs=1e-12)


def test_margin_logits_defaults_to_margin_on_every_class():
    cos = torch.tensor([[0.6, -0.8]], dtype=torch.float64)
    got = margin_logits(cos, None, 0.5)  # no labels needed for the default "all"
    expected = [math.cos(math.acos(0.6) + 0.5), math.cos(math.acos(-0.8) + 0.5)]
    assert got[0].tolist() == pytest.approx(expected, abs=1e-9)


def test_margin_logits_with_a_one_radian_margin():
    cos = torch.tensor([[0.6, 0.0]], dtype=torch.float64)
    got = margin_logits(cos, torch.tensor([0]), 1.0, margin_on="target")
    assert got[0].tolist() == pytest.approx([math.cos(math.acos(0.6) + 1.0), 0.0], abs=1e-9)
    got_all = margin_logits(cos, None, 1.0)
    assert got_all[0].tolist() == pytest.approx([math.cos(math.acos(0.6) + 1.0), math.cos(math.pi / 2 + 1.0)], abs=1e-9)


def test_margin_logits_zero_margin_returns_exact_unclamped_cosines():
    cos = torch.tensor([[1.0, -1.0, 0.25]])
    assert torch.equal(margin_logits(cos, None, 0.0), cos)


def test_margin_is_continued_monotonically_past_the_ends_of_the_angle_range():
    # hand-worked: m = 0.5, 1 - cos m = 0.12241743; a target at cos -0.95 (theta 2.824 > pi - m = 2.642) and, in the
    # two-sided reading, a non-target at cos 0.95 (theta 0.318 < m): as printed both formulas turn back there
    jump = 1 - math.cos(0.5)
    got = margin_logits(torch.tensor([[-0.95, 0.95]], dtype=torch.float64), torch.tensor([0]), 0.5, margin_on="two-sided")
    assert got[0].tolist() == pytest.approx([-0.95 - jump, 0.95 + jump], abs=1e-6)
    inside = margin_logits(torch.tensor([[-0.5, 0.5]], dtype=torch.float64), torch.tensor([0]), 0.5, margin_on="two-sided")
    assert inside[0].tolist() == pytest.approx([math.cos(math.acos(-0.5) + 0.5), math.cos(math.acos(0.5) - 0.5)], abs=1e-9)


@pytest.mark.parametrize("margin_on", ["all", "target", "two-sided"])
@pytest.mark.parametrize("margin", [0.5, 1.2])
def test_movr_loss_always_pulls_the_target_and_pushes_the_others(margin_on, margin):
    # over the whole range of cosines, raising the target's cosine lowers the loss and raising a non-target's raises it
    grid = torch.linspace(-0.999, 0.999, 401, dtype=torch.float64)
    cos = torch.stack([grid, grid.flip(0)], 1).requires_grad_(True)
    MOvRLoss(2, temperature=4.0, margin=margin, margin_on=margin_on)(cos, torch.zeros(401, dtype=torch.long)).backward()
    assert (cos.grad[:, 0] < 0).all() and (cos.grad[:, 1] > 0).all()
    shifted = margin_logits(grid.unsqueeze(1), None, margin)[:, 0]
    assert (shifted.diff() > 0).all()  # increasing in the cosine
    edge = torch.tensor([[math.cos(math.pi - margin) - 1e-9], [math.cos(math.pi - margin) + 1e-9]], dtype=torch.float64)
    assert abs(float(margin_logits(edge, None, margin).diff(dim=0))) < 1e-6  # and continuous where it is continued


def test_margin_logits_rejects_an_unknown_placement():
    with pytest.raises(ValueError, match=r"^margin_on must be one of \('all', 'target', 'two-sided'\), got 'both'$"):
        margin_logits(torch.zeros(1, 2), None, 0.5, margin_on="both")


# ---------------------------------------------------------------- CROSR


def _recon_output():
    # logits (0, 0): CE = ln 2 for either label; reconstruction error vs x below: (1 + 4 + 0 + 9) / 4 = 3.5
    logits = torch.zeros(1, 2, dtype=torch.float64, requires_grad=True)
    recon = torch.tensor([[[[1.0, 2.0], [0.0, 3.0]]]], dtype=torch.float64)
    return ModelOutput(logits, torch.zeros(1, 4, dtype=torch.float64), {"reconstruction": recon})


X_RECON = torch.zeros(1, 1, 2, 2, dtype=torch.float64)


def test_crosr_loss_default_weight_is_one():
    total, parts = crosr_loss(_recon_output(), X_RECON, torch.tensor([1]))
    assert total.item() == pytest.approx(LN2 + 3.5, abs=1e-12)
    assert parts["ce"].item() == pytest.approx(LN2, abs=1e-12)
    assert parts["recon"].item() == pytest.approx(3.5, abs=1e-12)


def test_classification_reconstruction_loss_default_and_weighted():
    default = ClassificationReconstructionLoss(2)
    assert (default.num_classes, default.recon_weight) == (2, 1.0)
    assert default.last_terms == {}
    out = _recon_output()
    assert default(out, X_RECON, torch.tensor([0])).item() == pytest.approx(LN2 + 3.5, abs=1e-12)

    loss = ClassificationReconstructionLoss(2, recon_weight=0.25)
    assert loss.recon_weight == 0.25 and isinstance(loss.recon_weight, float)
    total = loss(out, X_RECON, torch.tensor([0]))
    assert total.item() == pytest.approx(LN2 + 0.25 * 3.5, abs=1e-12)
    assert set(loss.last_terms) == {"ce", "recon"}
    assert loss.last_terms["ce"].item() == pytest.approx(LN2, abs=1e-12)
    assert loss.last_terms["recon"].item() == pytest.approx(3.5, abs=1e-12)
    assert not loss.last_terms["recon"].requires_grad
    total.backward()
    assert out.logits.grad is not None


def test_reconstruction_step_passes_output_input_and_labels():
    loss = ClassificationReconstructionLoss(2, recon_weight=2.0)
    x = torch.ones(1, 1, 2, 2, dtype=torch.float64)  # errors (0, 1, 1, 4): MSE 1.5
    logits = torch.tensor([[0.0, LN3]], dtype=torch.float64)  # softmax (1/4, 3/4): label 0 costs ln 4
    recon = torch.tensor([[[[1.0, 2.0], [0.0, 3.0]]]], dtype=torch.float64)
    out = ModelOutput(logits, torch.zeros(1, 4, dtype=torch.float64), {"reconstruction": recon})
    got = reconstruction_step(loss, out, x, torch.tensor([0]))
    assert got.item() == pytest.approx(math.log(4.0) + 2.0 * 1.5, abs=1e-12)


# ---------------------------------------------------------------- rotation


class _Recorder(nn.Module):
    """Flatten -> Linear embedding -> Linear logits; remembers every input it was called with."""

    def __init__(self, in_channels=1, size=2, dim=3, classes=2, emb_shape=None):
        super().__init__()
        self.body = nn.Linear(in_channels * size * size, dim)
        self.fc = nn.Linear(dim, classes)
        self.emb_shape = emb_shape
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.detach())
        emb = self.body(x.flatten(1))
        logits = self.fc(emb)
        if self.emb_shape == "none":
            return ModelOutput(logits, None)
        if self.emb_shape == "3d":
            emb = emb.unsqueeze(-1)
        return ModelOutput(logits, emb)


def test_rotate_batch_names_the_expected_turns_shape():
    with pytest.raises(ValueError, match=r"^quarter_turns must have shape \(3,\), got \(2,\)$"):
        rotate_batch(torch.zeros(3, 1, 2, 2), torch.zeros(2, dtype=torch.long))


def test_rotation_loss_defaults_and_weight_validation():
    loss = RotationAuxiliaryLoss(nn.CrossEntropyLoss())
    assert loss.weight == 0.1 and loss.head is None
    assert loss.last_terms == {}
    for bad in (float("inf"), float("nan"), -0.5):
        with pytest.raises(ValueError, match=r"^rotation weight must be a finite number >= 0, got"):
            RotationAuxiliaryLoss(nn.CrossEntropyLoss(), weight=bad)


def test_bind_runs_one_blank_batch_of_two_in_the_model_dtype():
    torch.manual_seed(0)
    model = _Recorder(in_channels=2, size=3, dim=5).double()
    model.train()
    loss = RotationAuxiliaryLoss(nn.CrossEntropyLoss(), weight=0.5)
    loss.bind(model, 2, 3)
    assert len(model.seen) == 1
    probe = model.seen[0]
    assert probe.shape == (2, 2, 3, 3) and probe.dtype == torch.float64 and not probe.any()
    assert model.training  # train mode restored after the eval-mode probe
    assert (loss.head.in_features, loss.head.out_features) == (5, 4)
    assert loss.head.weight.dtype == torch.float64


def test_bind_places_probe_and_head_on_the_model_device():
    # the meta device stands in for an accelerator: a CPU probe would fail against meta weights
    model = _Recorder(dim=3).to("meta")
    loss = RotationAuxiliaryLoss(nn.CrossEntropyLoss(), weight=0.5)
    loss.bind(model, 1, 2)
    assert model.seen[0].device.type == "meta"
    assert loss.head.weight.device.type == "meta"


@pytest.mark.parametrize("emb_shape", ["3d", "none"])
def test_bind_rejects_a_model_without_a_2d_embedding(emb_shape):
    loss = RotationAuxiliaryLoss(nn.CrossEntropyLoss(), weight=0.5)
    with pytest.raises(ValueError, match=r"^the rotation head needs a model whose output has a 2-d embedding$"):
        loss.bind(_Recorder(emb_shape=emb_shape), 1, 2)


def test_zero_weight_terms_are_base_and_loss():
    loss = RotationAuxiliaryLoss(nn.CrossEntropyLoss(), weight=0.0)
    model = _Recorder()
    loss.bind(model, 1, 2)
    out = ModelOutput(torch.zeros(1, 2), torch.zeros(1, 3))
    got = loss(out, torch.zeros(1, 1, 2, 2), torch.tensor([1]))
    assert got.item() == pytest.approx(LN2, abs=1e-6)
    assert loss.last_terms == pytest.approx({"base": LN2, "loss": LN2}, abs=1e-6)


def test_unbound_loss_raises_even_with_a_head_or_a_model():
    msg = r"^RotationAuxiliaryLoss\.bind\(model, in_channels, image_size\) must be called before training$"
    out = ModelOutput(torch.zeros(1, 2), torch.zeros(1, 3))
    x, y = torch.zeros(1, 1, 2, 2), torch.tensor([0])
    with_head = RotationAuxiliaryLoss(nn.CrossEntropyLoss(), weight=0.5)
    with_head.head = nn.Linear(3, 4)  # a head but no model to embed the rotated batch
    with pytest.raises(RuntimeError, match=msg):
        with_head(out, x, y)
    with_model = RotationAuxiliaryLoss(nn.CrossEntropyLoss(), weight=0.0)
    with_model.bind(_Recorder(), 1, 2)  # weight 0 at bind time: a model but no head
    with_model.weight = 0.5
    with pytest.raises(RuntimeError, match=msg):
        with_model(out, x, y)


def test_rotation_term_of_a_zero_head_is_ln4_whatever_the_turns():
    # a zero head predicts the uniform distribution over 4 rotations, so the rotation CE is ln 4
    model = _Recorder()
    loss = RotationAuxiliaryLoss(nn.CrossEntropyLoss(), weight=0.5)
    loss.bind(model, 1, 2)
    with torch.no_grad():
        loss.head.weight.zero_()
        loss.head.bias.zero_()
    out = ModelOutput(torch.tensor([[0.0, LN3], [0.0, 0.0]]), torch.zeros(2, 3))
    base = (math.log(4.0) + LN2) / 2  # label 0 under softmax (1/4, 3/4), label 1 under (1/2, 1/2)
    got = loss(out, torch.randn(2, 1, 2, 2), torch.tensor([0, 1]))
    assert got.item() == pytest.approx(base + 0.5 * math.log(4.0), abs=1e-6)
    assert loss.last_terms == pytest.approx(
        {"base": base, "rotation": math.log(4.0), "loss": base + 0.5 * math.log(4.0)}, abs=1e-6)


def test_rotation_turns_are_drawn_on_the_input_device():
    # with another default device, the turns must still follow x (CPU here), or indexing x with them fails
    torch.manual_seed(0)
    model = _Recorder()
    loss = RotationAuxiliaryLoss(nn.CrossEntropyLoss(), weight=0.5)
    loss.bind(model, 1, 2)
    x = torch.arange(8, dtype=torch.float32).reshape(2, 1, 2, 2)
    y = torch.tensor([0, 1])
    out = model(x)
    torch.manual_seed(3)
    with torch.device("meta"):
        got = loss(out, x, y)
    torch.manual_seed(3)
    turns = torch.randint(0, 4, (2,))
    rotated = torch.stack([torch.rot90(x[i], int(turns[i]), dims=(1, 2)) for i in range(2)])
    expected = F.cross_entropy(out.logits, y) + 0.5 * F.cross_entropy(loss.head(model(rotated).embedding), turns)
    assert got.device.type == "cpu"
    assert got.item() == pytest.approx(expected.item(), abs=1e-6)


def test_rotation_head_state_dict_round_trip():
    torch.manual_seed(1)
    src = RotationAuxiliaryLoss(nn.CrossEntropyLoss(), weight=0.5)
    src.bind(_Recorder(), 1, 2)
    torch.manual_seed(2)
    dst = RotationAuxiliaryLoss(nn.CrossEntropyLoss(), weight=0.5)
    dst.bind(_Recorder(), 1, 2)
    assert not torch.equal(src.head.weight, dst.head.weight)
    assert set(src.state_dict()) == {"head.weight", "head.bias"}  # the model is not part of the loss state
    dst.load_state_dict(src.state_dict())
    assert torch.equal(dst.head.weight, src.head.weight) and torch.equal(dst.head.bias, src.head.bias)
