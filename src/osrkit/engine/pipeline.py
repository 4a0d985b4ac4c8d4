"""Method-level workflow: build → train → fit scorer → evaluate; and load a checkpoint back."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from osrkit import metrics as M
from osrkit.data.tasks import OpenSetTask, make_task
from osrkit.engine import distributed
from osrkit.engine.calibration import DEFAULT_TPR, F1_REJECT_FRACTION, calibration_entries, check_tpr
from osrkit.engine.checkpoint import load_checkpoint, load_model_weights, save_checkpoint
from osrkit.engine.config import TrainConfig
from osrkit.engine.predict import predict
from osrkit.engine.train import train
from osrkit.methods import get_method
from osrkit.models import create_model
from osrkit.outputs import Outputs
from osrkit.scores.base import Scorer

@dataclass
class Trained:
    """A trained model with its fitted scorer and everything needed to rebuild it."""

    model: torch.nn.Module
    scorer: Scorer
    meta: dict[str, Any]
    history: list[dict] | None = None


def build_model(cfg: TrainConfig, num_classes: int, in_channels: int, image_size: int) -> torch.nn.Module:
    return create_model(cfg.model, num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                        **cfg.model_kwargs)


def _meta(method: str, task: OpenSetTask, cfg: TrainConfig) -> dict[str, Any]:
    return {"method": method, "task": task.spec, "class_names": task.class_names,
            "normalization": {"mean": list(task.mean), "std": list(task.std)},
            "num_classes": task.num_classes, "in_channels": task.in_channels, "image_size": task.image_size,
            "osrkit_config": cfg.to_dict()}


def predict_with(model: torch.nn.Module, images: torch.Tensor, task: OpenSetTask, cfg: TrainConfig,
                 labels: torch.Tensor | None = None, device: str = "cpu", batch_size: int | None = None) -> Outputs:
    """`predict` at the precision and memory format the run was trained with (its resolved config)."""
    cfg = cfg.resolved(device)
    return predict(model, images, task.mean, task.std, labels=labels, device=device,
                   batch_size=batch_size or cfg.eval_batch_size, precision=cfg.precision,
                   memory_format=cfg.memory_format)


def fit_scorer(scorer: Scorer, model: torch.nn.Module, task: OpenSetTask, cfg: TrainConfig,
               device: str = "cpu") -> Scorer:
    """Fit `scorer` on the model's outputs for the training images (skipped where the scorer ignores them)."""
    if not scorer.uses_training_outputs:
        return scorer.fit(Outputs(logits=torch.empty(0, task.num_classes), labels=torch.empty(0, dtype=torch.long)))
    return scorer.fit(predict_with(model, task.train_x, task, cfg, labels=task.train_y, device=device))


def fit_method(method: str, task: OpenSetTask, cfg: TrainConfig, checkpoint: str | Path | None = None,
               resume: bool = False, device: str = "cpu", progress: bool = True, on_epoch=None,
               on_model_epoch=None, tpr: float = DEFAULT_TPR, f1_reject: float = F1_REJECT_FRACTION,
               sync_bn: bool = False) -> Trained:
    """Train `method` on `task`, fit its scorer on the training outputs, save the final checkpoint.

    on_epoch(epoch, record) runs after each epoch's checkpoint; on_model_epoch(epoch, record, model)
    also gets the network (epoch -1, record None: before the first epoch of a fresh run).
    The checkpoint stores the operating point keeping `tpr` of the validation knowns and the F1 threshold
    rejecting `f1_reject` of them (see `osrkit.engine.calibration`). Under torchrun every rank trains (DDP);
    rank 0 alone fits the scorer and writes the checkpoint, the other ranks get a Trained without a scorer.
    """
    check_tpr(tpr)  # before training: a bad operating point must not cost a run
    if not 0.0 <= f1_reject < 1.0:
        raise ValueError(f"--f1-reject must be in [0, 1) (the share of validation knowns rejected), got {f1_reject}")
    m = get_method(method)
    params = m.resolved_params(cfg.method_params)
    cfg = cfg.resolved(device)  # "auto" precision/memory format → what this device runs; recorded in meta
    if m.model is not None and cfg.model != m.model:
        raise ValueError(f"method {method} needs the {m.model} backbone, not {cfg.model}")
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, task.num_classes, task.in_channels, task.image_size)
    loss_fn = m.make_loss(task.num_classes, params)
    if hasattr(loss_fn, "bind"):  # losses with their own heads on the model's outputs (rotation)
        loss_fn.bind(model, task.in_channels, task.image_size)
    meta = _meta(method, task, cfg)
    rank, world = distributed.active()
    if world > 1:
        meta["distributed"] = {"world_size": world, "sync_bn": sync_bn, "backend": "nccl" if device.startswith("cuda") else "gloo"}
    t0 = time.perf_counter()
    hook = on_epoch
    if on_model_epoch is not None:
        if not (resume and checkpoint is not None and Path(checkpoint).exists()):
            on_model_epoch(-1, None, model)

        def hook(epoch: int, rec: dict) -> None:
            if on_epoch is not None:
                on_epoch(epoch, rec)
            on_model_epoch(epoch, rec, model)
    result = train(model, loss_fn, task, cfg, checkpoint=checkpoint, resume=resume, device=device,
                   loss_step=m.loss_step, meta=meta, progress=progress, on_epoch=hook, sync_bn=sync_bn)
    if rank != 0:
        return Trained(model, None, meta, result["history"])
    scorer = m.make_scorer(task.num_classes, params)
    fit_scorer(scorer, model, task, cfg, device)
    meta.update(calibration_entries(val_known_scores(model, scorer, task, cfg, device), tpr, f1_reject))
    meta["diverged"] = result.get("diverged")  # None, or why the run looks diverged (a warning was shown)
    meta["train_seconds"] = sum(h["train_seconds"] for h in result["history"])
    meta["fit_seconds"] = time.perf_counter() - t0
    state = load_checkpoint(checkpoint) if checkpoint is not None and Path(checkpoint).exists() else {}
    if checkpoint is not None and state.get("method", method) == method:  # a shared network's file stays its trainer's
        save_checkpoint(checkpoint, {**state, **meta, "model": model.state_dict(), "loss": loss_fn.state_dict(),
                                     "scorer": scorer.state_dict()})
    return Trained(model, scorer, meta, result["history"])


