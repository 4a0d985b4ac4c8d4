"""Deployment: predict on new image files, calibrated thresholds, ONNX/TorchScript export, bad input."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from osrkit.cli import main
from osrkit.data.tasks import make_task
from osrkit.deploy.export import export_trained, run_exported
from osrkit.engine.pipeline import fit_method, load_trained, predict_with, with_scorer
from osrkit.engine.config import TrainConfig
from osrkit.methods import default_config

COLOURS = {"red": (200, 30, 30), "green": (30, 190, 40), "blue": (30, 40, 210), "yellow": (220, 210, 30)}


def _colour_image(rgb, h, w, rng) -> np.ndarray:
    """A flat colour with noise and a random dark square: the colour decides the class."""
    im = np.clip(np.array(rgb)[None, None] + rng.normal(0, 18, (h, w, 3)), 0, 255).astype(np.uint8)
    y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
    im[y:y + h // 3, x:x + w // 3] //= 3
    return im


@pytest.fixture(scope="module")
def colour_tree(tmp_path_factory) -> Path:
    """An ImageFolder tree of 4 colour classes, 30 PNGs each, in a few sizes."""
    from PIL import Image

    root = tmp_path_factory.mktemp("colours")
    rng = np.random.default_rng(0)
    for name, rgb in COLOURS.items():
        (root / name).mkdir()
        for i in range(30):
            h, w = (32, 32) if i % 3 else (40, 56)
            Image.fromarray(_colour_image(rgb, h, w, rng)).save(root / name / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def colour_checkpoint(colour_tree, tmp_path_factory) -> Path:
    ck = tmp_path_factory.mktemp("ck") / "colours.pt"
    assert main(["train", "--task", "folder", "--data-root", str(colour_tree), "--known", "red,green,blue",
                 "--model", "small", "--epochs", "4", "--lr", "0.01", "--optimizer", "adam", "--batch-size", "16",
                 "--no-progress", "--out", str(ck)]) == 0
    return ck


def _mixed_folder(root: Path) -> dict[str, str]:
    """Images of known colours in other sizes, modes and formats, one corrupt file. Returns name -> class."""
    from PIL import Image

    rng = np.random.default_rng(5)
    root.mkdir()
    (root / "sub").mkdir()
    truth = {}
    red = _colour_image(COLOURS["red"], 70, 50, rng)
    Image.fromarray(red).save(root / "red_big.png")
    truth["red_big.png"] = "red"
    green = Image.fromarray(_colour_image(COLOURS["green"], 24, 24, rng))
    green.save(root / "green_small.jpg", quality=95)
    truth["green_small.jpg"] = "green"
    blue = Image.fromarray(_colour_image(COLOURS["blue"], 32, 32, rng))
    blue.convert("RGBA").save(root / "sub" / "blue_rgba.png")
    truth["sub/blue_rgba.png"] = "blue"
    blue.convert("P", palette=Image.Palette.ADAPTIVE).save(root / "sub" / "blue_palette.png")
    truth["sub/blue_palette.png"] = "blue"
    Image.fromarray(_colour_image(COLOURS["red"], 33, 31, rng)).save(root / "red.bmp")
    truth["red.bmp"] = "red"
    Image.fromarray(_colour_image(COLOURS["green"], 32, 32, rng)).save(root / "green.tiff")
    truth["green.tiff"] = "green"
    Image.fromarray(_colour_image(COLOURS["blue"], 32, 32, rng)).save(root / "blue.webp", lossless=True)
    truth["blue.webp"] = "blue"
    Image.fromarray(_colour_image(COLOURS["red"], 32, 32, rng)).convert("L").save(root / "grey.png")
    truth["grey.png"] = None  # converted, class not asserted
    np.save(root / "batch.npy", np.stack([_colour_image(COLOURS["green"], 32, 32, rng),
                                          _colour_image(COLOURS["blue"], 32, 32, rng)]))
    truth["batch.npy[0]"], truth["batch.npy[1]"] = "green", "blue"
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return truth


def test_predict_on_a_mixed_folder_rows_warning_and_summary(colour_checkpoint, tmp_path, capsys):
    truth = _mixed_folder(tmp_path / "new")
    out = tmp_path / "pred.csv"
    assert main(["predict", str(colour_checkpoint), str(tmp_path / "new"), "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["input", "label", "nearest_class", "unknown_score", "threshold"]
    got = {str(Path(r["input"]).relative_to(tmp_path / "new")) if "[" not in r["input"]
           else Path(r["input"]).name: r for r in rows}
    assert set(got) == set(truth)  # every readable image, once; the corrupt file left out
    for name, cls in truth.items():
        r = got[name]
        assert r["nearest_class"] in ("red", "green", "blue")
        if cls is not None:
            assert r["nearest_class"] == cls, (name, r)
        assert r["label"] == (r["nearest_class"] if float(r["unknown_score"]) <= float(r["threshold"]) else "unknown")
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "broken.png" in warnings[0] and "not a readable image" in warnings[0]
    n_unknown = sum(r["label"] == "unknown" for r in rows)
    assert f"{len(truth)} images predicted ({len(truth) - n_unknown} known, {n_unknown} unknown); 1 inputs skipped" in err


def test_predict_json_and_threshold_override(colour_checkpoint, colour_tree, tmp_path):
    out = tmp_path / "p.json"
    assert main(["predict", str(colour_checkpoint), str(colour_tree / "yellow"), str(colour_tree / "red"),
                 "--out", str(out), "--threshold=-1e9", "--no-progress"]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 60 and all(r["label"] == "unknown" and r["threshold"] == -1e9 for r in rows)


def test_calibrate_and_tpr_set_the_operating_point_on_validation_knowns(tmp_path, capsys):
    ck = tmp_path / "m.pt"
    assert main(["train", "--task", "digits", "--split", "1", "--method", "softmax", "--epochs", "3",
                 "--no-progress", "--out", str(ck)]) == 0
    trained = load_trained(ck)
    op = trained.meta["operating_point"]
    # independent: the validation knowns' scores recomputed from the task, then numpy's quantile
    task = make_task("digits", split=1)
    cfg = TrainConfig.from_dict(trained.meta["osrkit_config"])
    out = predict_with(trained.model, task.val_x, task, cfg)
    val = (1 - torch.softmax(out.logits.double(), 1).max(1).values).numpy()
    assert op["tpr"] == 0.95 and op["num_val_known"] == len(val)
    assert op["threshold"] == pytest.approx(np.sort(val)[int(np.ceil(0.95 * len(val))) - 1], rel=1e-6)
    assert main(["calibrate", str(ck), "--tpr", "0.99"]) == 0
    op99 = load_trained(ck).meta["operating_point"]
    assert op99["tpr"] == 0.99 and op99["threshold"] == pytest.approx(np.sort(val)[int(np.ceil(0.99 * len(val))) - 1], rel=1e-6)
    assert (val <= op99["threshold"]).mean() >= 0.99 and (val <= op["threshold"]).mean() >= 0.95 and op99["threshold"] >= op["threshold"]
    # predict --tpr moves the operating point from the stored validation scores, without the data
    np.save(tmp_path / "x.npy", task.test_x[:5, 0].numpy())
    assert main(["predict", str(ck), str(tmp_path / "x.npy"), "--tpr", "0.95", "--out", str(tmp_path / "p.json")]) == 0
    assert json.loads((tmp_path / "p.json").read_text())[0]["threshold"] == pytest.approx(op["threshold"], rel=1e-9)
    assert main(["calibrate", str(ck), "--tpr", "1.5"]) == 2
    assert "--tpr must be in (0, 1]" in capsys.readouterr().err


@pytest.fixture(scope="module")
def digits_networks(tmp_path_factory):
    """Every method on digits split 0; methods sharing a training loss share its network."""
    task = make_task("digits", split=0)
    nets = {}
    for method, epochs in (("softmax", 5), ("cac", 5), ("ovr", 5), ("movr", 5), ("crosr", 3)):
        nets[method] = fit_method(method, task, default_config(method, "digits").replace(epochs=epochs), progress=False)
    for method, base in (("mls", "softmax"), ("energy", "softmax"), ("openmax", "softmax"),
                         ("dhrnet-softmax", "crosr"), ("dhrnet-openmax", "crosr")):
        nets[method] = with_scorer(nets[base], method, task)
    return task, nets


ALL_METHODS = ["softmax", "mls", "energy", "openmax", "cac", "crosr", "dhrnet-softmax", "dhrnet-openmax", "ovr", "movr"]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("method", ALL_METHODS)
def test_exported_graph_equals_pytorch(method, fmt, digits_networks, tmp_path):
    task, nets = digits_networks
    trained = nets[method]
    path = tmp_path / f"{method}.{fmt}"
    info = export_trained(trained, fmt, path)
    assert info["labels_equal"] and info["max_abs_diff"] < 1e-4
    images = torch.cat([task.test_x[:40], task.unknown_x[:40]])
    # the reference: osrkit's own float64 scorer on the PyTorch outputs, and the stored threshold; in fp32, as the
    # exported graph runs whatever precision the network trained in (bf16 where the CPU has it natively)
    cfg = TrainConfig.from_dict(trained.meta["osrkit_config"]).replace(precision="fp32", memory_format="contiguous")
    out = predict_with(trained.model, images, task, cfg)
    scores, pred = trained.scorer.score(out)
    thr = trained.meta["operating_point"]["threshold"]
    logits, unknown_score, label = run_exported(path, images, fmt)
    np.testing.assert_allclose(logits, out.logits.numpy(), atol=1e-4)
    np.testing.assert_allclose(unknown_score, scores.numpy(), atol=1e-4, rtol=1e-5)
    assert np.array_equal(label, np.where(scores.numpy() > thr, -1, pred.numpy()))
    assert (label == -1).any() and (label >= 0).any()  # both outcomes occur, so the label rule is exercised


def test_export_cli_writes_and_checks(digits_networks, tmp_path, capsys):
    ck = tmp_path / "cac.pt"
    assert main(["train", "--task", "digits", "--method", "cac", "--epochs", "4", "--no-progress", "--out", str(ck)]) == 0
    assert main(["export", str(ck), "--format", "onnx", "--out", str(tmp_path / "cac.onnx")]) == 0
    err = capsys.readouterr().err
    assert "wrote" in err and "max |difference| to PyTorch" in err and (tmp_path / "cac.onnx").stat().st_size > 1000


def _one_error_line(err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_bad_input_one_line_exit_2_nothing_written(colour_checkpoint, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "o.csv"
    not_ck = tmp_path / "notes.pt"
    not_ck.write_text("not a checkpoint")
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    assert main(["predict", str(not_ck), str(img), "--out", str(out)]) == 2
    _one_error_line(capsys.readouterr().err, str(not_ck), "not a readable checkpoint")
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(colour_checkpoint), str(tmp_path / "empty"), "--out", str(out)]) == 2
    _one_error_line(capsys.readouterr().err, str(tmp_path / "empty"), "holds no images")
    two_channels = tmp_path / "two.npy"
    np.save(two_channels, np.zeros((3, 16, 16, 2), np.uint8))
    assert main(["predict", str(colour_checkpoint), str(two_channels), "--out", str(out)]) == 2
    _one_error_line(capsys.readouterr().err, str(two_channels), "cannot map")
    floats = tmp_path / "float.tiff"
    Image.fromarray(np.zeros((8, 8), np.float32), mode="F").save(floats)
    assert main(["predict", str(colour_checkpoint), str(floats), "--out", str(out)]) == 2
    _one_error_line(capsys.readouterr().err, str(floats), "cannot map PIL mode 'F'")
    assert not out.exists()


def test_export_of_a_method_without_graph_form(tmp_path, capsys):
    from osrkit.methods import METHODS, Method, get_method
    from osrkit.scores.softmax import MSPScore

    class Opaque(MSPScore):
        name = "opaque"

        def graph(self):
            return super(MSPScore, self).graph()  # the base class: no graph form

    base = get_method("softmax")
    METHODS["opaque-test"] = Method("opaque-test", "test only", base.make_loss, lambda k, p: Opaque(), dict(base.params))
    try:
        ck = tmp_path / "o.pt"
        assert main(["train", "--task", "digits", "--method", "opaque-test", "--epochs", "1", "--no-progress",
                     "--out", str(ck)]) == 0
        capsys.readouterr()
        assert main(["export", str(ck), "--format", "torchscript", "--out", str(tmp_path / "o.ts")]) == 2
        _one_error_line(capsys.readouterr().err, str(ck), "'opaque-test' cannot be exported as torchscript")
        assert not (tmp_path / "o.ts").exists()
    finally:
        del METHODS["opaque-test"]
