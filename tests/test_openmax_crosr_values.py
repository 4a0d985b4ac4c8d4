"""OpenMax and CROSR values against a second implementation (numpy + scipy), and their messages.

The reference OpenMax below is written from the paper / OSDN code independently of osrkit: mean
activation vectors of correctly classified samples, a Weibull MLE fit (scipy's brentq) of the `tailsize`
largest distances (shifted as libMR does: x - min(tail) + 1), scipy's Weibull CDF as w-score,
rank weights (alpha - r + 1) / alpha from a stable sort, and a softmax over [v (1 - w), sum v w].
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.spatial.distance import cdist
from scipy.stats import weibull_min
from sklearn.preprocessing import StandardScaler

from osrkit.evt import WeibullTails
from osrkit.outputs import Outputs
from osrkit.scores.crosr import CROSRScorer, JointScaler, joint_vector, latent_vector, pool_map
from osrkit.scores.openmax import OpenMax, pairwise_distance, rank_weights

f64 = torch.float64


def _whole(message: str) -> str:
    """A pattern matching exactly this message, nothing before or after it."""
    return "^" + re.escape(message) + "$"


# ----------------------------------------------------------------------------- reference OpenMax


def _np_distance(x: np.ndarray, means: np.ndarray, kind: str) -> np.ndarray:
    euclid = cdist(x, means, "euclidean")
    if kind == "euclidean":
        return euclid
    cos = cdist(x, means, "cosine")
    return cos if kind == "cosine" else euclid / 200.0 + cos


def _weibull_mle(x: np.ndarray) -> tuple[float, float]:
    """Two-parameter Weibull MLE (location 0): the shape solves the profile likelihood equation."""
    lx = np.log(x)

    def eq(k):
        xk = x**k
        return 1.0 / k + lx.mean() - (xk * lx).sum() / xk.sum()

    k = brentq(eq, 1e-3, 1e3, xtol=1e-14, rtol=1e-15)
    return k, float(np.mean(x**k) ** (1.0 / k))


def _reference_fit(logits, labels, feats, tailsize, kind):
    correct = logits.argmax(1) == labels
    means, params = [], []
    for c in range(logits.shape[1]):
        members = feats[correct & (labels == c)]
        mean = members.mean(0)
        d = np.sort(_np_distance(members, mean[None], kind)[:, 0])[-tailsize:]
        shape, scale = _weibull_mle(d - d.min() + 1.0)
        means.append(mean)
        params.append((shape, scale, d.min()))
    return np.array(means), np.array(params)


def _reference_probabilities(v, feats, means, params, alpha, kind):
    n, k = v.shape
    d = _np_distance(feats, means, kind)
    shape, scale, small = params[:, 0], params[:, 1], params[:, 2]
    wscore = weibull_min.cdf(d - small + 1.0, shape, scale=scale)
    omega = np.zeros((n, k))
    for i in range(n):
        order = sorted(range(k), key=lambda j: -v[i, j])[:alpha]  # Python's sort is stable
        for r, j in enumerate(order, start=1):
            omega[i, j] = (alpha - r + 1) / alpha
    w = omega * wscore
    act = np.c_[v * (1 - w), (v * w).sum(1)]
    e = np.exp(act - act.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _data(seed: int = 0, k: int = 4, per_class: int = 12, d_extra: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(k), per_class)
    logits = 5.0 * np.eye(k)[labels] + rng.normal(size=(labels.size, k))
    # a few misclassified samples with extreme logits: they must not enter any mean or tail
    bad = np.arange(min(k, 3)) * per_class
    logits[bad] = 0.0
    logits[bad, (labels[bad] + 1) % k] = 40.0
    feats = None if d_extra == 0 else np.c_[logits, rng.normal(size=(labels.size, d_extra)) + labels[:, None]]
    test = 3.0 * np.eye(k)[rng.integers(0, k, 15)] + 2.0 * rng.normal(size=(15, k))
    test_feats = None if d_extra == 0 else np.c_[test, rng.normal(size=(15, d_extra))]
    return logits, labels, feats, test, test_feats


@pytest.mark.parametrize("distance", ["euclidean", "cosine", "eucos"])
def test_openmax_matches_a_numpy_scipy_reimplementation(distance):
    logits, labels, _, test, _ = _data()
    om = OpenMax(tailsize=5, alpha=2, distance=distance, fit_method="mle")
    om.fit(torch.from_numpy(logits), torch.from_numpy(labels))
    means, params = _reference_fit(logits, labels, logits, 5, distance)
    np.testing.assert_allclose(om.mean_vectors.numpy(), means, rtol=1e-12, atol=1e-12)
    # method="mle" solves the likelihood equation to full precision
    np.testing.assert_allclose(om.weibull.shape, params[:, 0], rtol=1e-7)
    np.testing.assert_allclose(om.weibull.scale, params[:, 1], rtol=1e-7)
    np.testing.assert_allclose(om.weibull.small_score, params[:, 2], rtol=1e-12)
    expected = _reference_probabilities(test, test, means, params, 2, distance)
    probs = om.probabilities(torch.from_numpy(test))
    assert probs.dtype == f64
    np.testing.assert_allclose(probs.numpy(), expected, rtol=1e-6, atol=1e-9)
    res = om.score(torch.from_numpy(test))
    np.testing.assert_allclose(res.unknown_scores.numpy(), expected[:, -1], rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(res.predictions.numpy(), expected[:, :-1].argmax(1))


def test_openmax_on_features_matches_the_reimplementation():
    logits, labels, feats, test, test_feats = _data(seed=1, d_extra=3)
    om = OpenMax(tailsize=6, alpha=3, distance="eucos", fit_method="mle")
    om.fit(torch.from_numpy(logits), torch.from_numpy(labels), features=torch.from_numpy(feats))
    means, params = _reference_fit(logits, labels, feats, 6, "eucos")
    np.testing.assert_allclose(om.mean_vectors.numpy(), means, rtol=1e-12, atol=1e-12)
    expected = _reference_probabilities(test, test_feats, means, params, 3, "eucos")
    probs = om.probabilities(torch.from_numpy(test), torch.from_numpy(test_feats))
    np.testing.assert_allclose(probs.numpy(), expected, rtol=1e-6, atol=1e-9)


def test_default_fit_method_is_libmr_not_mle():
    """The default (libMR's 1e-6 search) differs from the full-precision MLE by more than rounding."""
    logits, labels, *_ = _data()
    lib = OpenMax(tailsize=5, alpha=2).fit(torch.from_numpy(logits), torch.from_numpy(labels))
    mle = OpenMax(tailsize=5, alpha=2, fit_method="mle").fit(torch.from_numpy(logits), torch.from_numpy(labels))
    _, params = _reference_fit(logits, labels, logits, 5, "eucos")
    np.testing.assert_allclose(mle.weibull.shape, params[:, 0], rtol=1e-7)
    assert np.abs(lib.weibull.shape - params[:, 0]).max() > 1e-7
    np.testing.assert_allclose(lib.weibull.shape, params[:, 0], rtol=1e-3)


def test_documented_defaults():
    om = OpenMax()
    assert (om.tailsize, om.alpha, om.distance, om.score_kind, om.fit_method) == (20, 10, "eucos", "unknown_prob",
                                                                                 "libmr")
    cr = CROSRScorer()
    assert cr.pool == "avg" and cr.scaler.how == "none"
    assert (cr.openmax.tailsize, cr.openmax.alpha, cr.openmax.distance, cr.openmax.score_kind,
            cr.openmax.fit_method) == (20, None, "euclidean", "unknown_prob", "libmr")


def test_default_tailsize_uses_the_20_largest_distances():
    logits, labels, *_ = _data(seed=2, k=2, per_class=30)
    om = OpenMax(fit_method="mle").fit(torch.from_numpy(logits), torch.from_numpy(labels))
    _, params = _reference_fit(logits, labels, logits, 20, "eucos")
    np.testing.assert_allclose(om.weibull.scale, params[:, 1], rtol=1e-7)
    np.testing.assert_allclose(om.weibull.small_score, params[:, 2], rtol=1e-12)


# ----------------------------------------------------------------------------- building blocks


def test_euclidean_distance_is_exact_far_from_the_origin():
    """30 rows (torch's matmul shortcut kicks in above 25) at 1e6: |x|^2 - 2xm + |m|^2 would cancel."""
    g = torch.Generator().manual_seed(0)
    x = 1e6 + torch.rand(30, 2, generator=g, dtype=f64)
    m = 1e6 + torch.rand(2, 2, generator=g, dtype=f64)
    ref = cdist(x.numpy(), m.numpy())
    np.testing.assert_allclose(pairwise_distance(x, m, "euclidean").numpy(), ref, rtol=1e-9, atol=0)
    np.testing.assert_allclose(pairwise_distance(x, m, "eucos").numpy(), ref / 200 + cdist(x.numpy(), m.numpy(), "cosine"),
                               rtol=1e-9, atol=1e-12)


def test_unknown_distance_is_named():
    with pytest.raises(ValueError, match=re.escape("distance must be one of ('eucos', 'euclidean', 'cosine'), "
                                                   "got 'manhattan'")):
        pairwise_distance(torch.ones(2, 2, dtype=f64), torch.ones(1, 2, dtype=f64), "manhattan")


def test_rank_weights_break_many_ties_by_column_order():
    """50 classes with ties: only a stable sort gives tied classes ranks in column order."""
    v = torch.tensor([[float(j % 3) for j in range(50)], [float((7 * j) % 4) for j in range(50)]], dtype=f64)
    alpha = 50
    expected = np.zeros((2, 50))
    for i in range(2):
        order = sorted(range(50), key=lambda j: -v[i, j].item())
        for r, j in enumerate(order, start=1):
            expected[i, j] = (alpha - r + 1) / alpha
    np.testing.assert_array_equal(rank_weights(v, alpha).numpy(), expected)


def test_w_scores_stay_on_the_logits_device():
    """Logits on the 'meta' device: the w-scores land there too, and features given on the CPU are moved there."""
    logits, labels, feats, test, test_feats = _data(seed=3, d_extra=2)
    om = OpenMax(tailsize=5, alpha=2).fit(torch.from_numpy(logits), torch.from_numpy(labels))
    w = om.w_scores(torch.from_numpy(test).to("meta"))
    assert w.device.type == "meta" and w.shape == (15, 4)
    assert rank_weights(torch.from_numpy(test).to("meta"), 3).device.type == "meta"
    omf = OpenMax(tailsize=5, alpha=2).fit(torch.from_numpy(logits), torch.from_numpy(labels),
                                           features=torch.from_numpy(feats))
    wf = omf.w_scores(torch.from_numpy(test).to("meta"), torch.from_numpy(test_feats))
    assert wf.device.type == "meta" and wf.shape == (15, 4)


# ----------------------------------------------------------------------------- input types


def _small():
    logits = torch.tensor([[3.0, 0.0, 0.0], [2.0, 0.0, 0.5], [4.0, 1.0, 0.0], [0.0, 3.0, 0.0], [0.0, 2.0, 1.0],
                           [1.0, 4.0, 0.0], [0.0, 0.0, 3.0], [0.0, 1.0, 2.0], [1.0, 0.0, 4.0]], dtype=f64)
    return logits, torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])


