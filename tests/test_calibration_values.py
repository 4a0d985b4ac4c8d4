"""Operating points (engine.calibration) and batched inference (engine.predict), checked value by value
with tiny inputs and a probe model: no training, fast."""

import numpy as np
import pytest
import torch

from osrkit import metrics as M
from osrkit.engine import calibration as CAL
from osrkit.engine.predict import predict
from osrkit.models.output import ModelOutput

# ---------------------------------------------------------------- check_tpr


def test_check_tpr_accepts_numbers_in_the_half_open_range():
    assert CAL.check_tpr(1) == 1.0 and isinstance(CAL.check_tpr(1), float)
    assert CAL.check_tpr("0.9") == 0.9
    assert CAL.check_tpr(np.float32(0.5)) == 0.5
    assert CAL.check_tpr(1e-9) == 1e-9


@pytest.mark.parametrize("bad", [0, 0.0, -0.5, 1.0000001, 2])
def test_check_tpr_out_of_range_message(bad):
    with pytest.raises(ValueError) as info:
        CAL.check_tpr(bad)
    assert str(info.value) == f"--tpr must be in (0, 1] (the share of validation knowns kept), got {bad}"


@pytest.mark.parametrize("bad", ["abc", None, [0.5]])
def test_check_tpr_non_number_message(bad):
    with pytest.raises(ValueError) as info:
        CAL.check_tpr(bad)
    assert str(info.value) == f"--tpr must be a number in (0, 1], got {bad!r}"
    assert info.value.__cause__ is None and info.value.__suppress_context__


# ---------------------------------------------------------------- threshold_at_tpr


def _smallest_keeping(s, tpr):
    """By definition: the smallest score t of s with mean(s <= t) >= tpr."""
    s = np.asarray(s, dtype=np.float64).ravel()
    return float(min(t for t in s if np.mean(s <= t) >= tpr - 1e-12))


@pytest.mark.parametrize("tpr", [0.01, 0.1, 0.5, 0.9, 0.95, 0.99, 1.0])
def test_threshold_at_tpr_is_the_inverted_cdf_quantile(tpr):
    s = np.random.default_rng(0).normal(0, 1, 43)
    t = CAL.threshold_at_tpr(s, tpr)
    assert t == np.quantile(s, tpr, method="inverted_cdf")
    assert t == _smallest_keeping(s, tpr)
    assert np.mean(s <= t) >= tpr


def test_threshold_at_tpr_by_hand_and_default():
    s = [10.0, 1.0, 9.0, 2.0, 8.0, 3.0, 7.0, 4.0, 6.0, 5.0]
    assert CAL.threshold_at_tpr(s, 0.9) == 9.0  # 9 of 10 kept
    assert CAL.threshold_at_tpr(s, 0.91) == 10.0  # 9 of 10 is not enough
    assert CAL.threshold_at_tpr(s, 0.5) == 5.0
    assert CAL.threshold_at_tpr(s) == 10.0  # default 95%: 9.5 of 10 -> all
    s20 = np.arange(1.0, 21.0)
    assert CAL.threshold_at_tpr(s20) == 19.0  # default 95% of 20 = 19
    assert CAL.DEFAULT_TPR == 0.95


def test_threshold_at_tpr_keeps_float64_precision_and_accepts_tensors():
    # 0.1 as a Python float is kept exactly (no float32 round trip)
    assert CAL.threshold_at_tpr([0.1, 0.2, 0.3], 1 / 3) == 0.1
    assert CAL.threshold_at_tpr(torch.tensor([[0.3, 0.1], [0.2, 0.4]], dtype=torch.float64), 0.5) == 0.2
    assert CAL.threshold_at_tpr(torch.tensor([3, 1, 2]), 1.0) == 3.0


@pytest.mark.parametrize("bad", [[], [0.1, float("nan")], [float("inf")], np.zeros((0, 3))])
def test_threshold_at_tpr_rejects_empty_or_non_finite_scores(bad):
    with pytest.raises(ValueError, match=r"^validation scores must be a non-empty array of finite numbers$"):
        CAL.threshold_at_tpr(bad, 0.9)


def test_threshold_at_tpr_checks_the_tpr():
    with pytest.raises(ValueError, match=r"^--tpr must be in \(0, 1\]"):
        CAL.threshold_at_tpr([1.0, 2.0], 0.0)


# ---------------------------------------------------------------- operating_point / calibration_entries


