"""Training engine: determinism, exact resume, atomic checkpoints, clear failures."""

import hashlib
import io

import pytest
import torch

from osrkit.data.tasks import make_task
from osrkit.engine.checkpoint import load_checkpoint, load_model_weights, save_checkpoint
from osrkit.engine.pipeline import evaluate, fit_method, load_trained, task_from_checkpoint
from osrkit.engine.train import NonFiniteLossError
from osrkit.methods import default_config
from osrkit.models import create_model


@pytest.fixture(scope="module")
def task():
    return make_task("digits", 0)


def _cfg(**kw):
    return default_config("softmax", "digits").replace(**{"epochs": 3, "augment": "crop", **kw})


def test_same_seed_same_weights(task, tmp_path):
    a = fit_method("softmax", task, _cfg(), progress=False)
    b = fit_method("softmax", task, _cfg(), progress=False)
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(va, vb), k
    c = fit_method("softmax", task, _cfg(seed=1), progress=False)
    assert not torch.equal(a.model.classifier.weight, c.model.classifier.weight)


def test_resume_reaches_the_same_final_weights(task, tmp_path):
    full = fit_method("softmax", task, _cfg(), checkpoint=tmp_path / "full.pt", progress=False)
    # an "interrupted" run: stop after epoch 1 by raising from the epoch hook
    class Stop(Exception):
        pass

    def stop_after_first(epoch, rec):
        if epoch == 0:
            raise Stop

    with pytest.raises(Stop):
        fit_method("softmax", task, _cfg(), checkpoint=tmp_path / "part.pt", progress=False, on_epoch=stop_after_first)
    assert load_checkpoint(tmp_path / "part.pt")["train_state"]["epoch"] == 0
    resumed = fit_method("softmax", task, _cfg(), checkpoint=tmp_path / "part.pt", resume=True, progress=False)
    assert len(resumed.history) == 3
    for (k, va), vb in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(va, vb), k


def test_resume_refuses_other_config(task, tmp_path):
    fit_method("softmax", task, _cfg(epochs=1), checkpoint=tmp_path / "c.pt", progress=False)
    with pytest.raises(ValueError, match="different config"):
        fit_method("softmax", task, _cfg(epochs=1, lr=0.5), checkpoint=tmp_path / "c.pt", resume=True, progress=False)


def test_checkpoint_roundtrip_evaluates_without_training_data(task, tmp_path):
    trained = fit_method("cac", task, default_config("cac", "digits").replace(epochs=2), checkpoint=tmp_path / "cac.pt",
                         progress=False)
    direct = evaluate(trained, task)
    outer = torch.load(tmp_path / "cac.pt", weights_only=True)  # plain tensors and types only
    inner = torch.load(io.BytesIO(outer["payload"].numpy().tobytes()), weights_only=True)  # so is the state inside
    assert hashlib.sha256(outer["payload"].numpy().tobytes()).hexdigest() == outer["sha256"]
    state = load_checkpoint(tmp_path / "cac.pt")
    assert state.keys() == inner.keys()
    assert torch.allclose(state["scorer"]["anchors"], trained.scorer.anchors)
    loaded = load_trained(tmp_path / "cac.pt")
    test_only = task_from_checkpoint(loaded.meta)
    assert len(test_only.train_y) == 0
    again = evaluate(loaded, test_only)
    for k in ("auroc", "oscr", "accuracy", "f1"):
        assert again[k] == pytest.approx(direct[k], abs=1e-9)


def test_nan_loss_is_a_clear_error(task):
    with pytest.raises(NonFiniteLossError, match="learning rate"):
        fit_method("softmax", task, _cfg(lr=1e30, optimizer="sgd", schedule="constant"), progress=False)


