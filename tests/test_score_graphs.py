"""Scorer graphs (the exported form of every unknown scorer) against the float64 scorers they mirror."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from osrkit.outputs import Outputs
from osrkit.scores.cac import CACScore
from osrkit.scores.crosr import CROSRScorer
from osrkit.scores.graph import neg_log_sigmoid
from osrkit.scores.openmax import OpenMax
from osrkit.scores.ovr import MOVR_SCORE_KINDS, OVR_SCORE_KINDS, MOvRScore, OvRScore
from osrkit.scores.softmax import EnergyScore, MLSScore, MSPScore


def _train_outputs(k=4, n_per=40, d_lat=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, k, generator=g) * 4
    labels = torch.arange(k).repeat_interleave(n_per)
    logits = centres[labels] + torch.randn(len(labels), k, generator=g)
    logits[torch.arange(len(labels)), labels] += 6  # mostly correctly classified
    latents = torch.randn(len(labels), d_lat, generator=g) + labels[:, None].float()
    return Outputs(logits=logits, embedding=torch.randn(len(labels), 8, generator=g), labels=labels,
                   extras={"latents": latents})


def _test_outputs(k=4, n=60, d_lat=6, seed=1, cosines=False):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g) * 3
    if cosines:
        logits = torch.tanh(logits)
        logits[0, 0] = 0.9999999  # near the clamp: the margin's arccos must match there too
    return Outputs(logits=logits.float(), embedding=torch.randn(n, 8, generator=g),
                   extras={"latents": torch.randn(n, d_lat, generator=g) * 2})


def _check(scorer, test: Outputs, atol=2e-5):
    ref_scores, ref_pred = scorer.score(test)
    with torch.no_grad():
        scores, pred = scorer.graph()(test.logits, test.embedding, test.extras.get("latents"))
    np.testing.assert_allclose(scores.double().numpy(), ref_scores.double().numpy(), atol=atol, rtol=1e-5)
    assert torch.equal(pred, ref_pred)


@pytest.mark.parametrize("scorer", [MSPScore(), MLSScore(), EnergyScore(1.0), EnergyScore(2.5)],
                         ids=["msp", "mls", "energy", "energy-T2.5"])
def test_logit_scorer_graphs(scorer):
    _check(scorer, _test_outputs())


def test_cac_graph():
    _check(CACScore().fit(_train_outputs()), _test_outputs())


@pytest.mark.parametrize("distance", ["eucos", "euclidean", "cosine"])
@pytest.mark.parametrize("alpha", [2, None])
@pytest.mark.parametrize("score", ["unknown_prob", "one_minus_max"])
def test_openmax_graph(distance, alpha, score):
    _check(OpenMax(tailsize=10, alpha=alpha, distance=distance, score=score).fit(_train_outputs()), _test_outputs())


@pytest.mark.parametrize("joint_scale", ["none", "block", "standardize"])
def test_crosr_graph(joint_scale):
    scorer = CROSRScorer(tailsize=10, joint_scale=joint_scale).fit(_train_outputs())
    assert scorer.graph().needs_latents
    _check(scorer, _test_outputs())


@pytest.mark.parametrize("kind", OVR_SCORE_KINDS)
def test_ovr_graph(kind):
    _check(OvRScore(kind=kind), _test_outputs())


@pytest.mark.parametrize("kind", MOVR_SCORE_KINDS)
@pytest.mark.parametrize("margin_on", ["all", "target", "two-sided"])
def test_movr_graph(kind, margin_on):
    _check(MOvRScore(kind=kind, temperature=32.0, margin=0.5, margin_on=margin_on), _test_outputs(cosines=True),
           atol=1e-4)


@pytest.mark.parametrize("kind", MOVR_SCORE_KINDS)
def test_movr_graph_without_embedding_normalisation(kind):
    # the scale is each sample's ||f||: the graph reads it from the embedding input, as the eager scorer does
    _check(MOvRScore(kind=kind, margin=0.5, margin_on="target", embedding_norm=False), _test_outputs(cosines=True),
           atol=1e-4)


def test_neg_log_sigmoid_matches_float64_over_the_range_scores_reach():
    s = torch.tensor([-40.0, -16.083, -1.0, 0.0, 3.0, 40.0])
    exact = -F.logsigmoid(s.double())
    np.testing.assert_allclose(neg_log_sigmoid(s).double().numpy(), exact.numpy(), rtol=1e-6, atol=1e-7)


def test_a_scorer_without_graph_form_names_the_problem():
    from osrkit.scores.base import Scorer

    class Custom(Scorer):
        name = "custom"

    with pytest.raises(ValueError, match="custom scorer has no graph form"):
        Custom().graph()


@pytest.mark.parametrize("kind", ["target", "loss_margin"])
@pytest.mark.parametrize("margin_on", ["all", "two-sided"])
def test_movr_graph_clamps_cosines_just_outside_the_unit_interval(kind, margin_on):
    # rounding can put a cosine a hair outside [-1, 1]; unclamped, arccos would give NaN
    logits = torch.tensor([[1.0001, 0.2, -0.3], [-1.0001, 0.1, 0.05], [0.3, 1.0, -1.0]])
    out = Outputs(logits=logits, embedding=torch.ones(3, 2))
    scorer = MOvRScore(kind=kind, temperature=32.0, margin=0.5, margin_on=margin_on)
    with torch.no_grad():
        scores, _ = scorer.graph()(logits, out.embedding, None)
    assert torch.isfinite(scores).all()
    np.testing.assert_allclose(scores.double().numpy(), scorer.score(out).unknown_scores.numpy(), atol=1e-4, rtol=1e-5)


def test_crosr_graph_of_a_checkpoint_from_before_joint_scaling():
    fitted = CROSRScorer(tailsize=10).fit(_train_outputs())
    state = fitted.state_dict()
    del state["scaler"]  # the format before joint_scale existed: the raw joint vector
    old = CROSRScorer().load_state_dict(state)
    assert old.scaler.shift is None
    _check(old, _test_outputs())