def test_integer_and_list_logits_score_as_float64():
    logits, labels = _small()
    whole = logits.round()  # integer-valued, so the integer copy holds the same numbers
    om = OpenMax(tailsize=3, alpha=2, distance="euclidean").fit(whole.long(), labels)
    ref = OpenMax(tailsize=3, alpha=2, distance="euclidean").fit(whole, labels)
    test = torch.tensor([[3, 1, 0], [0, 1, 5]])
    expected = ref.probabilities(test.double())
    for given in (test, test.int(), test.tolist()):
        probs = om.probabilities(given)
        assert probs.dtype == f64
        np.testing.assert_allclose(probs.numpy(), expected.numpy(), rtol=1e-12)


def test_float32_training_logits_give_float64_means():
    logits, labels = _small()
    om = OpenMax(tailsize=3, alpha=2, distance="euclidean").fit(logits.float(), labels)
    assert om.mean_vectors.dtype == f64
    # averaged in float64: a float32 mean would round 1/3 and 1/6 to float32
    np.testing.assert_array_equal(om.mean_vectors[0].numpy(), np.array([9.0, 1.0, 0.5]) / 3)


def test_non_real_inputs_are_named():
    logits, labels = _small()
    with pytest.raises(ValueError, match=r"^train_logits must be a real-valued array, got dtype torch\.bool"):
        OpenMax(tailsize=3).fit(logits > 1, labels)
    om = OpenMax(tailsize=3, alpha=2).fit(logits, labels)
    with pytest.raises(ValueError, match=r"^logits must be a real-valued array, got dtype torch\.bool"):
        om.probabilities(logits > 1)
    with pytest.raises(ValueError, match=r"^features must be a real-valued array, got dtype torch\.bool"):
        OpenMax(tailsize=3).fit(logits, labels, features=logits > 1)
    omf = OpenMax(tailsize=3, alpha=2).fit(logits, labels, features=logits * 2)
    with pytest.raises(ValueError, match=r"^features must be a real-valued array, got dtype torch\.complex128"):
        omf.probabilities(logits, features=torch.zeros(9, 3, dtype=torch.complex128))