def test_operating_point_entry():
    s = torch.arange(1.0, 21.0)
    assert CAL.operating_point(s, 0.9) == {"threshold": 18.0, "tpr": 0.9, "num_val_known": 20,
                                           "rule": "keeps 90% of the validation knowns"}
    op = CAL.operating_point(s)
    assert op == {"threshold": 19.0, "tpr": 0.95, "num_val_known": 20, "rule": "keeps 95% of the validation knowns"}
    assert CAL.operating_point(s, "0.999")["rule"] == "keeps 99.9% of the validation knowns"
    assert CAL.operating_point(s, 1)["rule"] == "keeps 100% of the validation knowns"


def test_calibration_entries_from_scores():
    s = torch.tensor([0.5, 0.1, 0.4, 0.2, 0.3], dtype=torch.float32)
    e = CAL.calibration_entries(s, 0.6)
    assert set(e) == {"operating_point", "f1_threshold", "f1_reject", "val_known_scores"}
    s64 = s.double()
    assert e["operating_point"] == {"threshold": float(np.quantile(s64.numpy(), 0.6, method="inverted_cdf")),
                                    "tpr": 0.6, "num_val_known": 5, "rule": "keeps 60% of the validation knowns"}
    assert e["operating_point"]["threshold"] == pytest.approx(0.3)
    # the F1 rule by default rejects 10%: numpy's linear quantile 0.9 of the same scores
    assert e["f1_reject"] == 0.1 == CAL.F1_REJECT_FRACTION
    assert e["f1_threshold"] == pytest.approx(np.quantile(s64.numpy(), 0.9)) == pytest.approx(0.46)
    assert e["val_known_scores"].dtype == torch.float64 and e["val_known_scores"].device.type == "cpu"
    assert torch.equal(e["val_known_scores"], s64)


def test_calibration_entries_custom_f1_rule_and_default_tpr():
    s = [float(v) for v in range(1, 21)]
    e = CAL.calibration_entries(s, f1_reject=0.25)
    assert e["f1_reject"] == 0.25
    assert e["f1_threshold"] == pytest.approx(M.threshold_at_known_rejection(s, 0.25)) == pytest.approx(15.25)
    assert e["operating_point"]["threshold"] == 19.0 and e["operating_point"]["tpr"] == 0.95


@pytest.mark.parametrize("empty", [None, [], torch.zeros(0)])
def test_calibration_entries_without_validation_knowns(empty):
    assert CAL.calibration_entries(empty) == {"operating_point": None, "f1_threshold": None, "f1_reject": 0.1,
                                              "val_known_scores": None}
    assert CAL.calibration_entries(empty, 0.9, 0.2)["f1_reject"] == 0.2


# ---------------------------------------------------------------- predict


class Probe(torch.nn.Module):
    """Returns its (normalised) input flattened as the embedding and 2*input + bias as logits, and records what
    it saw: batch size, training flag, grad mode, autocast, memory layout."""

    def __init__(self, with_extras=True):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.tensor(0.5))
        self.drop = torch.nn.Dropout(0.9)
        self.with_extras = with_extras
        self.calls = []

    def forward(self, x):
        self.calls.append({"n": len(x), "training": self.training, "grad": torch.is_grad_enabled(),
                           "autocast": torch.is_autocast_enabled("cpu"),
                           "channels_last": x.is_contiguous(memory_format=torch.channels_last)
                           and not x.is_contiguous()})
        flat = x.flatten(1)
        logits = self.drop(2 * flat + self.bias)  # dropout would zero most entries in training mode
        extras = None
        if self.with_extras:
            extras = {"twice": 2 * flat, "first": flat[:, 0], "cube": x[:, 0], "note": "text",
                      "half": (flat / 2).to(torch.bfloat16)}
        return ModelOutput(logits, flat.double(), extras)


MEAN, STD = [0.5, 0.25], [0.5, 2.0]


def _images(n):
    g = torch.Generator().manual_seed(n)
    return torch.randint(0, 256, (n, 2, 2, 2), generator=g, dtype=torch.uint8)


def _normalised(images):
    x = images.double() / 255.0
    m = torch.tensor(MEAN, dtype=torch.float64).view(1, -1, 1, 1)
    s = torch.tensor(STD, dtype=torch.float64).view(1, -1, 1, 1)
    return ((x - m) / s).flatten(1)


