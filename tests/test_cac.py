"""CAC: loss terms, distances, score and prediction against the reference file; anchor re-centring."""

import json
from pathlib import Path

import pytest
import torch

from osrkit.losses import CACLoss, class_means_of_correct
from osrkit.outputs import Outputs
from osrkit.scores import cac_score
from osrkit.scores.cac import CACScore
from conftest import SHARED

REF = SHARED / "spec" / "reference" / "cac.json"
CASES = json.loads(REF.read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"K{len(c['logits'][0])}")
def test_cac_matches_reference(case):
    z = torch.tensor(case["logits"], dtype=torch.float64)
    y = torch.tensor(case["labels"])
    loss_fn = CACLoss(z.shape[1], alpha=case["alpha"], lbda=case["lambda"]).double()
    d = loss_fn.distances(z)
    assert torch.allclose(d, torch.tensor(case["distances"], dtype=torch.float64), atol=1e-6)
    loss = loss_fn(z, y)
    assert float(loss) == pytest.approx(case["loss"], abs=1e-6)
    assert float(loss_fn.last_terms["anchor"]) == pytest.approx(case["anchor_term"], abs=1e-6)
    assert float(loss_fn.last_terms["tuplet"]) == pytest.approx(case["tuplet_term"], abs=1e-6)
    scores, pred = cac_score(d)
    assert torch.allclose(scores, torch.tensor(case["unknown_score"], dtype=torch.float64), atol=1e-6)
    assert pred.tolist() == case["predicted"]


def test_cac_loss_hand_worked():
    # K=2, alpha=1: z=(0,0), y=0 -> d=(1,1); anchor term 1; tuplet log(1+exp(0)) = log 2
    loss_fn = CACLoss(2, alpha=1.0, lbda=0.5).double()
    loss = loss_fn(torch.zeros(1, 2, dtype=torch.float64), torch.tensor([0]))
    assert float(loss) == pytest.approx(0.5 * 1.0 + torch.log(torch.tensor(2.0)).item())


def test_cac_score_hand_worked():
    d = torch.tensor([[1.0, 3.0]], dtype=torch.float64)
    softmin = torch.exp(-d) / torch.exp(-d).sum()
    per_class = d * (1 - softmin)
    s, p = cac_score(d)
    assert float(s) == pytest.approx(float(per_class.min())) and int(p) == 0


def test_anchor_recentring_hand_worked():
    logits = torch.tensor([[4.0, 0.0], [2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 5.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 1])  # sample 3 is misclassified (argmax 0, label 1): excluded
    means = class_means_of_correct(logits, labels, 2)
    assert torch.allclose(means, torch.tensor([[3.0, 0.0], [0.0, 3.0]], dtype=torch.float64))
    scorer = CACScore(2).fit(Outputs(logits=logits, labels=labels))
    assert torch.allclose(scorer.anchors, means)
    d = scorer.distances(torch.tensor([[3.0, 0.0]]))
    assert torch.allclose(d, torch.tensor([[0.0, 18 ** 0.5]], dtype=torch.float64))


def test_recentring_error_names_class():
    with pytest.raises(ValueError, match="class 1"):
        class_means_of_correct(torch.tensor([[1.0, 0.0]]), torch.tensor([0]), 2)


def test_cac_shapes_are_validated():
    with pytest.raises(ValueError, match="logits must be"):
        CACLoss(3).distances(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="at least 2"):
        CACLoss(1)
