"""`osrkit report`: one self-contained HTML file, checked as HTML and rendered in headless Chromium."""

import base64
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from osrkit.analysis.report import open_set_confusion
from osrkit.cli import main

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "headless Chromium is needed (Debian package chromium; .ci/run installs it)"
    return path


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    ck = tmp_path_factory.mktemp("rep") / "m.pt"
    assert main(["train", "--task", "digits", "--split", "2", "--method", "softmax", "--epochs", "3",
                 "--no-progress", "--out", str(ck)]) == 0
    return ck


def test_checkpoint_report_is_self_contained_and_complete(checkpoint, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", str(checkpoint), "--out", str(out)]) == 0
    page = out.read_text()
    for part in ("ROC: unknown test vs known test", "OSCR: correct-classification rate", "Unknown-score histograms", "Confusion matrix", "Per class, at the operating point",
                 "AUROC", "Configuration", "neal split 2", "unknown (test)"):
        assert part in page, part
    images = _images(page)
    assert len(images) == 4 and all(im.startswith(b"\x89PNG\r\n\x1a\n") and len(im) > 5000 for im in images)
    # offline: nothing fetched from elsewhere
    assert not re.search(r'(src|href)="(?!data:)', page) and "<script" not in page


def test_report_renders_in_headless_chromium(checkpoint, tmp_path):
    from PIL import Image

    out = tmp_path / "report.html"
    assert main(["report", str(checkpoint), "--out", str(out)]) == 0
    shot = tmp_path / "shot.png"
    base = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    subprocess.run([*base, "--window-size=1200,1800", f"--screenshot={shot}", out.as_uri()], check=True,
                   capture_output=True, timeout=120)
    dom = subprocess.run([*base, "--dump-dom", out.as_uri()], check=True, capture_output=True, text=True,
                         timeout=120).stdout
    assert dom.count("<img") == 4 and "Per class, at the operating point" in dom
    im = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert im.shape[:2] == (1800, 1200)
    # the figures were drawn: coloured pixels (curves, bars, heat map), bluish and reddish, not just text on white
    saturated = (im.max(-1) - im.min(-1)) > 60
    bluish = saturated & (im[..., 2] > im[..., 0])
    reddish = saturated & (im[..., 0] > im[..., 2])
    assert bluish.sum() > 2000 and reddish.sum() > 500, (bluish.sum(), reddish.sum())


def test_db_report_compares_methods_with_roc_curves(tmp_path):
    db = tmp_path / "r.db"
    assert main(["bench", "--methods", "softmax,cac", "--tasks", "digits", "--splits", "0,1", "--epochs", "3",
                 "--db", str(db), "--no-progress"]) == 0
    out = tmp_path / "cmp.html"
    assert main(["report", "--db", str(db), "--out", str(out)]) == 0
    page = out.read_text()
    assert "softmax (digits), 2 runs" not in page  # labels are inside the figure, not the text
    assert "<table>" in page and "softmax" in page and "cac" in page and "±" in page
    assert len(_images(page)) == 1 and "ROC curves (mean over runs)" in page


def test_open_set_confusion_by_hand():
    # 2 known classes; knowns: (label, pred, rejected); unknowns: (pred, rejected)
    cm = open_set_confusion(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), np.array([False, False, True, False]),
                            np.array([0, 1, 1]), np.array([True, False, True]), 2)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 1], [0, 1, 2]]


def test_report_bad_input(tmp_path, capsys):
    assert main(["report", "--out", str(tmp_path / "x.html")]) == 2
    assert "give a CHECKPOINT, or --db" in capsys.readouterr().err
    assert main(["report", "--db", str(tmp_path / "none.db"), "--out", str(tmp_path / "x.html")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()
