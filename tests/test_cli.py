"""The command line: run/train/eval on digits, datasets listing, and clear errors on bad input."""

import json
from pathlib import Path

import pytest
import torch

from osrkit.cli import main
from conftest import SHARED

SHARED_DATA = SHARED / "data"


def test_run_prints_table_and_writes_files(tmp_path, capsys):
    rc = main(["run", "--task", "digits", "--method", "softmax,cac", "--splits", "0,1", "--epochs", "2",
               "--no-progress", "--json", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "AUROC" in out and "softmax" in out and "cac" in out
    data = json.loads((tmp_path / "r.json").read_text())
    assert len(data["rows"]) == 4 and {r["method"] for r in data["rows"]} == {"softmax", "cac"}
    for s in data["summary"]:
        assert 0.5 < s["auroc"]["mean"] <= 1.0 and s["n"] == 2
    assert data["command"].startswith("osrkit run --task digits --method softmax,cac") and data["date"][:4].isdigit() and data["machine"]["cpu_count"] >= 1
    assert data["configs"]["cac"]["epochs"] == 2
    md = (tmp_path / "r.md").read_text()
    assert md.startswith("# digits, neal splits 0,1") and "| method |" in md and "±" in md
    assert "training / split (s)" in md and all(r["train_seconds"] > 0 for r in data["rows"])
    assert "Command: `osrkit " in md and "cac: " in md and "2 epochs" in md


def test_train_then_eval_json(tmp_path, capsys):
    ck = tmp_path / "m.pt"
    assert main(["train", "--task", "digits", "--split", "3", "--method", "mls", "--epochs", "2",
                 "--no-progress", "--out", str(ck)]) == 0
    assert main(["eval", str(ck), "--json", str(tmp_path / "e.json")]) == 0
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["method"] == "mls" and res["task"]["index"] == 3
    # the reported numbers, recomputed independently from the checkpoint: scikit-learn on -max logit
    from sklearn.metrics import average_precision_score, roc_auc_score

    from osrkit.data.tasks import make_task
    from osrkit.engine.pipeline import load_trained, predict_with
    from osrkit.engine.config import TrainConfig

    trained = load_trained(ck)
    task = make_task("digits", split=3)
    cfg = TrainConfig.from_dict(trained.meta["osrkit_config"])
    k = predict_with(trained.model, task.test_x, task, cfg).logits.double()
    u = predict_with(trained.model, task.unknown_x, task, cfg).logits.double()
    y = [0] * len(k) + [1] * len(u)
    s = torch.cat([-k.max(1).values, -u.max(1).values]).numpy()
    assert res["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-9)
    assert res["aupr_out"] == pytest.approx(average_precision_score(y, s), abs=1e-9)
    assert res["accuracy"] == pytest.approx(float((k.argmax(1) == task.test_y).double().mean()), abs=1e-12)
    thr = trained.meta["operating_point"]["threshold"]
    assert res["unknown_rejected"] == pytest.approx(float((-u.max(1).values > thr).double().mean()), abs=1e-12)


def test_datasets_lists_presence(capsys):
    assert main(["datasets", "--data-root", str(SHARED_DATA)]) == 0
    out = capsys.readouterr().out
    assert "mnist" in out and "tinyimagenet" in out and "cifar+10" in out


@pytest.mark.parametrize("argv, message", [
    (["run", "--task", "imagenet21k", "--splits", "0"], "unknown data set 'imagenet21k'"),
    (["run", "--task", "digits", "--splits", "7"], "out of range"),
    (["run", "--task", "digits", "--known", "0,1,zebra"], "unknown known class name 'zebra'"),
    (["run", "--task", "cifar10", "--splits", "0", "--data-root", "/nonexistent/osrkit"], "cifar-10-batches-py/data_batch_1"),
    (["run", "--task", "digits", "--method", "nosuch"], "unknown method 'nosuch'"),
    (["run", "--task", "digits", "--param", "alpha=3", "--method", "softmax"], "has no parameters ['alpha']"),
])
def test_bad_input_gives_clear_error(argv, message, capsys):
    assert main([*argv, "--epochs", "1", "--no-progress"]) == 2
    assert message in capsys.readouterr().err.replace("\n", "")


def test_eval_of_foreign_checkpoint(tmp_path, capsys):
    import torch

    torch.save({"net": {}}, tmp_path / "x.pt")
    assert main(["eval", str(tmp_path / "x.pt")]) == 2
    assert "import-cac" in capsys.readouterr().err


def test_run_with_other_scorer_parameters_reuses_the_trained_network(tmp_path):
    from osrkit.engine.checkpoint import load_checkpoint
    from osrkit.engine.pipeline import load_trained

    base = ["run", "--task", "digits", "--method", "openmax", "--splits", "0", "--epochs", "3", "--no-progress",
            "--out-dir", str(tmp_path)]
    assert main([*base, "--json", str(tmp_path / "a.json")]) == 0
    (ckpt,) = tmp_path.glob("*.pt")
    weights = load_checkpoint(ckpt)["model"]
    assert main([*base, "--param", "tailsize=5", "--json", str(tmp_path / "b.json")]) == 0
    assert list(tmp_path.glob("*.pt")) == [ckpt]  # same checkpoint: not retrained
    after = load_checkpoint(ckpt)
    assert all(torch.equal(weights[k], after["model"][k]) for k in weights)
    assert load_trained(ckpt).scorer.tailsize == 5 and after["osrkit_config"]["method_params"]["tailsize"] == 5
    a, b = (json.loads((tmp_path / f).read_text())["rows"][0] for f in ("a.json", "b.json"))
    assert a["train_seconds"] == b["train_seconds"]  # (accuracy may move: OpenMax recalibrates the prediction too)
    assert a["auroc"] != b["auroc"]  # the scorer was refit with the new tail size


def test_param_values_take_the_parameters_types(tmp_path, capsys):
    from osrkit.methods import get_method

    movr = get_method("movr")
    assert movr.coerce_params({"margin": "5e-1", "temperature": 16}) == {"margin": 0.5, "temperature": 16.0}
    assert get_method("openmax").coerce_params({"tailsize": "20", "alpha": 5.0}) == {"tailsize": 20, "alpha": 5}
    for bad, match in (({"margin": "zero"}, "margin='zero'.*finite number"), ({"margin": float("nan")}, "margin"),
                       ({"score": 3}, "score=3.*str"), ({"tailsize": 2.5}, "tailsize=2.5.*int"),
                       ({"nope": 1}, "no parameters")):
        with pytest.raises(ValueError, match=match):
            movr.coerce_params(bad) if "tailsize" not in bad else get_method("openmax").coerce_params(bad)
    # the command line converts before anything trains; a bad value is one message naming the parameter
    code = main(["train", "--task", "digits", "--method", "movr", "--epochs", "1", "--param", "margin=zero",
                 "--out", str(tmp_path / "x.pt"), "--no-progress"])
    assert code == 2 and "margin='zero'" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()
