"""Unknown scores on hand-worked inputs: MSP, MLS, energy, OvR / m-OvR and their traceable graphs.

Each value is checked against a closed form computed here (math, numpy, scipy), not against the code under
test; the graphs (osrkit.scores.graph) are also checked against an independent numpy/scipy OpenMax.
"""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from scipy.stats import weibull_min

from osrkit.outputs import Outputs
from osrkit.scores.graph import OpenMaxGraph, OvRGraph, euclidean
from osrkit.scores.ovr import MOvRScore, OvRScore
from osrkit.scores.softmax import EnergyScore, MLSScore, MSPScore


def softplus(x: float) -> float:
    """-log sigmoid(-x) = log(1 + e^x)."""
    return math.log1p(math.exp(x))


# Row 0 is confident (softmax 3/5, 1/5, 1/5), row 1 uniform: row 1 must score as more unknown.
LOGITS = torch.tensor([[math.log(3.0), 0.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)


# ---------------------------------------------------------------- MSP, MLS, energy


def test_msp_is_one_minus_max_softmax_and_higher_on_the_uniform_row():
    scores, pred = MSPScore().score(Outputs(logits=LOGITS))
    np.testing.assert_allclose(scores.numpy(), [1 - 3 / 5, 1 - 1 / 3], rtol=1e-12)
    assert pred.tolist() == [0, 0]
    assert scores[1] > scores[0]


def test_mls_is_minus_the_largest_logit():
    logits = torch.tensor([[0.5, 2.0, -1.0], [-3.0, -0.5, -2.0]])
    scores, pred = MLSScore().score(Outputs(logits=logits))
    np.testing.assert_allclose(scores.numpy(), [-2.0, 0.5])
    assert pred.tolist() == [1, 1]


def test_energy_default_temperature_is_one():
    scores, pred = EnergyScore().score(Outputs(logits=LOGITS))
    # -log(3 + 1 + 1) and -log(1 + 1 + 1)
    np.testing.assert_allclose(scores.numpy(), [-math.log(5.0), -math.log(3.0)], rtol=1e-12)
    assert pred.tolist() == [0, 0]
    assert scores[1] > scores[0]


def test_energy_with_temperature_two_matches_the_closed_form():
    scores, _ = EnergyScore(temperature=2.0).score(Outputs(logits=LOGITS))
    # -2 log(e^{ln3/2} + 2) = -2 log(sqrt(3) + 2); -2 log 3
    np.testing.assert_allclose(scores.numpy(), [-2 * math.log(math.sqrt(3) + 2), -2 * math.log(3.0)], rtol=1e-12)


def test_energy_state_dict_round_trips_the_temperature():
    state = EnergyScore(temperature=2.5).state_dict()
    assert state == {"temperature": 2.5}
    other = EnergyScore().load_state_dict(state)
    assert other.temperature == 2.5
    scores, _ = other.score(Outputs(logits=LOGITS))
    expected = [-2.5 * math.log(3 ** (1 / 2.5) + 2), -2.5 * math.log(3.0)]
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-12)


def test_energy_load_state_dict_converts_to_float_and_defaults_to_temperature_one():
    s = EnergyScore(temperature=4.0).load_state_dict({"temperature": 3})
    assert s.temperature == 3.0 and isinstance(s.temperature, float)
    assert EnergyScore(temperature=4.0).load_state_dict({}).temperature == 1.0


@pytest.mark.parametrize("scorer", [MSPScore(), MLSScore(), EnergyScore(0.5)], ids=["msp", "mls", "energy"])
def test_logit_baseline_graphs_equal_the_eager_scorers(scorer):
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(7, 4, generator=g) * 3
    ref, ref_pred = scorer.score(Outputs(logits=logits))
    got, pred = scorer.graph()(logits, torch.zeros(7, 2))
    np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-5)
    assert pred.tolist() == ref_pred.tolist()


# ---------------------------------------------------------------- OvR and m-OvR