# ----------------------------------------------------------------------------- messages


def test_fit_messages_name_the_argument():
    logits, labels = _small()
    with pytest.raises(ValueError, match=_whole("OpenMax.fit needs labels: the Outputs passed have labels=None")):
        OpenMax().fit(Outputs(logits=logits))
    with pytest.raises(ValueError, match=_whole("OpenMax.fit needs train_labels (or an Outputs with labels)")):
        OpenMax().fit(logits)
    with pytest.raises(ValueError, match=re.escape("train_logits must be (N, K) with K >= 2 classes, got shape (9,)")):
        OpenMax().fit(logits[:, 0], labels)
    with pytest.raises(ValueError, match=re.escape("train_labels must have shape (9,), got (8,)")):
        OpenMax().fit(logits, labels[:8])
    with pytest.raises(ValueError, match=re.escape("logits must be (N, K) with K >= 2 classes, got shape (3,)")):
        OpenMax(tailsize=3).fit(logits, labels).probabilities(logits[0])


def test_failed_weibull_fit_reports_the_tail_sizes():
    one = torch.tensor([[3.0, 0.0], [0.0, 3.0], [0.0, 2.0]], dtype=f64)
    with pytest.raises(ValueError, match=re.escape("tail sizes per class [1, 2] (tailsize 5)")):
        OpenMax(tailsize=5).fit(one, torch.tensor([0, 1, 1]))


