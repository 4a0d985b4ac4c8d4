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

    # the separation of the same 12 known samples' embeddings, recomputed here by explicit loops
    idx = torch.randperm(len(task.test_x), generator=torch.Generator().manual_seed(0))[:12]
    with torch.no_grad():
        f = trained.model(normalize(task.test_x[idx], task.mean, task.std)).embedding.double().numpy()
    labels = task.test_y[idx].numpy()
    cls = sorted(set(labels.tolist()))
    centre = {c: f[labels == c].mean(0) for c in cls}
    within = np.mean([np.mean([np.linalg.norm(v - centre[c]) for v in f[labels == c]]) for c in cls])
    between = np.mean([np.linalg.norm(centre[a] - centre[b]) for i, a in enumerate(cls) for b in cls[i + 1:]])
    assert abs(summary["between_within"] - between / within) < 1e-6 * between / within
    assert -1 <= summary["silhouette"] <= 1


def test_jacobian_dynamics_records_every_epoch_and_resumes(tmp_path):
    out = tmp_path / "dyn"
    args = ["jacobian-dynamics", "--task", "digits", "--split", "0", "--epochs", "3", "--n", "10",
            "--out-dir", str(out), "--no-progress"]
    assert main(args) == 0
    saved = json.loads((out / "dynamics.json").read_text())
    epochs = saved["epochs"]
    assert [r["epoch"] for r in epochs] == [0, 1, 2, 3]  # initialisation, then after each epoch
    assert epochs[0]["val_accuracy"] is None and epochs[-1]["val_accuracy"] > 0.5
    assert (out / "dynamics.png").stat().st_size > 1000
    assert (out / "dynamics.csv").read_text().splitlines()[0].startswith("epoch,")

    # the last record is the final network's norms: recompute one of them with autograd
    trained = load_trained(out / "model.pt")
    task = task_from_checkpoint(trained.meta)
    g = torch.Generator().manual_seed(0)
    known_x = task.test_x[torch.randperm(len(task.test_x), generator=g)[:10]]
    trained.model.eval()
    full = [float(torch.autograd.functional.jacobian(lambda t: trained.model(t).embedding,
                                                     normalize(known_x[i:i + 1], task.mean, task.std)).norm())
            for i in range(10)]
    assert abs(epochs[-1]["known_mean"] - float(np.mean(full))) < 1e-4 * max(1.0, float(np.mean(full)))

    # a finished run resumes to the same records
    assert main(args + ["--resume"]) == 0
    again = json.loads((out / "dynamics.json").read_text())["epochs"]
    assert again == epochs


def test_jacobian_dynamics_interrupted_while_measuring_resumes_without_gaps(tmp_path, monkeypatch):
    import osrkit.analysis.study as study
    from osrkit.data.tasks import make_task
    from osrkit.methods import default_config

    task = make_task("digits", 0)
    cfg = default_config("softmax", "digits").replace(epochs=3)
    full = study.jacobian_dynamics("softmax", task, cfg, tmp_path / "full", n=8, progress=False)

    real, calls = study.summarize_norms, []

    def flaky(known, unknown):
        calls.append(1)
        if len(calls) == 3:  # the measurement after epoch 2 (checkpoint already written) is interrupted
            raise KeyboardInterrupt
        return real(known, unknown)

    monkeypatch.setattr(study, "summarize_norms", flaky)
    try:
        study.jacobian_dynamics("softmax", task, cfg, tmp_path / "part", n=8, progress=False)
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(study, "summarize_norms", real)
    assert [r["epoch"] for r in json.loads((tmp_path / "part" / "dynamics.json").read_text())["epochs"]] == [0, 1]
    resumed = study.jacobian_dynamics("softmax", task, cfg, tmp_path / "part", n=8, resume=True, progress=False)
    assert [r["epoch"] for r in resumed] == [0, 1, 2, 3]
    for a, b in zip(full, resumed):
        assert abs(a["known_mean"] - b["known_mean"]) < 1e-5 * max(1.0, a["known_mean"]), a["epoch"]
        assert abs(a["unknown_mean"] - b["unknown_mean"]) < 1e-5 * max(1.0, a["unknown_mean"]), a["epoch"]