def test_checkpoint_from_another_architecture(tmp_path):
    model = create_model("vgg32", num_classes=6, in_channels=1)
    other = create_model("small", num_classes=6, in_channels=1).state_dict()
    with pytest.raises(ValueError, match="another architecture"):
        load_model_weights(model, other)
    torch.save({"net": other}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not an osrkit checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_atomic_save_leaves_old_file_on_failure(tmp_path):
    p = tmp_path / "ck.pt"
    save_checkpoint(p, {"a": torch.ones(2)})

    class Boom:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint(p, {"a": Boom()})
    assert torch.equal(load_checkpoint(p)["a"], torch.ones(2))
    assert [f.name for f in tmp_path.iterdir()] == ["ck.pt"]


def test_resume_refuses_a_checkpoint_of_another_task(task, tmp_path):
    fit_method("softmax", task, _cfg(epochs=1), checkpoint=tmp_path / "c.pt", progress=False)
    other = make_task("digits", 1)
    with pytest.raises(ValueError, match="another task"):
        fit_method("softmax", other, _cfg(epochs=1), checkpoint=tmp_path / "c.pt", resume=True, progress=False)


def test_config_values_are_validated_before_training():
    with pytest.raises(ValueError, match="select must be one of"):
        _cfg(select="bestval")
    with pytest.raises(ValueError, match="batch_size >= 1"):
        _cfg(batch_size=0)


def test_method_backbone_mismatch_is_a_clear_error(task):
    cfg = default_config("crosr", "digits").replace(model="small", epochs=1)
    with pytest.raises(ValueError, match="needs the dhrnet backbone"):
        fit_method("crosr", task, cfg, progress=False)


def test_same_config_accepts_a_method_parameter_added_later_at_its_default():
    from osrkit.engine.train import same_config

    current = default_config("movr", "svhn").to_dict()
    old = {**current, "method_params": {k: v for k, v in current["method_params"].items() if k != "rotation_weight"}}
    assert current["method_params"]["rotation_weight"] == 0.0
    assert same_config(old, current, "movr")
    assert not same_config(old, current, None)  # without the method, no defaults to fill in
    changed = {**current, "method_params": {**current["method_params"], "rotation_weight": 0.1}}
    assert not same_config(old, changed, "movr")
    assert not same_config({**old, "lr": 123.0}, current, "movr")
    assert not same_config(None, current, "movr")


def test_same_config_ignores_scorer_only_parameters():
    from osrkit.engine.train import same_config

    current = default_config("openmax", "mnist").to_dict()
    other_scorer = {**current, "method_params": {**current["method_params"], "tailsize": 5, "distance": "cosine"}}
    assert same_config(other_scorer, current, "openmax")
    other_loss = {**current, "method_params": {**current["method_params"], "label_smoothing": 0.1}}
    assert not same_config(other_loss, current, "openmax")


def test_select_best_val_anchor_loss_keeps_the_epoch_with_the_lowest_anchor_term(task, tmp_path):
    cfg = default_config("cac", "digits").replace(epochs=4, select="best-val-anchor-loss")
    trained = fit_method("cac", task, cfg, checkpoint=tmp_path / "cac.pt", progress=False)
    anchors = [h["val_anchor"] for h in trained.history]
    assert all(h["val_tuplet"] > 0 for h in trained.history)
    best = int(min(range(len(anchors)), key=anchors.__getitem__))
    state = load_checkpoint(tmp_path / "cac.pt")
    assert state["train_state"]["best"]["epoch"] == best
    for k, v in state["train_state"]["best"]["model"].items():
        assert torch.equal(trained.model.state_dict()[k], v), k
    with pytest.raises(ValueError, match="anchor"):
        fit_method("softmax", task, _cfg(select="best-val-anchor-loss", epochs=1), progress=False)


def test_trainval_partition_file(tmp_path):
    import json

    from osrkit.data.tasks import read_trainval

    part = {"Train": {"0": [0, 2, 4], "1": [10, 11]}, "Val": {"0": [1], "1": [12]}}
    path = tmp_path / "tv.json"
    path.write_text(json.dumps(part))
    assert read_trainval(path) == [0, 2, 4, 10, 11]
    t = make_task("digits", known=[0, 1, 2, 3, 4, 5], train_indices=read_trainval(path))
    assert len(t.train_y) <= 5 and t.spec["train_indices"].startswith("5 indices")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="train/val partition"):
        read_trainval(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_trainval(tmp_path / "missing.json")


def test_predict_and_scorer_fit_run_in_eval_mode(task):
    """Outputs for scoring come from eval mode (dropout off, BatchNorm on running statistics), whatever mode the
    model is in, and the mode is restored afterwards."""
    from osrkit.engine.predict import predict

    model = create_model("small", num_classes=task.num_classes, in_channels=1, image_size=8)
    modes = []
    model.register_forward_pre_hook(lambda m, inp: modes.append(m.training))
    model.train()
    a = predict(model, task.test_x[:40], task.mean, task.std, batch_size=16)
    assert modes and not any(modes) and model.training
    model.eval()
    ref = model(torch.as_tensor((task.test_x[:40].float() / 255 - task.mean[0]) / task.std[0])).logits
    torch.testing.assert_close(a.logits, ref.detach(), rtol=1e-5, atol=1e-5)
    # the whole pipeline: scorer fit and threshold see eval-mode outputs
    modes.clear()
    cfg = default_config("openmax", "digits").replace(epochs=4, method_params={"tailsize": 5})
    trained = fit_method("openmax", task, cfg, progress=False)
    trained.model.register_forward_pre_hook(lambda m, inp: modes.append(m.training))
    modes.clear()
    evaluate(trained, task)
    assert modes and not any(modes)


def test_evaluate_readings_equal_separate_evaluations(task):
    from osrkit.engine.pipeline import evaluate_readings, with_scorer

    trained = fit_method("softmax", task, _cfg(epochs=2), progress=False)
    res = evaluate_readings(trained, task, {"msp": ("softmax", {}), "mls": ("mls", {}),
                                            "energy_t2": ("energy", {"temperature": 2.0})})
    assert res["msp"]["auroc"] == pytest.approx(evaluate(trained, task)["auroc"], abs=1e-12)
    assert res["mls"]["auroc"] == pytest.approx(evaluate(with_scorer(trained, "mls", task), task)["auroc"], abs=1e-12)
    energy = with_scorer(trained, "energy", task, params={"temperature": 2.0})
    assert res["energy_t2"]["oscr"] == pytest.approx(evaluate(energy, task)["oscr"], abs=1e-12)
