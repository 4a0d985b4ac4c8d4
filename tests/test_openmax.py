"""OpenMax and the CROSR scorer against libMR-based reference numbers and a hand-worked case."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from osrkit.outputs import Outputs
from osrkit.scores.crosr import CROSRScorer
from osrkit.scores.openmax import OpenMax
from conftest import SHARED

REFERENCE = SHARED / "spec" / "reference"
f64 = torch.float64


@pytest.fixture(scope="module")
def cases() -> list[dict]:
    path = REFERENCE / "openmax_libmr.json"
    if not path.exists():
        pytest.skip(f"reference file missing: {path}")
    return json.loads(path.read_text())["cases"]


def _fit_case(case: dict, **kwargs) -> OpenMax:
    om = OpenMax(tailsize=case["tailsize"], alpha=case["alpha"], distance=case["distance"], **kwargs)
    return om.fit(torch.tensor(case["train_logits"], dtype=f64), torch.tensor(case["train_labels"]))


@pytest.mark.parametrize("fit_method", ["libmr", "mle"])
def test_matches_libmr_reference(cases, fit_method):
    assert {c["distance"] for c in cases} == {"eucos", "euclidean", "cosine"}
    for case in cases:
        om = _fit_case(case, fit_method=fit_method)
        np.testing.assert_allclose(om.mean_vectors.numpy(), case["mean_vectors"], atol=1e-4, rtol=0)
        probs = om.probabilities(torch.tensor(case["test_logits"], dtype=f64))
        np.testing.assert_allclose(probs.numpy(), case["probabilities"], atol=1e-4, rtol=0)
        result = om.score(torch.tensor(case["test_logits"], dtype=f64))
        np.testing.assert_allclose(result.unknown_scores.numpy(), np.array(case["probabilities"])[:, -1], atol=1e-4)
        assert torch.equal(result.predictions, probs[:, :-1].argmax(1))


def test_fit_accepts_outputs_and_alpha_is_capped(cases):
    case = cases[0]
    out = Outputs(logits=torch.tensor(case["train_logits"], dtype=f64), labels=torch.tensor(case["train_labels"]))
    a = OpenMax(case["tailsize"], alpha=case["alpha"], distance=case["distance"]).fit(out)
    b = _fit_case(case)
    test = torch.tensor(case["test_logits"], dtype=f64)
    assert torch.equal(a.probabilities(test), b.probabilities(test))
    assert torch.equal(a.score(Outputs(logits=test)).unknown_scores, a.score(test).unknown_scores)
    big = OpenMax(case["tailsize"], alpha=50, distance=case["distance"]).fit(out)
    k = case["num_classes"]
    assert big.alpha_rank == k
    assert torch.equal(big.probabilities(test), OpenMax(case["tailsize"], k, case["distance"]).fit(out).probabilities(test))


def test_hand_worked_three_classes():
    """Fit on 3 classes, then recalibrate one test vector by hand with libMR-free parameters."""
    logits = torch.tensor([[5.0, 0, 0], [2, 0, 0], [5, 0, 0], [0, 4, 0], [0, 1, 0], [0, 4, 0],
                           [0, 0, 7], [0, 0, 3], [0, 0, 2],
                           [0, 9, 0]], dtype=f64)  # last: class 0 misclassified, must not enter any mean
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 0])
    om = OpenMax(tailsize=2, alpha=2, distance="euclidean").fit(logits, labels)
    np.testing.assert_allclose(om.mean_vectors.numpy(), [[4, 0, 0], [0, 3, 0], [0, 0, 4]])
    # distances to the means: (1, 2, 1), (1, 2, 1), (3, 1, 2); tails = the 2 largest of each
    np.testing.assert_allclose(om.weibull.small_score, [1.0, 1.0, 2.0])

    # Replace the Weibull models by simple ones: shape 1, scale 1, small score 0 => w(d) = 1 - exp(-(d + 1)).
    state = om.state_dict()
    state.update(weibull_shape=torch.ones(3, dtype=f64), weibull_scale=torch.ones(3, dtype=f64),
                 weibull_small_score=torch.zeros(3, dtype=f64))
    om = OpenMax().load_state_dict(state)
    v = [3.0, 1.0, 0.5]
    # ranks: class 0 first (omega 1), class 1 second (omega 1/2), class 2 third (omega 0)
    d0 = math.sqrt(1 + 1 + 0.25)  # |v - (4, 0, 0)|
    d1 = math.sqrt(9 + 4 + 0.25)  # |v - (0, 3, 0)|
    w0 = 1.0 * (1 - math.exp(-(d0 + 1)))
    w1 = 0.5 * (1 - math.exp(-(d1 + 1)))
    act = [3.0 * (1 - w0), 1.0 * (1 - w1), 0.5, 3.0 * w0 + 1.0 * w1]
    expected = np.exp(act) / np.exp(act).sum()
    probs = om.probabilities(torch.tensor([v], dtype=f64))
    np.testing.assert_allclose(probs[0].numpy(), expected, rtol=1e-12)
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-12)
    res = om.score(torch.tensor([v], dtype=f64))
    assert res.unknown_scores.item() == pytest.approx(expected[-1], rel=1e-12)
    assert res.predictions.item() == int(np.argmax(expected[:3])) == 1  # recalibrated: class 0 lost most
    om1 = OpenMax(score="one_minus_max").load_state_dict({**state, "score": "one_minus_max"})
    assert om1.score(torch.tensor([v], dtype=f64)).unknown_scores.item() == pytest.approx(1 - expected[:3].max())


def test_eucos_and_cosine_distances():
    from osrkit.scores.openmax import pairwise_distance

    x, m = torch.tensor([[3.0, 4.0]], dtype=f64), torch.tensor([[6.0, 0.0]], dtype=f64)
    cos = 1 - 18 / (5 * 6)
    assert pairwise_distance(x, m, "euclidean").item() == pytest.approx(5.0)
    assert pairwise_distance(x, m, "cosine").item() == pytest.approx(cos)
    assert pairwise_distance(x, m, "eucos").item() == pytest.approx(5.0 / 200 + cos)


def _synthetic(n: int = 90, k: int = 3, seed: int = 0) -> Outputs:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % k
    logits = 4 * torch.nn.functional.one_hot(labels, k).to(f64) + torch.randn(n, k, generator=g, dtype=f64)
    maps = [torch.randn(n, 4, 6, 6, generator=g, dtype=f64) + labels[:, None, None, None],
            torch.randn(n, 2, 3, 3, generator=g, dtype=f64)]
    return Outputs(logits=logits, labels=labels, extras={"latent_maps": maps})


@pytest.mark.parametrize("pool", ["avg", "max"])
def test_crosr_equals_openmax_on_joint_vector(pool):
    train, test = _synthetic(seed=0), _synthetic(n=30, seed=1)
    pooled = lambda o: torch.cat([m.flatten(2).mean(2) if pool == "avg" else m.flatten(2).amax(2)  # noqa: E731
                                  for m in o.extras["latent_maps"]], 1)
    crosr = CROSRScorer(tailsize=10, pool=pool).fit(train)
    ref = OpenMax(tailsize=10, alpha=None, distance="euclidean")
    ref.fit(train.logits, train.labels, features=torch.cat([train.logits, pooled(train)], 1))
    expected = ref.probabilities(test.logits, features=torch.cat([test.logits, pooled(test)], 1))
    assert torch.allclose(crosr.probabilities(test), expected, rtol=0, atol=1e-12)
    res = crosr.score(test)
    assert torch.allclose(res.unknown_scores, expected[:, -1]) and torch.equal(res.predictions, expected[:, :3].argmax(1))
    assert crosr.openmax.alpha_rank == 3 and crosr.openmax.mean_vectors.shape == (3, 3 + 6)
    # latents given already pooled give the same fit
    flat = lambda o: Outputs(o.logits, labels=o.labels, extras={"latents": pooled(o)})  # noqa: E731
    again = CROSRScorer(tailsize=10).fit(flat(train))
    assert torch.allclose(again.probabilities(flat(test)), expected, atol=1e-12)


@pytest.mark.parametrize("how", ["block", "standardize"])
def test_crosr_joint_scale_equals_openmax_on_rescaled_vector(how, tmp_path):
    from sklearn.preprocessing import StandardScaler

    train, test = _synthetic(seed=0), _synthetic(n=30, seed=1)
    joint = lambda o: torch.cat([o.logits, torch.cat([m.flatten(2).mean(2) for m in o.extras["latent_maps"]], 1)], 1)  # noqa: E731
    jt, js = joint(train).numpy(), joint(test).numpy()
    if how == "block":  # each block divided by its mean training norm
        ny, nz = np.linalg.norm(jt[:, :3], axis=1).mean(), np.linalg.norm(jt[:, 3:], axis=1).mean()
        rescale = lambda j: np.c_[j[:, :3] / ny, j[:, 3:] / nz]  # noqa: E731
    else:
        sc = StandardScaler().fit(jt)
        rescale = sc.transform
    ref = OpenMax(tailsize=10, alpha=None, distance="euclidean")
    ref.fit(train.logits, train.labels, features=torch.from_numpy(rescale(jt)))
    expected = ref.probabilities(test.logits, features=torch.from_numpy(rescale(js)))
    crosr = CROSRScorer(tailsize=10, joint_scale=how).fit(train)
    assert torch.allclose(crosr.probabilities(test), expected, rtol=0, atol=1e-10)
    # and the scaling differs from the raw joint vector, so the option has an effect
    assert not torch.allclose(CROSRScorer(tailsize=10).fit(train).probabilities(test), expected, atol=1e-6)
    torch.save(crosr.state_dict(), tmp_path / "s.pt")
    again = CROSRScorer().load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert torch.equal(again.probabilities(test), crosr.probabilities(test))
    with pytest.raises(ValueError, match="joint_scale must be one of"):
        CROSRScorer(joint_scale="minmax")


def test_state_dict_round_trip(tmp_path, cases):
    om = _fit_case(cases[1])
    crosr = CROSRScorer(tailsize=10, pool="max").fit(_synthetic())
    path = tmp_path / "scorers.pt"
    torch.save({"openmax": om.state_dict(), "crosr": crosr.state_dict()}, path)
    loaded = torch.load(path, weights_only=True)
    om2, crosr2 = OpenMax().load_state_dict(loaded["openmax"]), CROSRScorer().load_state_dict(loaded["crosr"])
    test = torch.tensor(cases[1]["test_logits"], dtype=f64)
    assert torch.equal(om2.probabilities(test), om.probabilities(test))
    assert (om2.tailsize, om2.alpha, om2.distance) == (om.tailsize, om.alpha, om.distance)
    t = _synthetic(n=12, seed=3)
    assert torch.equal(crosr2.probabilities(t), crosr.probabilities(t)) and crosr2.pool == "max"
    unfitted = OpenMax(tailsize=7).state_dict()
    assert OpenMax().load_state_dict(unfitted).tailsize == 7


def test_errors(cases):
    case = cases[0]
    logits, labels = torch.tensor(case["train_logits"], dtype=f64), torch.tensor(case["train_labels"])
    with pytest.raises(RuntimeError, match="not fitted"):
        OpenMax().score(logits)
    with pytest.raises(RuntimeError, match="not fitted"):
        CROSRScorer().score(_synthetic())
    wrong = labels.clone()
    wrong[logits.argmax(1) == 2] = 0  # no sample of class 2 is correctly classified any more
    with pytest.raises(ValueError, match="class 2 has no correctly classified"):
        OpenMax(tailsize=5).fit(logits, wrong)
    one = torch.tensor([[3.0, 0.0], [0.0, 3.0], [0.0, 2.0]], dtype=f64)
    with pytest.raises(ValueError, match="at least 2 correctly classified"):
        OpenMax(tailsize=5).fit(one, torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="labels"):
        OpenMax().fit(Outputs(logits=logits))
    with pytest.raises(ValueError, match="shape"):
        OpenMax().fit(logits, labels[:-1])
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        OpenMax().fit(logits[:, 0], labels)
    with pytest.raises(ValueError, match="0..2"):
        OpenMax().fit(logits, labels + 1)
    with pytest.raises(ValueError, match="distance"):
        OpenMax(distance="manhattan")
    with pytest.raises(ValueError, match="score"):
        OpenMax(score="energy")
    with pytest.raises(ValueError, match="tailsize"):
        OpenMax(tailsize=1)
    with pytest.raises(ValueError, match="pool"):
        CROSRScorer(pool="median")
    om = _fit_case(case)
    with pytest.raises(ValueError, match="columns"):
        om.probabilities(logits[:, :2])
    with pytest.raises(ValueError, match="fitted on logits"):
        om.probabilities(logits, features=logits)
    with pytest.raises(ValueError, match="NaN"):
        om.probabilities(torch.full((2, 3), float("nan"), dtype=f64))
    with pytest.raises(ValueError, match="latents"):
        CROSRScorer().fit(Outputs(logits=logits, labels=labels))
    crosr = CROSRScorer(tailsize=10).fit(_synthetic())
    with pytest.raises(ValueError, match="features must have shape"):
        crosr.openmax.probabilities(_synthetic().logits, features=torch.zeros(90, 4, dtype=f64))
    with pytest.raises(ValueError, match="fitted on features"):
        crosr.openmax.probabilities(_synthetic().logits)


def test_float32_and_probabilities_sum_to_one(cases):
    case = cases[2]
    om = OpenMax(case["tailsize"], case["alpha"], case["distance"])
    om.fit(Outputs(logits=torch.tensor(case["train_logits"]).float(), labels=torch.tensor(case["train_labels"])))
    probs = om.probabilities(torch.tensor(case["test_logits"]).float())
    assert probs.dtype == torch.float32 and probs.shape == (25, 11)
    np.testing.assert_allclose(probs.sum(1).numpy(), 1.0, atol=1e-6)
    np.testing.assert_allclose(probs.numpy(), case["probabilities"], atol=1e-4)


def test_alpha_one_and_tied_logits_rank_weights():
    from osrkit.scores.openmax import rank_weights

    # alpha = 1 is the smallest valid alpha: only the top class is recalibrated
    assert OpenMax(alpha=1).alpha == 1
    with pytest.raises(ValueError, match=r"alpha must be >= 1 or None \(= number of classes\), got 0"):
        OpenMax(alpha=0)
    # ties keep the column order (stable): of two equal top logits, the first gets rank 1
    w = rank_weights(torch.tensor([[2.0, 5.0, 5.0, 1.0]], dtype=f64), alpha=2)
    assert w.tolist() == [[0.0, 1.0, 0.5, 0.0]]
    w3 = rank_weights(torch.tensor([[3.0, 3.0, 3.0], [1.0, 2.0, 3.0]], dtype=f64), alpha=3)
    assert w3.tolist() == [[1.0, 2 / 3, 1 / 3], [1 / 3, 2 / 3, 1.0]]


def test_loaded_state_is_float64_and_checked(cases):
    om = _fit_case(cases[1])
    state = om.state_dict()
    f32 = {**state, **{k: state[k].float() for k in ("mean_vectors", "weibull_shape", "weibull_scale",
                                                     "weibull_small_score")}}
    loaded = OpenMax().load_state_dict(f32)
    assert loaded.mean_vectors.dtype == torch.float64 and loaded.weibull.shape.dtype == np.float64
    assert loaded.fit_method == om.fit_method and loaded.score_kind == om.score_kind
    with pytest.raises(ValueError, match="unsupported Weibull translate amount 2.0"):
        OpenMax().load_state_dict({**state, "weibull_translate_amount": 2.0})


def test_feature_inputs_are_checked_with_names():
    logits = torch.tensor([[3.0, 0.0], [2.5, 0.1], [2.0, 0.2], [0.0, 3.0], [0.1, 2.5], [0.2, 2.2]], dtype=f64)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match=r"^features must be \(N, D\) with N = 6, got shape \(5, 2\)"):
        OpenMax(tailsize=2).fit(logits, labels, features=logits[:5])
    with pytest.raises(ValueError, match=r"^features must be \(N, D\) with N = 6, got shape \(6,\)"):
        OpenMax(tailsize=2).fit(logits, labels, features=logits[:, 0])
    with pytest.raises(ValueError, match="^features contain NaN or infinite values"):
        OpenMax(tailsize=2).fit(logits, labels, features=torch.full((6, 2), float("inf"), dtype=f64))