def test_feature_mismatch_messages():
    logits, labels = _small()
    omf = OpenMax(tailsize=3).fit(logits, labels, features=torch.cat([logits, logits], 1))
    with pytest.raises(ValueError, match=_whole(
            "OpenMax was fitted on features: pass features to probabilities/score too")):
        omf.probabilities(logits)
    with pytest.raises(ValueError, match=re.escape("features must have shape (9, 6), got (9, 3)")):
        omf.probabilities(logits, features=logits)
    om = OpenMax(tailsize=3).fit(logits, labels)
    with pytest.raises(ValueError, match=_whole(
            "OpenMax was fitted on logits (features=None): do not pass features when scoring")):
        om.probabilities(logits, features=logits)
    with pytest.raises(ValueError, match=re.escape(
            "this OpenMax was fitted on features other than the logits: only CROSR's joint vector can be exported")):
        omf.graph()


def test_not_fitted_names_the_class_and_needs_both_parts():
    logits, _ = _small()
    with pytest.raises(RuntimeError, match=r"^OpenMax is not fitted: call fit\(train outputs\) before scoring"):
        OpenMax().probabilities(logits)
    half = OpenMax()
    half.mean_vectors = torch.eye(3, dtype=f64)  # mean vectors without Weibull models is still not fitted
    with pytest.raises(RuntimeError, match=r"^OpenMax is not fitted"):
        half.probabilities(logits)
    with pytest.raises(RuntimeError, match=r"^OpenMax is not fitted"):
        CROSRScorer().graph()


def test_openmax_assembled_from_parameters_scores_on_the_logits():
    """Set mean vectors and Weibull models directly: no fit, so distances are on the logits."""
    om = OpenMax(tailsize=3, alpha=1, distance="euclidean")
    om.mean_vectors = torch.tensor([[2.0, 0.0], [0.0, 2.0]], dtype=f64)
    om.weibull = WeibullTails(shape=np.ones(2), scale=np.ones(2), small_score=np.zeros(2))
    v = np.array([[1.0, 0.0]])
    d0 = 1.0  # |v - (2, 0)|
    w0 = 1 - np.exp(-(d0 + 1))  # CDF of a unit exponential at d - 0 + 1; alpha 1: only class 0 weighted
    act = np.array([1.0 * (1 - w0), 0.0, w0])
    np.testing.assert_allclose(om.probabilities(torch.tensor(v, dtype=f64))[0].numpy(),
                               np.exp(act) / np.exp(act).sum(), rtol=1e-12)