def test_ovr_loss_is_the_summed_binary_cross_entropy_at_the_predicted_class():
    scores, pred = OvRScore("loss").score(Outputs(logits=torch.tensor([[2.0, -1.0], [0.5, 1.5]])))
    # row 0: -log s(2) - log(1 - s(-1)); row 1 (pred 1): -log s(1.5) - log(1 - s(0.5))
    expected = [softplus(-2.0) + softplus(-1.0), softplus(-1.5) + softplus(0.5)]
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-12)
    assert pred.tolist() == [0, 1]


def test_ovr_accepts_a_single_class():
    scores, pred = OvRScore("loss", temperature=2.0).score(Outputs(logits=torch.tensor([[0.5], [-1.0]])))
    np.testing.assert_allclose(scores.numpy(), [softplus(-1.0), softplus(2.0)], rtol=1e-12)
    assert pred.tolist() == [0, 0]


def test_ovr_max_sigmoid_and_max_cos_readings():
    logits = torch.tensor([[0.2, 0.8, -0.4]], dtype=torch.float64)
    s_sig, _ = OvRScore("max_sigmoid", temperature=3.0).score(Outputs(logits=logits))
    s_cos, _ = OvRScore("max_cos").score(Outputs(logits=logits))
    np.testing.assert_allclose(s_sig.numpy(), [-1 / (1 + math.exp(-2.4))], rtol=1e-12)
    np.testing.assert_allclose(s_cos.numpy(), [-0.8], rtol=1e-7)


def test_movr_target_applies_the_angular_margin_at_the_predicted_class():
    cos = torch.tensor([[0.6, 0.1, -0.3]])
    scores, pred = MOvRScore("target", margin=0.5).score(Outputs(logits=cos))
    s = math.cos(math.acos(0.6) + 0.5)
    np.testing.assert_allclose(scores.numpy(), [softplus(-32.0 * s)], rtol=1e-6)
    assert pred.tolist() == [0]


def test_movr_max_projection_is_minus_norm_times_largest_cosine():
    cos = torch.tensor([[0.6, 0.1], [-0.2, 0.3]])
    emb = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    scores, _ = MOvRScore("max_projection").score(Outputs(logits=cos, embedding=emb))
    np.testing.assert_allclose(scores.numpy(), [-0.6 * 5.0, -0.3 * 1.0], rtol=1e-6)


def test_movr_max_projection_without_embedding_says_what_it_needs():
    with pytest.raises(ValueError, match=r"^score 'max_projection' needs the embedding in the outputs \(N, D\)$"):
        MOvRScore("max_projection").score(Outputs(logits=torch.zeros(2, 3)))


def test_ovr_rejects_a_zero_temperature():
    with pytest.raises(ValueError, match="temperature must be a positive finite number, got 0"):
        OvRScore(temperature=0.0)


def test_ovr_unknown_kind_lists_the_kinds():
    with pytest.raises(ValueError, match=r"^score kind must be one of loss, max_sigmoid, max_cos, got 'bogus'$"):
        OvRScore("bogus")


def test_ovr_non_tensor_logits_name_their_type():
    with pytest.raises(ValueError, match=r"outputs.logits must be a tensor \(N, K\), got <class 'list'>"):
        OvRScore().score(Outputs(logits=[[1.0, 2.0]]))


def test_ovr_one_dimensional_logits_name_their_shape():
    with pytest.raises(ValueError, match=r"outputs.logits must be a tensor \(N, K\), got torch.Size\(\[3\]\)"):
        OvRScore().score(Outputs(logits=torch.zeros(3)))


def test_movr_margin_errors_name_the_choices_and_the_value():
    with pytest.raises(ValueError, match=r"^margin_on must be one of all, target, two-sided, got 'sideways'$"):
        MOvRScore(margin_on="sideways")
    with pytest.raises(ValueError, match=r"^margin must be finite, got inf$"):
        MOvRScore(margin=float("inf"))


