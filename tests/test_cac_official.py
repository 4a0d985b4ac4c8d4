"""The CAC authors' trial-0 MNIST checkpoint, imported and evaluated by osrkit, reproduces their numbers."""

import json
from pathlib import Path

import pytest
import torch

from osrkit.cli import main
from osrkit.importers.cac import convert_state_dict
from conftest import SHARED

SHARED = SHARED
OFFICIAL = SHARED / "models" / "cac-official"
# the authors' own evaluation of trial 0 (models/cac-official/README.md)
AUTHORS_ACCURACY, AUTHORS_AUROC = 0.99788, 0.98625


def test_converted_weights_give_the_authors_forward_pass():
    """Our vgg32-flatten with converted weights equals a direct functional forward of their state dict."""
    import torch.nn.functional as F

    from osrkit.models import create_model

    net = torch.load(OFFICIAL / "MNIST_0_CACclassifierAnchorLoss.pth", map_location="cpu", weights_only=True)["net"]
    model = create_model("vgg32-flatten", num_classes=6, in_channels=1, image_size=32).eval()
    model.load_state_dict(convert_state_dict(net))
    x = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    h = x
    for i in range(1, 10):
        h = F.conv2d(h, net[f"encoder.conv{i}.weight"], stride=2 if i % 3 == 0 else 1, padding=1)
        h = F.batch_norm(h, net[f"encoder.bn{i}.running_mean"], net[f"encoder.bn{i}.running_var"],
                         net[f"encoder.bn{i}.weight"], net[f"encoder.bn{i}.bias"], eps=1e-5)
        h = F.leaky_relu(h, 0.2)
    expected = F.linear(h.flatten(1), net["classify.weight"], net["classify.bias"])
    assert torch.allclose(model(x).logits, expected, atol=1e-4)


def test_imported_official_checkpoint_reproduces_authors_evaluation(tmp_path, capsys):
    out = tmp_path / "cac0.pt"
    rc = main(["import-cac", str(OFFICIAL / "MNIST_0_CACclassifierAnchorLoss.pth"), "--known", "3,0,2,9,1,6",
               "--normalize", "0.1321,0.3101", "--trainval", str(OFFICIAL / "MNIST_trainval_idxs.json"),
               "--data-root", str(SHARED / "data"), "--out", str(out)])
    assert rc == 0
    from osrkit.engine.checkpoint import load_checkpoint

    state = load_checkpoint(out)
    assert state["method"] == "cac" and state["normalization"] == {"mean": [0.1321], "std": [0.3101]}
    assert state["scorer"]["anchors"].shape == (6, 6)
    rc = main(["eval", str(out), "--data-root", str(SHARED / "data"), "--json", str(tmp_path / "e.json")])
    assert rc == 0
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["num_known_test"] == 6124 and res["num_unknown_test"] == 3876
    assert res["accuracy"] == pytest.approx(AUTHORS_ACCURACY, abs=1e-3)
    assert res["auroc"] == pytest.approx(AUTHORS_AUROC, abs=1e-3)