def val_known_scores(model, scorer: Scorer, task: OpenSetTask, cfg: TrainConfig,
                     device: str = "cpu") -> torch.Tensor | None:
    """Unknown scores of the validation knowns (None without a validation set): what thresholds are set on."""
    if len(task.val_y) == 0:
        return None
    out = predict_with(model, task.val_x, task, cfg, labels=task.val_y, device=device)
    return scorer.score(out).unknown_scores.double()


def compute_metrics(known: Outputs, unknown: Outputs, scorer: Scorer, threshold: float | None,
                    f1_reject: float = F1_REJECT_FRACTION, curves: bool = False,
                    operating_threshold: float | None = None) -> dict[str, Any]:
    """Every metric from known-test and unknown-test outputs; `threshold` (rejecting `f1_reject` of the
    validation knowns) decides the open-set F1. With `curves`, also "roc": at most 200 (fpr, tpr) points.
    With `operating_threshold` (the checkpoint's deployed threshold): the shares of known test samples kept
    (and kept and correct) and of unknown test samples rejected there, as `osrkit predict` would label them."""
    ks, kp = scorer.score(known)
    us, up = scorer.score(unknown)
    correct = (kp == known.labels).numpy()
    res = {
        "auroc": M.auroc(ks, us), "oscr": M.oscr(ks, correct, us), "oscr_arpl": M.oscr_arpl(ks, correct, us),
        "accuracy": M.accuracy(kp, known.labels), "fpr95": M.fpr_at_tpr(ks, us, 0.95),
        "aupr_in": M.aupr_in(ks, us), "aupr_out": M.aupr_out(ks, us),
        "num_known_test": len(known), "num_unknown_test": len(unknown),
    }
    if curves:
        res["roc"] = M.roc_points(ks, us)
    if operating_threshold is not None:
        t = float(operating_threshold)
        res.update({"operating_threshold": t, "known_kept": float((ks <= t).double().mean()),
                    "known_kept_correct": float(((ks <= t) & (kp == known.labels)).double().mean()),
                    "unknown_rejected": float((us > t).double().mean())})
    if threshold is not None:
        k = known.logits.shape[1]
        labels = torch.cat([known.labels, torch.full((len(unknown),), -1)])
        res["f1"] = M.open_set_f1(torch.cat([kp, up]), labels, torch.cat([ks, us]), threshold, num_classes=k)
        res["f1_threshold"] = threshold
        res["f1_rule"] = f"reject {100 * f1_reject:g}% of validation knowns"
    return res


def evaluate(trained: Trained, task: OpenSetTask, device: str = "cpu", batch_size: int = 512,
             curves: bool = False) -> dict[str, Any]:
    """Score known-test and unknown-test sets and compute every metric."""
    cfg = TrainConfig.from_dict(trained.meta["osrkit_config"])
    known = predict_with(trained.model, task.test_x, task, cfg, labels=task.test_y, device=device, batch_size=batch_size)
    unknown = predict_with(trained.model, task.unknown_x, task, cfg, device=device, batch_size=batch_size)
    return compute_metrics(known, unknown, trained.scorer, trained.meta.get("f1_threshold"),
                           trained.meta.get("f1_reject", F1_REJECT_FRACTION), curves=curves,
                           operating_threshold=(trained.meta.get("operating_point") or {}).get("threshold"))