def test_ovr_load_state_dict_keeps_what_the_state_leaves_out():
    s = OvRScore("max_cos", temperature=3.0)
    s.load_state_dict({"temperature": 2.0})
    assert (s.kind, s.temperature) == ("max_cos", 2.0)
    s.load_state_dict({"kind": "loss"})
    assert (s.kind, s.temperature) == ("loss", 2.0)
    m = MOvRScore("target", margin=0.3, margin_on="two-sided")
    m.load_state_dict({"margin": 0.1})
    assert (m.kind, m.temperature, m.margin, m.margin_on) == ("target", 32.0, 0.1, "two-sided")


def test_movr_state_dict_round_trip_reproduces_the_scores():
    a = MOvRScore("loss_margin", temperature=8.0, margin=0.2, margin_on="target")
    b = MOvRScore().load_state_dict(a.state_dict())
    cos = torch.tensor([[0.6, 0.1, -0.3], [0.0, 0.2, 0.15]])
    np.testing.assert_allclose(b.score(Outputs(logits=cos)).unknown_scores.numpy(), a.score(Outputs(logits=cos)).unknown_scores.numpy())
    assert (b.kind, b.temperature, b.margin, b.margin_on) == ("loss_margin", 8.0, 0.2, "target")


# ---------------------------------------------------------------- OvR graphs


def test_ovr_graph_without_margin_uses_the_raw_logits():
    """Margin 0 (the default) means none: logits above 1 are not clamped as cosines would be."""
    z = torch.tensor([[2.0, -1.0, 0.5]])
    for graph in (OvRGraph("target", 2.0), OvRGraph("target", 2.0, margin=0.0)):
        score, pred = graph(z, torch.zeros(1, 2))
        np.testing.assert_allclose(score.numpy(), [softplus(-4.0)], rtol=1e-5)
        assert pred.tolist() == [0]


@pytest.mark.parametrize("margin", [0.5, 1.0])
def test_ovr_graph_default_margin_on_all_matches_movr_loss_margin(margin):
    g = torch.Generator().manual_seed(5)
    cos = torch.tanh(torch.randn(6, 4, generator=g))
    ref = MOvRScore("loss_margin", temperature=4.0, margin=margin, margin_on="all").score(Outputs(logits=cos))
    got, pred = OvRGraph("loss_margin", 4.0, margin=margin)(cos, torch.zeros(6, 2))
    np.testing.assert_allclose(got.numpy(), ref.unknown_scores.numpy(), rtol=1e-4, atol=1e-5)
    assert pred.tolist() == ref.predictions.tolist()


def test_ovr_graph_builds_its_constants_on_the_inputs_device():
    """Under another default device (here meta) the graph still computes on its inputs' (CPU) device."""
    z = torch.tensor([[0.6, 0.1, -0.3], [0.0, 0.2, 0.15]])
    graph = MOvRScore("loss_margin", margin=0.5).graph()
    ref, _ = graph(z, torch.zeros(2, 2))
    with torch.device("meta"):
        got, _ = graph(z, torch.zeros(2, 2, device="cpu"))
    assert got.device.type == "cpu"
    np.testing.assert_allclose(got.numpy(), ref.numpy())


# ---------------------------------------------------------------- euclidean and OpenMax graph


def test_graph_euclidean_matches_scipy_below_unit_distance():
    x = torch.tensor([[0.0, 0.0], [0.1, 0.2], [3.0, 4.0]])
    c = torch.tensor([[0.0, 0.0], [0.1, 0.0]])
    np.testing.assert_allclose(euclidean(x, c).numpy(), cdist(x.numpy(), c.numpy()), atol=1e-6)


