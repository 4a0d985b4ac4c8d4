"""Outlier-set protocols (CROSR) and the OpenMax / CROSR methods end to end on small real data."""

from pathlib import Path

import pytest
import torch

from osrkit.cli import main
from osrkit.data.tasks import make_task
from osrkit.engine.pipeline import evaluate, fit_method, load_trained, task_from_checkpoint, with_scorer
from osrkit.methods import default_config
from conftest import SHARED

SHARED_DATA = SHARED / "data"


def test_mnist_omniglot_task_has_all_digits_known_and_omniglot_unknown():
    task = make_task("mnist", split=None, outlier="omniglot", data_root=SHARED_DATA, image_size=28)
    assert task.known_classes == list(range(10)) and task.unknown_classes == []
    assert task.unknown_x.shape == (10000, 1, 28, 28) and task.unknown_x.dtype == torch.uint8
    assert len(task.test_y) == 10000  # as large as the MNIST test set, as in the paper
    assert task.spec["outlier"] == "omniglot" and task.name == "mnist+omniglot"


def test_rgb_outliers_become_grey_for_grey_tasks():
    task = make_task("digits", split=None, outlier="imagenet-crop", data_root=SHARED_DATA)
    assert task.unknown_x.shape == (10000, 1, 8, 8)


def test_unknown_outlier_name():
    with pytest.raises(ValueError, match="unknown outlier set 'lsun-big'"):
        make_task("digits", split=None, outlier="lsun-big")


@pytest.mark.parametrize("method", ["openmax", "crosr"])
def test_openmax_and_crosr_train_save_and_evaluate(method, tmp_path):
    task = make_task("digits", split=None, outlier="noise")
    cfg = default_config(method, "digits").replace(epochs=4, method_params={"tailsize": 10})
    trained = fit_method(method, task, cfg, checkpoint=tmp_path / "m.pt", progress=False)
    res = evaluate(trained, task)
    assert res["accuracy"] > 0.6
    # open-set macro-F1, recomputed with scikit-learn from the scorer's outputs at the stored F1 threshold
    import numpy as np
    from sklearn.metrics import f1_score

    from osrkit.engine.config import TrainConfig
    from osrkit.engine.pipeline import predict_with

    cfg = TrainConfig.from_dict(trained.meta["osrkit_config"])
    ks, kp = trained.scorer.score(predict_with(trained.model, task.test_x, task, cfg, labels=task.test_y))
    us, up = trained.scorer.score(predict_with(trained.model, task.unknown_x, task, cfg))
    thr, k = trained.meta["f1_threshold"], task.num_classes
    true = np.r_[task.test_y.numpy(), np.full(len(us), k)]
    pred = np.r_[np.where(ks.numpy() > thr, k, kp.numpy()), np.where(us.numpy() > thr, k, up.numpy())]
    assert res["f1"] == pytest.approx(f1_score(true, pred, labels=list(range(k + 1)), average="macro", zero_division=0))
    if method == "crosr":
        assert trained.meta["osrkit_config"]["model"] == "dhrnet"
    loaded = load_trained(tmp_path / "m.pt")
    again = evaluate(loaded, task_from_checkpoint(loaded.meta))
    assert again["auroc"] == pytest.approx(res["auroc"], abs=1e-9)
    assert again["f1"] == pytest.approx(res["f1"], abs=1e-9)


def test_run_openmax_crosr_on_class_splits(capsys):
    rc = main(["run", "--task", "digits", "--method", "openmax,crosr", "--splits", "0", "--epochs", "3",
               "--no-progress", "--param", "tailsize=10"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "openmax" in out and "crosr" in out


def test_lsun_needs_its_own_folder():
    with pytest.raises(ValueError, match="--outlier-root"):
        make_task("digits", split=None, outlier="lsun-crop", data_root=SHARED_DATA)


def test_crosr_joint_scale_option_saves_loads_and_overrides(tmp_path):
    task = make_task("digits", split=None, outlier="noise")
    cfg = default_config("crosr", "digits").replace(epochs=2, method_params={"tailsize": 10, "joint_scale": "block"})
    trained = fit_method("crosr", task, cfg, checkpoint=tmp_path / "m.pt", progress=False)
    assert trained.scorer.scaler.how == "block"
    res = evaluate(trained, task)
    loaded = load_trained(tmp_path / "m.pt")
    assert loaded.scorer.scaler.how == "block"
    assert evaluate(loaded, task_from_checkpoint(loaded.meta))["auroc"] == pytest.approx(res["auroc"], abs=1e-9)
    raw = with_scorer(trained, "crosr", task, params={"joint_scale": "none"})
    assert raw.scorer.scaler.how == "none" and raw.meta["f1_threshold"] != trained.meta["f1_threshold"]