def evaluate_readings(trained: Trained, task: OpenSetTask, readings: dict[str, tuple[str, dict[str, Any]]],
                      device: str = "cpu") -> dict[str, dict[str, Any]]:
    """Metrics of one trained network under several scorers, {label: (method, scorer params)}, e.g. every
    m-OvR score reading, or MSP/MLS/energy on one cross-entropy network. Outputs are computed once."""
    cfg = TrainConfig.from_dict(trained.meta["osrkit_config"])
    known = predict_with(trained.model, task.test_x, task, cfg, labels=task.test_y, device=device)
    unknown = predict_with(trained.model, task.unknown_x, task, cfg, device=device)
    out = {}
    for label, (method, params) in readings.items():
        m = get_method(method)
        given = {k: v for k, v in cfg.method_params.items() if k in m.params} | dict(params)
        scorer = fit_scorer(m.make_scorer(task.num_classes, m.resolved_params(given)), trained.model, task, cfg, device)
        out[label] = compute_metrics(known, unknown, scorer, None)
    return out


def load_trained(path: str | Path) -> Trained:
    """Rebuild model and fitted scorer from an osrkit checkpoint (no training data needed)."""
    state = load_checkpoint(path)
    if "scorer" not in state:
        raise ValueError(f"{path} is an unfinished training checkpoint (no fitted scorer): "
                         "finish it with `osrkit train ... --resume`")
    cfg = TrainConfig.from_dict(state["osrkit_config"])
    model = build_model(cfg, state["num_classes"], state["in_channels"], state["image_size"])
    load_model_weights(model, state["model"], str(path))
    model.eval()
    m = get_method(state["method"])
    scorer = m.make_scorer(state["num_classes"], m.resolved_params(cfg.method_params))
    scorer.load_state_dict(state["scorer"])
    meta = {k: v for k, v in state.items() if k not in ("model", "loss", "scorer", "train_state")}
    if "f1_threshold" not in meta:  # checkpoints before operating points stored the F1 threshold as "threshold"
        meta["f1_threshold"] = meta.pop("threshold", None)
    return Trained(model, scorer, meta)


def task_from_checkpoint(meta: dict[str, Any], data_root=None, download: bool = False,
                         validation: bool = False, trainval=None) -> OpenSetTask:
    """The task a checkpoint was trained on: its test side, and with `validation` also the known training
    data and the same validation holdout (for calibrating thresholds). A run on a fixed train/val partition
    needs that partition file (`trainval`; an imported CAC checkpoint remembers its own)."""
    from osrkit.data.tasks import read_trainval

    spec = meta["task"]
    norm = meta["normalization"]
    indices = None
    if validation and spec.get("train_indices"):
        trainval = trainval or spec.get("train_indices_source")
        if trainval is None:
            raise ValueError(f"this checkpoint was trained on a fixed train/val partition ({spec['train_indices']}): "
                             "pass the same partition file with --trainval FILE")
        indices = read_trainval(trainval)
    return make_task(spec["dataset"], known=spec["known"], unknown=spec["unknown"], data_root=data_root,
                     download=download, image_size=spec["image_size"], normalization=(norm["mean"], norm["std"]),
                     test_only=not validation, outlier=spec.get("outlier"), outlier_root=spec.get("outlier_root"),
                     val_fraction=spec.get("val_fraction", 0.2), seed=spec.get("seed", 0), train_indices=indices)


def calibrate_checkpoint(path: str | Path, tpr: float = DEFAULT_TPR, data_root=None, trainval=None,
                         device: str = "cpu") -> dict[str, Any]:
    """Recompute a checkpoint's operating point (and F1 threshold) from its task's validation knowns and
    store them in the checkpoint atomically. Returns the new operating point."""
    trained = load_trained(path)
    task = task_from_checkpoint(trained.meta, data_root=data_root, validation=True, trainval=trainval)
    if len(task.val_y) == 0:
        raise ValueError(f"{path}: its task has no validation knowns to calibrate on (val_fraction 0)")
    cfg = TrainConfig.from_dict(trained.meta["osrkit_config"])
    entries = calibration_entries(val_known_scores(trained.model, trained.scorer, task, cfg, device), tpr,
                                  trained.meta.get("f1_reject", F1_REJECT_FRACTION))
    state = load_checkpoint(path)
    state.pop("threshold", None)
    save_checkpoint(path, {**state, **entries})
    return entries["operating_point"]


def with_scorer(trained: Trained, method: str, task: OpenSetTask, device: str = "cpu",
                params: dict[str, Any] | None = None) -> Trained:
    """The same trained network scored by another method's scorer (e.g. MLS on a softmax-trained net).

    Only valid between methods that share a training loss; the caller decides that. `params` override the
    scorer's method parameters (e.g. {"joint_scale": "block"} for crosr).
    """
    m = get_method(method)
    cfg = TrainConfig.from_dict(trained.meta["osrkit_config"])
    given = {k: v for k, v in cfg.method_params.items() if k in m.params} | dict(params or {})
    scorer = m.make_scorer(task.num_classes, m.resolved_params(given))
    fit_scorer(scorer, trained.model, task, cfg, device)
    meta = {**trained.meta, "method": method}
    op = trained.meta.get("operating_point") or {}
    meta.update(calibration_entries(val_known_scores(trained.model, scorer, task, cfg, device),
                                    op.get("tpr", DEFAULT_TPR), trained.meta.get("f1_reject", F1_REJECT_FRACTION)))
    return Trained(trained.model, scorer, meta, trained.history)