def _ref_openmax(logits, means, shape, scale, small, alpha, distance, score, translate, divisor=200.0, joint=None):
    """Independent OpenMax: scipy distances and Weibull CDF, rank weights by sorting, softmax with unknown."""
    v = np.asarray(logits, dtype=np.float64)
    feats = v if joint is None else (np.concatenate([v, joint[0]], axis=1) - joint[1]) / joint[2]
    if distance == "euclidean":
        d = cdist(feats, means)
    elif distance == "cosine":
        d = cdist(feats, means, "cosine")
    else:
        d = cdist(feats, means) / divisor + cdist(feats, means, "cosine")
    cdf = weibull_min.cdf(d - small + translate, c=shape, scale=scale)  # 0 where the argument is <= 0
    ranks = np.zeros_like(v)
    for i, row in enumerate(v):
        for r, k in enumerate(np.argsort(-row)[:alpha], start=1):
            ranks[i, k] = (alpha - r + 1) / alpha
    w = ranks * cdf
    act = np.concatenate([v * (1 - w), (v * w).sum(1, keepdims=True)], axis=1)
    p = np.exp(act - act.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    out = p[:, -1] if score == "unknown_prob" else 1 - p[:, :-1].max(1)
    return out, p[:, :-1].argmax(1)


# Small features and means (norms below 1), distances below 1: the Weibull argument t lies in (0, 1) for
# classes 0 and 2 and is negative for class 1 (its small_score is large).
OM_LOGITS = np.array([[0.30, 0.10, -0.20], [-0.10, 0.40, 0.20], [0.05, -0.30, 0.25], [0.20, 0.22, 0.10]])
OM_MEANS = np.array([[0.40, 0.00, -0.10], [0.00, 0.50, 0.10], [-0.05, -0.20, 0.30]])
OM_SHAPE, OM_SCALE = np.array([1.5, 2.0, 3.0]), np.array([0.5, 0.8, 0.4])
OM_SMALL = np.array([0.9, 3.0, 0.8])


def _om_graph(distance, score, alpha=2, **kw):
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return OpenMaxGraph(t(OM_MEANS), t(OM_SHAPE), t(OM_SCALE), t(OM_SMALL), alpha, distance, score, 1.0, **kw)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@pytest.mark.parametrize("score", ["unknown_prob", "one_minus_max"])
def test_openmax_graph_matches_an_independent_openmax(distance, score):
    ref, ref_pred = _ref_openmax(OM_LOGITS, OM_MEANS, OM_SHAPE, OM_SCALE, OM_SMALL, 2, distance, score, 1.0)
    got, pred = _om_graph(distance, score)(torch.tensor(OM_LOGITS, dtype=torch.float32), torch.zeros(4, 2))
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-6)
    assert pred.tolist() == ref_pred.tolist()


def test_openmax_graph_weibull_argument_in_zero_one_is_not_cut_off():
    """Distances just above small_score - translate give 0 < t < 1 and a w-score that is neither 0 nor tiny."""
    d = cdist(OM_LOGITS, OM_MEANS) - OM_SMALL + 1.0
    assert ((d[:, [0, 2]] > 0) & (d[:, [0, 2]] < 1)).all() and (d[:, 1] < 0).all()  # the premise of the data
    ref, _ = _ref_openmax(OM_LOGITS, OM_MEANS, OM_SHAPE, OM_SCALE, OM_SMALL, 3, "euclidean", "unknown_prob", 1.0)
    got, _ = _om_graph("euclidean", "unknown_prob", alpha=3)(torch.tensor(OM_LOGITS, dtype=torch.float32), None)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-6)


def test_openmax_graph_accepts_float64_logits():
    ref, ref_pred = _ref_openmax(OM_LOGITS, OM_MEANS, OM_SHAPE, OM_SCALE, OM_SMALL, 2, "euclidean", "unknown_prob", 1.0)
    got, pred = _om_graph("euclidean", "unknown_prob")(torch.tensor(OM_LOGITS, dtype=torch.float64), None)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-6)
    assert pred.tolist() == ref_pred.tolist()


def test_openmax_graph_builds_its_constants_on_the_inputs_device():
    graph = _om_graph("euclidean", "unknown_prob", alpha=3)
    ref, _ = _ref_openmax(OM_LOGITS, OM_MEANS, OM_SHAPE, OM_SCALE, OM_SMALL, 3, "euclidean", "unknown_prob", 1.0)
    x = torch.tensor(OM_LOGITS, dtype=torch.float32)
    with torch.device("meta"):
        got, _ = graph(x, None)
    assert got.device.type == "cpu"
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-6)