# ----------------------------------------------------------------------------- state


def test_state_round_trip_keeps_fit_method_and_float64_parameters():
    logits, labels, *_ = _data()
    om = OpenMax(tailsize=5, alpha=2, fit_method="mle").fit(torch.from_numpy(logits), torch.from_numpy(labels))
    state = om.state_dict()
    loaded = OpenMax().load_state_dict(state)
    assert loaded.fit_method == "mle"
    refit = loaded.fit(torch.from_numpy(logits), torch.from_numpy(labels))
    np.testing.assert_array_equal(refit.weibull.shape, om.weibull.shape)
    f32 = {**state, **{k: state[k].float() for k in ("weibull_scale", "weibull_small_score")}}
    loaded32 = OpenMax().load_state_dict(f32)
    assert loaded32.weibull.scale.dtype == np.float64 and loaded32.weibull.small_score.dtype == np.float64
    np.testing.assert_allclose(loaded32.weibull.scale, om.weibull.scale, rtol=1e-6)


# ----------------------------------------------------------------------------- CROSR


def _outputs(n: int = 5, labels: bool = True) -> Outputs:
    g = torch.Generator().manual_seed(n)
    logits = 4.0 * torch.eye(3, dtype=f64)[torch.arange(n) % 3] + torch.randn(n, 3, generator=g, dtype=f64)
    maps = [torch.randn(n, 2, 3, 3, generator=g, dtype=f64), torch.randn(n, 4, 2, 2, generator=g, dtype=f64)]
    return Outputs(logits=logits, labels=torch.arange(n) % 3 if labels else None, extras={"latent_maps": maps})


def test_latent_and_joint_vectors_default_to_average_pooling():
    out = _outputs()
    maps = [m.numpy() for m in out.extras["latent_maps"]]
    avg = np.concatenate([m.reshape(5, m.shape[1], -1).mean(2) for m in maps], 1)
    mx = np.concatenate([m.reshape(5, m.shape[1], -1).max(2) for m in maps], 1)
    np.testing.assert_allclose(latent_vector(out).numpy(), avg, rtol=1e-12)
    np.testing.assert_allclose(latent_vector(out, "max").numpy(), mx, rtol=1e-12)
    np.testing.assert_allclose(joint_vector(out).numpy(), np.c_[out.logits.numpy(), avg], rtol=1e-12)


def test_latents_given_as_maps_are_pooled_as_asked():
    out = _outputs()
    m = out.extras["latent_maps"][0]
    as_latents = Outputs(logits=out.logits, extras={"latents": m})
    np.testing.assert_allclose(latent_vector(as_latents, "avg").numpy(), m.numpy().reshape(5, 2, 9).mean(2))
    np.testing.assert_allclose(latent_vector(as_latents, "max").numpy(), m.numpy().reshape(5, 2, 9).max(2))
    # one map given as a tensor, not in a list, is one block of latents
    single = Outputs(logits=out.logits, extras={"latent_maps": m})
    np.testing.assert_allclose(latent_vector(single).numpy(), m.numpy().reshape(5, 2, 9).mean(2))


def test_joint_vector_follows_the_logits_device():
    out = _outputs()
    meta = Outputs(logits=out.logits.to("meta"), extras={"latents": torch.ones(5, 2)})
    j = joint_vector(meta)
    assert j.device.type == "meta" and j.shape == (5, 5) and j.dtype == f64


