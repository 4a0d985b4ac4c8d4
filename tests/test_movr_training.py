"""m-OvR trained on real data (scikit-learn's digits): its default recipe detects unknowns at least as well as
softmax trained with the same backbone, epochs and augmentation."""

from __future__ import annotations

import numpy as np

from osrkit.data.tasks import make_task
from osrkit.engine.pipeline import evaluate, fit_method
from osrkit.methods import default_config


def test_movr_default_recipe_at_least_softmax_on_digits() -> None:
    movr, softmax = [], []
    for split in (0, 2):
        task = make_task("digits", split)
        cfg_m = default_config("movr", "digits")
        cfg_s = default_config("softmax", "digits")
        # the same schedule for both: only the head, the loss and the score differ
        same = ("model", "epochs", "batch_size", "optimizer", "lr", "schedule", "augment", "weight_decay")
        assert all(getattr(cfg_m, f) == getattr(cfg_s, f) for f in same)
        movr.append(evaluate(fit_method("movr", task, cfg_m, progress=False), task)["auroc"])
        softmax.append(evaluate(fit_method("softmax", task, cfg_s, progress=False), task)["auroc"])
    assert np.mean(movr) >= np.mean(softmax), (movr, softmax)
    assert min(movr) > 0.95