def test_openmax_graph_eucos_default_divisor_is_200_on_the_joint_vector():
    """CROSR's joint vector [logits, latents], rescaled: large latents make euclid/200 a visible part of eucos."""
    latents = np.array([[60.0, -80.0], [-30.0, 40.0], [90.0, 10.0], [5.0, -100.0]])
    shift, spread = np.array([0.1, 0.0, -0.1, 10.0, 0.0]), np.array([1.0, 1.0, 1.0, 2.0, 1.0])
    means = np.array([[0.4, 0.0, -0.1, 1.0, 0.0], [0.0, 0.5, 0.1, 0.0, 1.0], [-0.05, -0.2, 0.3, 1.0, 1.0]])
    small = np.array([0.8, 1.0, 1.2])
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    graph = OpenMaxGraph(t(means), t(OM_SHAPE), t(OM_SCALE), t(small), 3, "eucos", "unknown_prob", 1.0,
                         joint=(t(shift), t(spread)))
    assert graph.needs_latents
    ref, ref_pred = _ref_openmax(OM_LOGITS, means, OM_SHAPE, OM_SCALE, small, 3, "eucos", "unknown_prob", 1.0,
                                 joint=(latents, shift, spread))
    got, pred = graph(t(OM_LOGITS), None, t(latents))
    np.testing.assert_allclose(got.numpy(), ref, atol=2e-6)
    assert pred.tolist() == ref_pred.tolist()
    # the same with a divisor of 201 differs by more than the tolerance (the check above can see it)
    ref201, _ = _ref_openmax(OM_LOGITS, means, OM_SHAPE, OM_SCALE, small, 3, "eucos", "unknown_prob", 1.0,
                             divisor=201.0, joint=(latents, shift, spread))
    assert np.abs(ref201 - ref).max() > 1e-4


def test_scorer_states_and_temperatures_are_checked_like_their_constructors():
    """A bad temperature would make energy NaN (T = 0) or reverse its direction (T < 0); a loaded state goes
    through the same checks as the constructor, and the export graph refuses what the eager scorer refuses."""
    from osrkit.scores.graph import OvRGraph

    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="energy temperature must be a positive finite number"):
            EnergyScore(bad)
        with pytest.raises(ValueError, match="energy temperature must be a positive finite number"):
            EnergyScore().load_state_dict({"temperature": bad})
    with pytest.raises(ValueError, match="temperature must be a positive finite number"):
        MOvRScore().load_state_dict({"temperature": 0})
    with pytest.raises(ValueError, match="margin_on must be one of all, target, two-sided, got 'bogus'"):
        MOvRScore().load_state_dict({"margin_on": "bogus"})
    with pytest.raises(ValueError, match="margin_on must be one of all, target, two-sided, got 'bogus'"):
        OvRGraph("target", 32.0, 0.5, "bogus")


def test_cac_scorer_state_round_trip_keeps_the_fitted_anchors():
    """The saved state is {"anchors": the class means of correct logits}; a loaded scorer scores identically:
    distance to each anchor times (1 - softmin of the distances), the class with the smallest product first."""
    from osrkit.scores.cac import CACScore

    logits = torch.tensor([[3.0, 0.0], [2.0, 1.0], [0.0, 4.0], [5.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])  # the last one is misclassified: not in class 1's mean
    fitted = CACScore(2).fit(Outputs(logits=logits, labels=labels))
    state = fitted.state_dict()
    assert list(state) == ["anchors"]
    torch.testing.assert_close(state["anchors"], torch.tensor([[2.5, 0.5], [0.0, 4.0]], dtype=torch.float64))
    loaded = CACScore(2).load_state_dict(state)
    x = Outputs(logits=torch.tensor([[1.0, 1.0], [4.0, -1.0]]))
    torch.testing.assert_close(loaded.score(x).unknown_scores, fitted.score(x).unknown_scores)
    d = torch.cdist(x.logits.double(), state["anchors"])
    expected = (d * (1 - torch.softmax(-d, dim=1))).min(1).values
    torch.testing.assert_close(loaded.score(x).unknown_scores, expected)
    with pytest.raises(KeyError, match="anchors"):
        CACScore(2).load_state_dict({"ANCHORS": state["anchors"]})