def test_latent_messages():
    out = _outputs()
    with pytest.raises(ValueError, match=re.escape("a latent map must be (N, C, ...), got shape (3,)")):
        pool_map(torch.zeros(3), "avg")
    with pytest.raises(ValueError, match=_whole('outputs.extras["latent_maps"] is empty')):
        latent_vector(Outputs(logits=out.logits, extras={"latent_maps": []}))
    with pytest.raises(ValueError, match=re.escape(
            'CROSR needs latents: outputs.extras must hold "latents" (N, D) or "latent_maps" '
            "(a list of (N, C, H, W) maps), as a DHRNet produces")):
        latent_vector(Outputs(logits=out.logits))
    with pytest.raises(ValueError, match=re.escape("latents have 4 rows, logits have 5")):
        latent_vector(Outputs(logits=out.logits, extras={"latents": torch.zeros(4, 2)}))
    with pytest.raises(ValueError, match=_whole("CROSRScorer.fit needs labels: the Outputs passed have labels=None")):
        CROSRScorer().fit(_outputs(labels=False))
    state = CROSRScorer().state_dict()
    with pytest.raises(ValueError, match=re.escape("pool must be one of ('avg', 'max'), got 'median'")):
        CROSRScorer().load_state_dict({**state, "pool": "median"})


def test_block_scaling_by_hand():
    """Norms below 1 (the clamp must only guard against 0) and a single logit column."""
    j = torch.tensor([[0.3, 0.0, 0.4], [-0.1, 0.6, 0.8], [0.2, 0.0, 0.0]], dtype=f64)
    s = JointScaler("block", num_logits=1).fit(j)
    ny = (0.3 + 0.1 + 0.2) / 3
    nz = (0.4 + 1.0 + 0.0) / 3
    np.testing.assert_allclose(s.scale.numpy(), [ny, nz, nz], rtol=1e-12)
    assert s.shift.dtype == f64 and s.shift.tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_allclose(s.transform(j).numpy(), j.numpy() / np.array([ny, nz, nz]), rtol=1e-12)
    none = JointScaler().fit(j)
    assert none.shift.dtype == f64 and none.scale.dtype == f64
    for k in (None, 0, 3):
        with pytest.raises(ValueError, match=re.escape(f"block scaling needs 0 < num_logits < 3, got {k}")):
            JointScaler("block", num_logits=k).fit(j)


def test_standardize_matches_sklearn():
    j = torch.tensor([[1.0, 10.0, -2.0], [3.0, 14.0, 0.0], [2.0, 9.0, 5.0], [6.0, 11.0, 1.0]], dtype=f64)
    s = JointScaler("standardize").fit(j)
    sk = StandardScaler().fit(j.numpy())
    np.testing.assert_allclose(s.shift.numpy(), sk.mean_, rtol=1e-12)
    np.testing.assert_allclose(s.transform(j[:2] + 1).numpy(), sk.transform(j[:2].numpy() + 1), rtol=1e-12)
    assert s.transform(j.to("meta")).device.type == "meta"


def test_joint_scaler_state_and_unfitted_transform():
    with pytest.raises(RuntimeError, match=r"^JointScaler\.transform before fit$"):
        JointScaler("block", 2).transform(torch.ones(2, 4, dtype=f64))
    j = torch.tensor([[1.0, 2.0, 0.5, 0.5], [2.0, 1.0, 1.5, 0.5]], dtype=f64)
    s = JointScaler("block", num_logits=2).fit(j)
    loaded = JointScaler().load_state_dict(s.state_dict())
    assert (loaded.how, loaded.num_logits) == ("block", 2)
    # a restored scaler can be refitted: it still knows where the logits end
    np.testing.assert_array_equal(loaded.fit(j * 2).scale.numpy(), s.scale.numpy() * 2)


def test_crosr_options_reach_openmax():
    train = _outputs(n=30)
    a = CROSRScorer(tailsize=6, alpha=2, score="one_minus_max", fit_method="mle").fit(train)
    assert (a.openmax.alpha, a.openmax.score_kind, a.openmax.fit_method) == (2, "one_minus_max", "mle")
    ref = OpenMax(tailsize=6, alpha=2, distance="euclidean", fit_method="mle")
    ref.fit(train.logits, train.labels, features=joint_vector(train))
    test = _outputs(n=7)
    probs = ref.probabilities(test.logits, features=joint_vector(test))
    np.testing.assert_allclose(a.probabilities(test).numpy(), probs.numpy(), rtol=1e-12)
    np.testing.assert_allclose(a.score(test).unknown_scores.numpy(), 1 - probs[:, :-1].max(1).values.numpy(),
                               rtol=1e-12)