@pytest.mark.parametrize("n, batch_size, sizes", [(7, 3, [3, 3, 1]), (6, 3, [3, 3]), (2, 5, [2])])
def test_predict_batches_in_order_and_normalises(n, batch_size, sizes):
    images, labels = _images(n), torch.arange(n)
    model = Probe()
    out = predict(model, images, MEAN, STD, labels=labels, batch_size=batch_size)
    assert [c["n"] for c in model.calls] == sizes
    expected = _normalised(images)
    assert out.embedding.dtype == torch.float32 and out.logits.dtype == torch.float32
    torch.testing.assert_close(out.embedding.double(), expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out.logits.double(), 2 * expected + 0.5, atol=1e-6, rtol=1e-6)
    assert out.labels is labels and len(out) == n


def test_predict_default_batch_size_is_512():
    model = Probe(with_extras=False)
    images = torch.zeros(513, 2, 1, 1, dtype=torch.uint8)
    out = predict(model, images, MEAN, STD)
    assert [c["n"] for c in model.calls] == [512, 1]
    assert out.labels is None and out.extras == {} and out.logits.shape == (513, 2)


def test_predict_collects_only_two_dimensional_tensor_extras_as_float32():
    images = _images(5)
    out = predict(Probe(), images, MEAN, STD, batch_size=2)
    assert set(out.extras) == {"twice", "half"}
    torch.testing.assert_close(out.extras["twice"].double(), 2 * _normalised(images), atol=1e-5, rtol=1e-5)
    assert out.extras["twice"].dtype == torch.float32 and out.extras["half"].dtype == torch.float32
    assert out.extras["half"].shape == (5, 8)


@pytest.mark.parametrize("training", [True, False])
def test_predict_runs_in_eval_mode_without_grad_and_restores_the_flag(training):
    model = Probe()
    model.train(training)
    out = predict(model, _images(4), MEAN, STD, batch_size=2)
    assert [(c["training"], c["grad"]) for c in model.calls] == [(False, False), (False, False)]
    assert model.training is training and model.drop.training is training
    assert not out.logits.requires_grad and out.logits.grad_fn is None
    assert torch.is_grad_enabled()


def test_predict_precision_and_memory_format_are_applied_and_outputs_are_float32():
    model = Probe()
    out = predict(model, _images(3), MEAN, STD, batch_size=2, precision="bf16", memory_format="channels_last")
    assert [(c["autocast"], c["channels_last"]) for c in model.calls] == [(True, True), (True, True)]
    assert out.logits.dtype == torch.float32 and out.embedding.dtype == torch.float32
    model = Probe()
    predict(model, _images(3), MEAN, STD, batch_size=2)  # defaults: fp32, contiguous
    assert [(c["autocast"], c["channels_last"]) for c in model.calls] == [(False, False), (False, False)]


def test_predict_of_no_images():
    model = Probe()
    model.train()
    out = predict(model, torch.zeros(0, 2, 2, 2, dtype=torch.uint8), MEAN, STD)
    assert model.calls == [] and model.training
    assert out.logits.shape == (0,) and out.embedding is None and out.extras == {}


class DeviceProbe(torch.nn.Module):
    """Records the device of each batch it gets; answers with CPU tensors, so any device torch can create
    tensors on (here 'meta', which needs no hardware) can stand in for a GPU."""

    def __init__(self):
        super().__init__()
        self.devices = []

    def forward(self, x):
        self.devices.append(x.device.type)
        return ModelOutput(torch.zeros(len(x), 2), torch.zeros(len(x), 3))


def test_predict_moves_each_batch_to_the_requested_device():
    model = DeviceProbe()
    out = predict(model, _images(5), MEAN, STD, batch_size=2, device="meta")
    assert model.devices == ["meta", "meta", "meta"]
    assert out.logits.device.type == "cpu" and out.logits.shape == (5, 2)
    model = DeviceProbe()
    predict(model, _images(2), MEAN, STD)
    assert model.devices == ["cpu"]


def test_predict_autocasts_on_the_requested_device_not_the_cpu():
    """bf16 autocast is opened for `device` (on a GPU: CUDA autocast). torch has no autocast for 'meta', so
    asking for bf16 there fails in torch.autocast, naming that device: proof the device was passed on."""
    with pytest.raises(RuntimeError, match=r"autocast device_type 'meta'"):
        predict(DeviceProbe(), _images(2), MEAN, STD, device="meta", precision="bf16")
    model = DeviceProbe()
    predict(model, _images(2), MEAN, STD, device="meta", precision="fp32")  # fp32: no autocast at all
    assert model.devices == ["meta"]
