"""Import the CAC authors' checkpoints (dimitymiller/cac-openset) into osrkit's format.

Their network is classifier32 with the flattened head (our `vgg32-flatten`); their state dict
names convolutions `encoder.convN` and BatchNorms `encoder.bnN` (N = 1..9) and the head `classify`.
Evaluation follows their protocol: anchors re-centred on the correctly classified training images.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import torch

from osrkit.data.tasks import make_task, read_trainval
from osrkit.engine.checkpoint import load_model_weights, save_checkpoint
from osrkit.engine.config import TrainConfig
from osrkit.engine.calibration import calibration_entries
from osrkit.engine.pipeline import Trained, _meta, build_model, val_known_scores
from osrkit.engine.predict import predict
from osrkit.methods import get_method


def _feature_index(i: int) -> int:
    """Position of convolution i (0-based) in VGG32.features: conv, bn, act per layer, dropout per group."""
    return (i // 3) * 10 + (i % 3) * 3


def convert_state_dict(net: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The authors' `net` state dict → a `vgg32-flatten` state dict."""
    out = {}
    for i in range(9):
        p = _feature_index(i)
        key = f"encoder.conv{i + 1}.weight"
        if key not in net:
            raise ValueError(f"not a CAC classifier32 checkpoint: no {key!r} (keys start {list(net)[:4]})")
        out[f"features.{p}.weight"] = net[key]
        for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            out[f"features.{p + 1}.{name}"] = net[f"encoder.bn{i + 1}.{name}"]
    out["classifier.weight"] = net["classify.weight"]
    out["classifier.bias"] = net["classify.bias"]
    return out


def import_cac(checkpoint: str | Path, known: Sequence[int], normalize: tuple[float, float],
               trainval: str | Path, data_root=None, out: str | Path | None = None,
               method: str | None = None, device: str = "cpu") -> Trained:
    """Convert an authors' MNIST checkpoint, re-centre CAC anchors on their training partition, save."""
    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(raw, dict) or "net" not in raw:
        raise ValueError(f"{checkpoint} is not a CAC authors' checkpoint (expected a dict with 'net')")
    net = raw["net"]
    method = method or ("cac" if "means" in net else "softmax")
    train_idx = read_trainval(trainval)
    mean, std = normalize
    task = make_task("mnist", known=list(known), data_root=data_root, image_size=32,
                     normalization=([float(mean)], [float(std)]), train_indices=train_idx)
    num_classes = int(net["classify.weight"].shape[0])
    if num_classes != task.num_classes:
        raise ValueError(f"checkpoint has {num_classes} outputs but {task.num_classes} known classes were given")
    m = get_method(method)
    # the authors trained and evaluated in fp32: an imported network is evaluated the same way
    cfg = TrainConfig(model="vgg32-flatten", method_params=dict(m.params), epochs=0, precision="fp32",
                      memory_format="contiguous")
    model = build_model(cfg, num_classes, task.in_channels, task.image_size)
    load_model_weights(model, convert_state_dict(net), str(checkpoint))
    model.to(device).eval()
    scorer = m.make_scorer(num_classes, m.params)
    scorer.fit(predict(model, task.train_x, task.mean, task.std, labels=task.train_y, device=device))
    meta = _meta(method, task, cfg)
    meta["task"]["train_indices_source"] = str(trainval)
    meta.update(calibration_entries(val_known_scores(model, scorer, task, cfg, device)))
    meta["imported_from"] = {"checkpoint": str(checkpoint), "epoch": int(raw.get("epoch", -1)),
                             "acc": float(raw.get("acc", float("nan")))}
    loss = m.make_loss(num_classes, m.params)
    if out is not None:
        save_checkpoint(out, {**meta, "model": model.state_dict(), "loss": loss.state_dict(),
                              "scorer": scorer.state_dict()})
    return Trained(model, scorer, meta)


def add_import_cac_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-cac", help="convert a CAC authors' checkpoint into an osrkit checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--known", required=True, help="the checkpoint's known classes, e.g. 3,0,2,9,1,6")
    p.add_argument("--normalize", default="0.1321,0.3101", help="MEAN,STD of their Normalize (default MNIST's)")
    p.add_argument("--trainval", required=True, help="their MNIST_trainval_idxs.json")
    p.add_argument("--data-root")
    p.add_argument("--method", choices=["cac", "softmax", "mls"], help="default: cac if the file holds anchors")
    p.add_argument("--out", required=True, help="osrkit checkpoint to write")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    known = [int(c) for c in args.known.split(",")]
    mean, std = (float(v) for v in args.normalize.split(","))
    t = import_cac(args.checkpoint, known, (mean, std), args.trainval, args.data_root, args.out, args.method)
    print(f"wrote {args.out}: method {t.meta['method']}, known {t.meta['task']['known']}")
    return 0
