"""`osrkit jacobian`: norms file, summary and plot for a checkpoint, checked against autograd."""

import json

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from osrkit.cli import main
from osrkit.data.transforms import normalize
from osrkit.engine.pipeline import load_trained, task_from_checkpoint


def test_jacobian_command_writes_norms_summary_and_plot(tmp_path, capsys):
    ck = tmp_path / "m.pt"
    assert main(["train", "--task", "digits", "--split", "1", "--epochs", "2", "--no-progress", "--out", str(ck)]) == 0
    out = tmp_path / "jac"
    assert main(["jacobian", str(ck), "--n", "12", "--out-dir", str(out), "--no-progress"]) == 0
    data = np.load(out / "jacobian_norms.npz")
    known, unknown = data["known"], data["unknown"]
    assert known.shape == (12,) and unknown.shape == (12,)
    summary = json.loads((out / "jacobian_summary.json").read_text())
    assert abs(summary["difference"] - float(unknown.mean() - known.mean())) < 1e-5
    y = np.r_[np.zeros(12), np.ones(12)]
    assert abs(summary["auroc_of_norm"] - roc_auc_score(y, np.r_[known, unknown])) < 1e-12
    assert (out / "jacobian_norms.png").stat().st_size > 1000

    # the first known norm equals the Frobenius norm of autograd's full Jacobian of the embedding
    trained = load_trained(ck)
    task = task_from_checkpoint(trained.meta)
    g = torch.Generator().manual_seed(0)
    first = task.test_x[torch.randperm(len(task.test_x), generator=g)[:12]][:1]
    x = normalize(first, task.mean, task.std)
    trained.model.eval()
    jac = torch.autograd.functional.jacobian(lambda t: trained.model(t).embedding, x)
    assert abs(float(jac.norm()) - float(known[0])) < 1e-4 * max(1.0, float(known[0]))
