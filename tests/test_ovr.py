"""OvR / m-OvR losses, the cosine head and the OvR unknown scores, against hand-worked values."""

from __future__ import annotations

import math

import pytest
import torch

from osrkit.losses.ovr import MOvRLoss, OvRLoss, margin_logits
from osrkit.models.heads import CosineLinear
from osrkit.outputs import Outputs
from osrkit.scores.base import Scorer, ScoreResult
from osrkit.scores.ovr import MOvRScore, OvRScore


def _log_sig(z: float) -> float:
    return -math.log1p(math.exp(-z)) if z >= 0 else z - math.log1p(math.exp(z))


def _sample_loss(z: list[float], y: int) -> float:
    """-sum_k [1{y=k} log sigmoid(z_k) + 1{y!=k} log(1 - sigmoid(z_k))], by hand; log(1 - sigmoid(z)) = log sigmoid(-z)."""
    return -sum(_log_sig(v) if k == y else _log_sig(-v) for k, v in enumerate(z))


LOGITS = [[2.0, -1.0, 0.5], [-0.3, 0.1, -2.0]]
LABELS = [0, 2]


def test_ovr_loss_hand_worked() -> None:
    # sample 0, y=0: softplus(-2) + softplus(-1) + softplus(0.5); sample 1, y=2: softplus(-0.3) + softplus(0.1) + softplus(2)
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    expected = ((sp(-2.0) + sp(-1.0) + sp(0.5)) + (sp(-0.3) + sp(0.1) + sp(2.0))) / 2
    assert abs(expected - sum(_sample_loss(z, y) for z, y in zip(LOGITS, LABELS)) / 2) < 1e-12
    got = OvRLoss(3)(torch.tensor(LOGITS, dtype=torch.float64), torch.tensor(LABELS))
    assert got.dim() == 0
    assert abs(float(got) - expected) < 1e-12


COS = [[0.9, -0.2, 0.3], [0.1, 0.7, -0.95]]


def _margined(c: list[float], y: int, m: float, margin_on: str) -> list[float]:
    """s_k by hand: cos(theta + m) on the classes the reading gives the margin, cos(theta - m) on two-sided non-targets;
    where the shifted angle leaves [0, pi], cos theta -/+ (1 - cos m) (the continuation that keeps it monotone)."""
    def shift(v: float, d: float) -> float:
        phi = math.acos(v) + d
        return v - (1 - math.cos(d)) if phi > math.pi else v + (1 - math.cos(d)) if phi < 0 else math.cos(phi)

    out = []
    for k, v in enumerate(c):
        if k == y or margin_on == "all":
            out.append(shift(v, m))
        elif margin_on == "two-sided":
            out.append(shift(v, -m))
        else:
            out.append(v)
    return out


@pytest.mark.parametrize("margin_on", ["all", "target", "two-sided"])
def test_movr_loss_hand_worked(margin_on: str) -> None:
    T, m = 32.0, 0.5
    expected = 0.0
    for c, y in zip(COS, LABELS):
        s = _margined(c, y, m, margin_on)
        expected += _sample_loss([T * v for v in s], y)
    expected /= len(COS)
    got = MOvRLoss(3, temperature=T, margin=m, margin_on=margin_on)(torch.tensor(COS, dtype=torch.float64), torch.tensor(LABELS))
    assert abs(float(got) - expected) < 1e-9 * max(1.0, expected)


def test_movr_loss_zero_margin_is_scaled_ovr_and_clamps() -> None:
    c = torch.tensor(COS, dtype=torch.float64)
    y = torch.tensor(LABELS)
    torch.testing.assert_close(MOvRLoss(3, temperature=5.0, margin=0.0)(c, y), OvRLoss(3)(5.0 * c, y))
    # cos = +-1 exactly: arccos is clamped, loss and gradient stay finite
    edge = torch.tensor([[1.0, -1.0], [-1.0, 1.0]], dtype=torch.float64, requires_grad=True)
    loss = MOvRLoss(2)(edge, torch.tensor([0, 1]))
    loss.backward()
    assert math.isfinite(loss.item()) and bool(torch.isfinite(edge.grad).all())
    # with the margin, cos(theta + m) <= cos(theta) for theta in [0, pi - m]: the positive term can only grow
    assert float(MOvRLoss(3, margin=0.5, margin_on="target")(c, y)) > float(MOvRLoss(3, margin=0.0)(c, y))


