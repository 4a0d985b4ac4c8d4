"""Losses and scorers on bad input and in their edge states: each message names the problem exactly, and
explicit arguments win over defaults (mutation testing found these unchecked)."""

import pytest
import torch

from osrkit.losses.cac import CACLoss
from osrkit.losses.ovr import MOvRLoss, OvRLoss
from osrkit.outputs import Outputs
from osrkit.scores.cac import CACScore, cac_score


def test_cac_loss_inputs_and_explicit_anchors():
    loss = CACLoss(3, alpha=2.0)
    assert loss.last_terms == {} and torch.equal(loss.anchors, 2.0 * torch.eye(3))
    with pytest.raises(ValueError, match=r"^CAC needs at least 2 classes, got 1$"):
        CACLoss(1)
    with pytest.raises(ValueError, match=r"^logits must be \(N, 3\), got \(2, 4\)$"):
        loss.distances(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"^labels must be \(4,\), got \(3,\)$"):
        loss.terms(torch.zeros(4, 3), torch.zeros(3, dtype=torch.long))
    z = torch.tensor([[1.0, 0.0, 0.0]])
    own = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [3.0, 4.0, 0.0]])
    # given anchors are used, not the training anchors: distances 0, 1, sqrt(4 + 16) = 4.472
    torch.testing.assert_close(loss.distances(z, own), torch.tensor([[0.0, 1.0, 20 ** 0.5]]))
    torch.testing.assert_close(loss.distances(z), torch.tensor([[1.0, 5 ** 0.5, 5 ** 0.5]]))
    # float64 logits against the float32 buffer: computed in the logits' dtype
    assert loss.distances(z.double()).dtype == torch.float64


def test_cac_scorer_states_and_messages():
    with pytest.raises(ValueError, match=r"^distances must be \(N, K\), got \(3,\)$"):
        cac_score(torch.zeros(3))
    with pytest.raises(RuntimeError, match=r"^CAC scorer is not fitted: call fit\(train_outputs\) first$"):
        CACScore().distances(torch.zeros(1, 2))
    with pytest.raises(RuntimeError, match=r"^CAC scorer is not fitted: call fit\(train_outputs\) first$"):
        CACScore().graph()
    with pytest.raises(ValueError, match=r"^CAC scorer fit needs training outputs with labels$"):
        CACScore().fit(Outputs(logits=torch.zeros(2, 2)))
    # anchors given at construction are used as they are (no fit needed)
    given = CACScore(anchors=torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=torch.float64))
    d = given.distances(torch.tensor([[0.0, 0.0]]))
    torch.testing.assert_close(d, torch.tensor([[0.0, 5.0]], dtype=torch.float64))
    s, p = given.score(Outputs(logits=torch.tensor([[0.0, 0.0]])))
    assert p.tolist() == [0] and float(s) == pytest.approx(0.0)


@pytest.mark.parametrize("logits, labels, message", [
    ([0.1, 0.2], [0], r"^logits must be a tensor \(N, K\), got torch.Size\(\[2\]\)$"),
    (torch.zeros(2, 3, dtype=torch.long), [0, 1], r"^logits must be floating point, got torch.int64$"),
    (torch.zeros(2, 4), [0, 1], r"^logits have 4 classes, the loss expects 3$"),
    (torch.zeros(2, 3), [0], r"^labels must be a 1-d tensor of length 2, got torch.Size\(\[1\]\)$"),
    (torch.zeros(2, 3), torch.tensor([0.0, 1.0]), r"^labels must be an integer tensor, got torch.float32$"),
    (torch.zeros(2, 3), torch.tensor([True, False]), r"^labels must be an integer tensor, got torch.bool$"),
    (torch.zeros(2, 3), [0, 3], r"^labels must lie in \[0, 2\], got range \[0, 3\]$"),
    (torch.zeros(2, 3), [-1, 2], r"^labels must lie in \[0, 2\], got range \[-1, 2\]$"),
])
@pytest.mark.parametrize("loss", [OvRLoss(3), MOvRLoss(3)], ids=["ovr", "movr"])
def test_ovr_losses_name_each_bad_input(loss, logits, labels, message):
    logits = torch.as_tensor(logits) if not isinstance(logits, list) else torch.tensor(logits)
    labels = labels if isinstance(labels, torch.Tensor) else torch.tensor(labels)
    with pytest.raises(ValueError, match=message):
        loss(logits, labels)


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_classes=0), r"^num_classes must be >= 1, got 0$"),
    (dict(num_classes=3, temperature=0.0), r"^temperature must be a positive finite number, got 0.0$"),
    (dict(num_classes=3, temperature=float("inf")), r"^temperature must be a positive finite number, got inf$"),
    (dict(num_classes=3, margin=float("nan")), r"^margin must be finite, got nan$"),
    (dict(num_classes=3, margin_on="both"), r"^margin_on must be one of \('all', 'target', 'two-sided'\), got 'both'$"),
])
def test_movr_loss_constructor_checks(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MOvRLoss(**kwargs)


def test_movr_loss_keeps_its_settings():
    loss = MOvRLoss(4, temperature=16.0, margin=0.3, margin_on="two-sided")
    assert (loss.num_classes, loss.temperature, loss.margin, loss.margin_on) == (4, 16.0, 0.3, "two-sided")
    assert "temperature=16.0, margin=0.3, margin_on='two-sided'" in repr(loss)
    with pytest.raises(ValueError, match=r"^num_classes must be >= 1, got 0$"):
        OvRLoss(0)