def test_margin_gradient_away_from_the_clamp() -> None:
    """d/dc cos(arccos c + m) = cos m + c sin m / sqrt(1 - c^2), at interior cosines (not the clamp)."""
    from osrkit.losses.ovr import margin_logits

    c = torch.tensor([[-0.85, -0.3, 0.0, 0.4, 0.95]], dtype=torch.float64, requires_grad=True)
    m = 0.5
    margin_logits(c, None, m, "all").sum().backward()
    expected = math.cos(m) + c.detach() * math.sin(m) / torch.sqrt(1 - c.detach() ** 2)
    torch.testing.assert_close(c.grad, expected)
    past = torch.tensor([[-0.9, -0.99]], dtype=torch.float64, requires_grad=True)  # theta > pi - m: the continuation
    margin_logits(past, None, m, "all").sum().backward()
    torch.testing.assert_close(past.grad, torch.ones_like(past))
    assert torch.autograd.gradcheck(lambda z: margin_logits(z, None, m, "all"), (c.detach().clone().requires_grad_(),))


def test_loss_validation() -> None:
    loss = MOvRLoss(3)
    c = torch.tensor(COS)
    with pytest.raises(ValueError, match="classes"):
        loss(torch.zeros(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        loss(c, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="labels"):
        loss(c, torch.tensor([0, -1]))
    with pytest.raises(ValueError, match="labels"):
        loss(c, torch.tensor([0]))
    with pytest.raises(ValueError, match="integer"):
        loss(c, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="logits"):
        OvRLoss(3)(torch.zeros(3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="margin_on"):
        MOvRLoss(3, margin_on="nontarget")
    with pytest.raises(ValueError, match="temperature"):
        MOvRLoss(3, temperature=0.0)
    with pytest.raises(ValueError, match="num_classes"):
        OvRLoss(0)


def test_cosine_linear() -> None:
    torch.manual_seed(0)
    head = CosineLinear(4, 3)
    f = torch.randn(5, 4, dtype=torch.float32)
    out = head(f)
    assert out.shape == (5, 3)
    w = head.weight.detach()
    for n in range(5):
        for k in range(3):
            ref = float(f[n] @ w[k]) / (float(f[n].norm()) * float(w[k].norm()))
            assert abs(out[n, k].item() - ref) < 1e-6
    # invariant to the scale of features and prototypes
    out.sum().backward()
    assert head.weight.grad is not None and head.weight.grad.shape == (3, 4)
    torch.testing.assert_close(head(3.7 * f), out)
    with torch.no_grad():
        head.weight.mul_(5.0)
        torch.testing.assert_close(head(f), out.detach())
    with pytest.raises(ValueError):
        head(torch.randn(5, 3))


def test_two_sided_margin_closed_form() -> None:
    # cos(theta - m) = cos(theta) cos(m) + sin(theta) sin(m): for cos = 0.3, m = 0.5
    c = torch.tensor([[0.8, 0.3]], dtype=torch.float64)
    s = margin_logits(c, torch.tensor([0]), 0.5, "two-sided")
    sin = lambda v: math.sqrt(1 - v * v)  # noqa: E731
    assert float(s[0, 0]) == pytest.approx(0.8 * math.cos(0.5) - sin(0.8) * math.sin(0.5), abs=1e-12)
    assert float(s[0, 1]) == pytest.approx(0.3 * math.cos(0.5) + sin(0.3) * math.sin(0.5), abs=1e-12)
    with pytest.raises(ValueError, match="labels"):
        margin_logits(c, None, 0.5, "two-sided")


@pytest.mark.parametrize("margin_on", ["all", "target", "two-sided"])
def test_movr_scores_hand_worked(margin_on: str) -> None:
    T, m = 32.0, 0.5
    out = Outputs(logits=torch.tensor(COS, dtype=torch.float64))
    pred = [0, 1]
    loss_margin = MOvRScore("loss_margin", margin=m, margin_on=margin_on).score(out)
    target = MOvRScore("target", margin=m, margin_on=margin_on).score(out)
    max_cos = MOvRScore("max_cos").score(out)
    for i, (c, p) in enumerate(zip(COS, pred)):
        s = [T * v for v in _margined(c, p, m, margin_on)]
        assert float(loss_margin.unknown_scores[i]) == pytest.approx(_sample_loss(s, p), rel=1e-9)
        assert float(target.unknown_scores[i]) == pytest.approx(-_log_sig(s[p]), rel=1e-9)
        assert float(max_cos.unknown_scores[i]) == pytest.approx(-max(c), abs=1e-15)
    assert loss_margin.predictions.tolist() == pred == max_cos.predictions.tolist()


def test_movr_score_consistent_with_training_loss() -> None:
    # the example: target cosine 0.95, five non-targets at 0.3. Trained with the margin on every class its
    # loss is small, and the margin-consistent score agrees; the margin-free reading calls it very unknown (~48)
    c = torch.tensor([[0.95, 0.3, 0.3, 0.3, 0.3, 0.3]], dtype=torch.float64)
    loss = float(MOvRLoss(6)(c, torch.tensor([0])))
    assert loss < 0.05
    assert float(MOvRScore("loss_margin").score(Outputs(logits=c)).unknown_scores[0]) == pytest.approx(loss, rel=1e-9)
    assert float(MOvRScore("loss").score(Outputs(logits=c)).unknown_scores[0]) > 45


def test_movr_score_readings_rank_known_below_unknown() -> None:
    # a confident known (close to its prototype, far from the rest) against an ambiguous input
    known = [0.95, -0.5, -0.6]
    unknown = [0.4, 0.35, -0.1]
    out = Outputs(logits=torch.tensor([known, unknown]))
    for kind in ("loss_margin", "target", "max_cos", "loss", "max_sigmoid"):
        for margin_on in ("all", "target", "two-sided"):
            s = MOvRScore(kind, margin_on=margin_on).score(out).unknown_scores
            assert float(s[0]) < float(s[1]), (kind, margin_on)


def test_movr_score_legacy_loss_reading() -> None:
    scorer = MOvRScore("loss")
    assert isinstance(scorer, Scorer)
    out = Outputs(logits=torch.tensor(COS, dtype=torch.float64))
    assert scorer.fit(out) is scorer
    res = scorer.score(out)
    assert isinstance(res, ScoreResult)
    T = 32.0
    # sample 0: prediction 0 (0.9); sample 1: prediction 1 (0.7)
    expected = [_sample_loss([T * v for v in COS[0]], 0), _sample_loss([T * v for v in COS[1]], 1)]
    assert res.predictions.tolist() == [0, 1]
    for got, exp in zip(res.unknown_scores.tolist(), expected):
        assert abs(got - exp) < 1e-5 * max(1.0, exp)


def test_ovr_scores_hand_worked_and_ordering() -> None:
    out = Outputs(logits=torch.tensor(LOGITS))
    res = OvRScore().score(out)
    assert res.predictions.tolist() == [0, 1]
    expected = [_sample_loss(LOGITS[0], 0), _sample_loss(LOGITS[1], 1)]
    for got, exp in zip(res.unknown_scores.tolist(), expected):
        assert abs(got - exp) < 1e-5
    ms = OvRScore(kind="max_sigmoid").score(out)
    assert ms.predictions.tolist() == [0, 1]
    exp_ms = [-1 / (1 + math.exp(-2.0)), -1 / (1 + math.exp(-0.1))]
    for got, exp in zip(ms.unknown_scores.tolist(), exp_ms):
        assert abs(got - exp) < 1e-6
    # a confident known sample scores lower (less unknown) than an ambiguous one, for both kinds
    confident = [0.95, -0.9, -0.8]
    ambiguous = [0.2, 0.15, 0.1]
    both = Outputs(logits=torch.tensor([confident, ambiguous]))
    for kind in ("loss", "max_sigmoid"):
        s = MOvRScore(kind=kind).score(both).unknown_scores
        assert float(s[0]) < float(s[1])
    t_ms = MOvRScore(kind="max_sigmoid", temperature=2.0).score(both).unknown_scores
    assert abs(float(t_ms[1]) + 1 / (1 + math.exp(-0.4))) < 1e-6


def test_score_state_dict_round_trip_and_validation() -> None:
    s = MOvRScore(kind="max_sigmoid", temperature=16.0, margin=0.3, margin_on="two-sided")
    state = s.state_dict()
    assert state == {"kind": "max_sigmoid", "temperature": 16.0, "margin": 0.3, "margin_on": "two-sided",
                     "embedding_norm": True}
    t = MOvRScore().load_state_dict(state)
    assert (t.kind, t.temperature, t.margin, t.margin_on) == ("max_sigmoid", 16.0, 0.3, "two-sided")
    # a checkpoint from before the margin was stored keeps the scorer's own margin
    assert MOvRScore(margin=0.5).load_state_dict({"kind": "loss", "temperature": 32.0}).margin == 0.5
    assert OvRScore().state_dict() == {"kind": "loss", "temperature": 1.0}
    with pytest.raises(ValueError, match="kind"):
        OvRScore(kind="energy")
    with pytest.raises(ValueError, match="kind"):
        OvRScore().load_state_dict({"kind": "energy"})
    with pytest.raises(ValueError, match="temperature"):
        MOvRScore(temperature=-1.0)
    with pytest.raises(ValueError, match="logits"):
        OvRScore().score(Outputs(logits=torch.zeros(4)))


def test_max_sigmoid_score_does_not_saturate_at_the_default_temperature() -> None:
    # sigmoid(32 * 0.7) and sigmoid(32 * 0.9) are both 1.0 in float32; the scores must still rank them
    cos = torch.tensor([[0.7, -0.2], [0.9, -0.1], [0.5, 0.0]])
    scores, pred = MOvRScore(kind="max_sigmoid").score(Outputs(logits=cos))
    expected = [-1.0 / (1.0 + math.exp(-32.0 * c)) for c in (0.7, 0.9, 0.5)]
    assert scores.tolist() == pytest.approx(expected, abs=1e-15)
    assert scores[1] < scores[0] < scores[2]
    assert pred.tolist() == [0, 0, 0]


def test_energy_msp_mls_values_and_direction() -> None:
    from osrkit.scores.softmax import EnergyScore, MLSScore, MSPScore

    confident, flat = [4.0, 0.0, -1.0], [0.5, 0.4, 0.3]
    out = Outputs(logits=torch.tensor([confident, flat], dtype=torch.float64))
    lse = [math.log(sum(math.exp(v) for v in z)) for z in (confident, flat)]
    energy = EnergyScore(1.0).score(out).unknown_scores.tolist()
    assert energy == pytest.approx([-lse[0], -lse[1]], abs=1e-12)
    t2 = EnergyScore(2.0).score(out).unknown_scores.tolist()
    assert t2[0] == pytest.approx(-2.0 * math.log(sum(math.exp(v / 2.0) for v in confident)), abs=1e-12)
    msp = MSPScore().score(out).unknown_scores.tolist()
    assert msp[0] == pytest.approx(1 - math.exp(4.0 - lse[0]), abs=1e-12)
    assert MLSScore().score(out).unknown_scores.tolist() == pytest.approx([-4.0, -0.5])
    # higher = more likely unknown: the flat (ambiguous) logits score higher under every baseline
    for s in (energy, t2, msp, MLSScore().score(out).unknown_scores.tolist()):
        assert s[1] > s[0]


def test_max_projection_score_hand_worked() -> None:
    # cos from a unit prototype; ||f|| = 5 and 1: scores -5 * 0.9 and -1 * 0.7
    cos = torch.tensor(COS, dtype=torch.float64)
    emb = torch.tensor([[3.0, 4.0], [0.6, 0.8]], dtype=torch.float64)
    res = MOvRScore("max_projection").score(Outputs(logits=cos, embedding=emb))
    assert res.unknown_scores.tolist() == pytest.approx([-4.5, -0.7], abs=1e-12)
    with pytest.raises(ValueError, match="embedding"):
        MOvRScore("max_projection").score(Outputs(logits=cos))


def test_ovr_method_trains_and_scores_by_its_sample_loss() -> None:
    """The `ovr` recipe end to end on digits: it separates knowns from unknowns, and its unknown score is the
    OvR loss at the predicted class, recomputed here from the logits by the formula."""
    from osrkit.data.tasks import make_task
    from osrkit.engine.config import TrainConfig
    from osrkit.engine.pipeline import evaluate, fit_method, predict_with
    from osrkit.methods import default_config

    task = make_task("digits", split=0)
    trained = fit_method("ovr", task, default_config("ovr", "digits").replace(epochs=6), progress=False)
    assert evaluate(trained, task)["auroc"] > 0.85
    out = predict_with(trained.model, task.unknown_x[:20], task, TrainConfig.from_dict(trained.meta["osrkit_config"]))
    z = out.logits.double()
    pred = z.argmax(1)
    by_formula = [-math.log(1 / (1 + math.exp(-float(z[i, pred[i]]))))
                  - sum(math.log(1 - 1 / (1 + math.exp(-float(z[i, k])))) for k in range(z.shape[1]) if k != pred[i])
                  for i in range(len(z))]
    torch.testing.assert_close(trained.scorer.score(out).unknown_scores, torch.tensor(by_formula, dtype=torch.float64))


def test_movr_default_score_per_data_set_and_what_run_resolves() -> None:
    """max_projection, the margin on every class and no embedding normalisation by default (chosen on MNIST custom
    known sets and CIFAR-10 `arpl`); MNIST adds the rotation head; digits: the normalised target margin scored by its
    target term (chosen there). An explicit --param still wins, and the network identity depends on the margin and
    the normalisation but not on the score."""
    from osrkit.engine.identity import network_identity
    from osrkit.methods import default_config, get_method

    m = get_method("movr")
    mnist, digits = default_config("movr", "mnist"), default_config("movr", "digits")
    loss = m.make_loss(6, m.resolved_params(mnist.method_params))
    assert (loss.base.margin_on, loss.base.embedding_norm, loss.weight) == ("all", False, 0.1)
    scorer = m.make_scorer(6, m.resolved_params(mnist.method_params))
    assert (scorer.kind, scorer.embedding_norm) == ("max_projection", False)
    normalised = m.resolved_params({**mnist.method_params, "margin_on": "target", "embedding_norm": True})
    assert (m.make_loss(6, normalised).base.margin_on, m.make_loss(6, normalised).base.embedding_norm) == ("target", True)
    assert network_identity("movr", mnist.to_dict()) != network_identity(
        "movr", mnist.replace(method_params={**mnist.method_params, "embedding_norm": True}).to_dict())
    assert network_identity("movr", mnist.to_dict()) == network_identity(
        "movr", mnist.replace(method_params={**mnist.method_params, "score": "max_cos"}).to_dict())
    # every other data set (fifteenth session): the same margin on every class, unnormalised, without the rotation head
    for other in ("svhn", "fashion-mnist", "cifar+10", "cifar+50", "tinyimagenet", "folder"):
        params = m.resolved_params(default_config("movr", other).method_params)
        assert (params["score"], params["margin_on"], params["embedding_norm"], params["rotation_weight"]) == (
            "max_projection", "all", False, 0.0)
        loss = m.make_loss(6, params)
        assert (loss.base.margin_on, loss.base.embedding_norm) == ("all", False)
    # the registered params, which configs written before a parameter existed are read with, are unchanged: an SVHN
    # run stored under the old default (target margin, embedding_norm left out) still reads as normalised and names
    # another network than the new default's
    assert (m.params["margin_on"], m.params["embedding_norm"]) == ("target", True)
    svhn = default_config("movr", "svhn")
    old = {**svhn.to_dict(), "method_params": {k: v for k, v in {**svhn.method_params, "margin_on": "target"}.items()
                                               if k != "embedding_norm"}}
    normalised = {**old, "method_params": {**old["method_params"], "embedding_norm": True}}
    unnormalised = {**old, "method_params": {**old["method_params"], "embedding_norm": False}}
    assert network_identity("movr", old) == network_identity("movr", normalised)
    assert network_identity("movr", old) != network_identity("movr", unnormalised)
    assert m.resolved_params(old["method_params"])["embedding_norm"] is True
    # the data sets whose networks are stored keep their configs exactly (so their run keys and checkpoint names)
    assert mnist.method_params == {"temperature": 32.0, "margin": 0.5, "margin_on": "all", "score": "max_projection",
                                   "rotation_weight": 0.1, "embedding_norm": False}
    assert default_config("movr", "cifar10").method_params == {
        "temperature": 16.0, "margin": 0.5, "margin_on": "all", "score": "max_projection", "rotation_weight": 0.0,
        "embedding_norm": False}
    assert digits.method_params == {"temperature": 32.0, "margin": 0.5, "margin_on": "target", "score": "target",
                                    "rotation_weight": 0.0}
    # CIFAR-10 (thirteenth session): the every-class margin without normalisation, no rotation head
    params = m.resolved_params(default_config("movr", "cifar10").method_params)
    assert (params["score"], params["margin_on"], params["embedding_norm"], params["rotation_weight"]) == (
        "max_projection", "all", False, 0.0)
    assert digits.method_params["score"] == "target"
    assert m.make_scorer(6, m.resolved_params(digits.method_params)).kind == "target"
    assert m.make_scorer(6, m.resolved_params({**digits.method_params, "score": "loss"})).kind == "loss"
    assert default_config("softmax", "digits").method_params == dict(get_method("softmax").params)
    # temperature 16 on CIFAR-10 only (chosen on its `arpl` split 0); a training parameter, so a different network
    cifar = default_config("movr", "cifar10")
    assert (cifar.method_params["temperature"], mnist.method_params["temperature"]) == (16.0, 32.0)
    assert m.make_loss(6, m.resolved_params(cifar.method_params)).base.temperature == 16.0
    assert network_identity("movr", cifar.to_dict()) != network_identity(
        "movr", cifar.replace(method_params={**cifar.method_params, "temperature": 32.0}).to_dict())
    # the score is a scorer parameter: both readings name one network
    assert network_identity("movr", mnist.to_dict()) == network_identity(
        "movr", mnist.replace(method_params={**mnist.method_params, "score": "target"}).to_dict())


@pytest.mark.parametrize("margin_on", ["all", "target"])
def test_movr_loss_without_embedding_normalisation_scales_by_the_norm(margin_on: str) -> None:
    # the embedding-normalisation extra off: each sample's logits are ||f|| cos(theta + m) instead of T cos(theta + m)
    m, norms = 0.5, [5.0, 0.5]
    expected = sum(_sample_loss([n * v for v in _margined(c, y, m, margin_on)], y)
                   for c, y, n in zip(COS, LABELS, norms)) / len(COS)
    loss = MOvRLoss(3, temperature=32.0, margin=m, margin_on=margin_on, embedding_norm=False)
    assert loss.needs_embedding_norms and not MOvRLoss(3).needs_embedding_norms
    got = loss(torch.tensor(COS, dtype=torch.float64), torch.tensor(LABELS), torch.tensor(norms, dtype=torch.float64))
    assert float(got) == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="embedding norms"):
        loss(torch.tensor(COS, dtype=torch.float64), torch.tensor(LABELS))


def test_movr_scores_without_embedding_normalisation_use_each_norm() -> None:
    # ||f|| = 5 and 1 (the rows of emb): the loss readings scale by them as in training; max_cos/max_projection unchanged
    cos = torch.tensor(COS, dtype=torch.float64)
    emb = torch.tensor([[3.0, 4.0], [0.6, 0.8]], dtype=torch.float64)
    out = Outputs(logits=cos, embedding=emb)
    for i, (c, p, n) in enumerate(zip(COS, [0, 1], [5.0, 1.0])):
        s = [n * v for v in _margined(c, p, 0.5, "target")]
        lm = MOvRScore("loss_margin", margin_on="target", embedding_norm=False).score(out).unknown_scores[i]
        tg = MOvRScore("target", margin_on="target", embedding_norm=False).score(out).unknown_scores[i]
        assert float(lm) == pytest.approx(_sample_loss(s, p), rel=1e-9)
        assert float(tg) == pytest.approx(-_log_sig(s[p]), rel=1e-9)
    same = MOvRScore("max_projection", embedding_norm=False).score(out).unknown_scores
    assert same.tolist() == pytest.approx([-4.5, -0.7], abs=1e-12)
    with pytest.raises(ValueError, match="embedding"):
        MOvRScore("target", embedding_norm=False).score(Outputs(logits=cos))


def test_embedding_norm_option_keeps_old_run_keys_and_trains() -> None:
    """At its default (on) the option is left out of configs, so networks stored before it existed keep their
    run keys and checkpoint names; off, it is a different network, which trains on digits through the engine."""
    from osrkit.data.tasks import make_task
    from osrkit.engine.identity import network_key
    from osrkit.engine.pipeline import fit_method
    from osrkit.methods import default_config
    from osrkit.results.store import config_hash

    cfg = default_config("movr", "digits")  # normalised: the option at its registered default
    assert "embedding_norm" not in cfg.method_params
    explicit = cfg.replace(method_params={**cfg.method_params, "embedding_norm": True})
    assert network_key("movr", explicit.to_dict()) == network_key("movr", cfg.to_dict())
    off = cfg.replace(method_params={**cfg.method_params, "embedding_norm": False})
    assert network_key("movr", off.to_dict()) != network_key("movr", cfg.to_dict())
    assert config_hash(off.to_dict()) != config_hash(cfg.to_dict())

    task = make_task("digits", split=0)
    digits = default_config("movr", "digits")
    digits = digits.replace(epochs=2, method_params={**digits.method_params, "embedding_norm": False})
    trained = fit_method("movr", task, digits, progress=False)
    assert trained.scorer.embedding_norm is False
    losses = [e["train_loss"] for e in trained.history]
    assert losses[-1] < losses[0]


def test_the_reported_mnist_grid_trains_what_osrkit_run_trains_by_default() -> None:
    """Issue 11, point 3: the networks of benchmarks/grid_mnist_movr_vgg32.yaml (the sixteenth session's reported
    MNIST `neal` comparison) are `osrkit run --task mnist`'s defaults for m-OvR and softmax, with "auto" precision
    resolved as on a CPU or GPU with native bf16: one network identity each."""
    from pathlib import Path

    from osrkit.engine.identity import network_identity
    from osrkit.methods import default_config
    from osrkit.results.grid import GridConfig, grid_kwargs, load_grid_file

    grid = GridConfig(**grid_kwargs(load_grid_file(Path(__file__).parents[1] / "benchmarks/grid_mnist_movr_vgg32.yaml")))
    for spec in grid.plan():
        if spec.method == "mls":
            continue
        run_default = default_config(spec.method, "mnist").replace(
            seed=spec.seed, precision="bf16", memory_format="channels_last")
        assert network_identity(spec.method, spec.config) == network_identity(spec.method, run_default.to_dict())
    assert network_identity("movr", grid.plan()[2].config) != network_identity(
        "movr", default_config("movr", "mnist").replace(precision="fp32", memory_format="contiguous").to_dict())
