"""The training loop: seeded, deterministic on CPU, resumable from an atomic per-epoch checkpoint."""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from osrkit.data.tasks import OpenSetTask
from osrkit.data.transforms import make_augment, normalize
from osrkit.engine import distributed
from osrkit.engine.checkpoint import load_checkpoint, save_checkpoint
from osrkit.engine.config import TrainConfig
from osrkit.engine.precision import apply_memory_format, autocast, outputs_fp32, to_memory_format
from osrkit.engine.identity import same_network
from osrkit.losses.step import LossStep, default_loss_step  # noqa: F401 (re-exported: the engine's step types)


_NO_DECAY_TYPES = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)


def param_groups(modules: list[torch.nn.Module], cfg: TrainConfig) -> list[dict[str, Any]]:
    """Optimizer parameter groups. cfg.weight_decay_on "all": every parameter decays (one group);
    "weights": only convolution and linear weights decay; biases, normalisation parameters and cosine-head
    prototypes (whose scale the head ignores, so decay only shrinks their effective step size) do not."""
    from osrkit.models.heads import CosineLinear

    params = [p for m in modules for p in m.parameters()]
    if cfg.weight_decay_on == "all":
        return [{"params": params}]
    no_decay: set[int] = set()
    for mod in modules:
        for sub in mod.modules():
            if isinstance(sub, (*_NO_DECAY_TYPES, CosineLinear)):
                no_decay.update(id(p) for p in sub.parameters(recurse=False))
        for name, p in mod.named_parameters():
            if name.endswith("bias"):
                no_decay.add(id(p))
    return [{"params": [p for p in params if id(p) not in no_decay]},
            {"params": [p for p in params if id(p) in no_decay], "weight_decay": 0.0}]


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose sgd or adam")


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """A per-step learning-rate scheduler."""
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.25)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=cfg.lr * 1e-4)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(opt, [e * steps_per_epoch for e in cfg.step_epochs], 0.1)
    if cfg.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    raise ValueError(f"unknown schedule {cfg.schedule!r}; choose onecycle, cosine, step or constant")


@torch.no_grad()
def _validate(model, loss_fn, loss_step, task: OpenSetTask, cfg: TrainConfig, device) -> dict[str, float]:
    """Mean validation loss, accuracy and the loss's named terms (e.g. CAC's anchor term), in eval mode."""
    if len(task.val_y) == 0:
        return {"val_loss": float("nan"), "val_accuracy": float("nan")}
    model.eval()
    total, correct, n, terms = 0.0, 0, 0, {}
    for i in range(0, len(task.val_y), cfg.eval_batch_size):
        x = to_memory_format(normalize(task.val_x[i:i + cfg.eval_batch_size].to(device), task.mean, task.std),
                             cfg.memory_format)
        y = task.val_y[i:i + cfg.eval_batch_size].to(device)
        with autocast(cfg.precision, device):
            out = outputs_fp32(model(x))
            total += float(loss_step(loss_fn, out, x, y)) * len(y)
        for k, v in (getattr(loss_fn, "last_terms", None) or {}).items():
            if k != "loss":
                terms[k] = terms.get(k, 0.0) + float(v) * len(y)
        correct += int((out.logits.argmax(1) == y).sum())
        n += len(y)
    model.train()
    return {"val_loss": total / n, "val_accuracy": correct / n, **{f"val_{k}": v / n for k, v in terms.items()}}


_SELECT_KEY = {"best-val-loss": "val_loss", "best-val-anchor-loss": "val_anchor"}


def same_config(saved: dict | None, current: dict, method: str | None = None,
                saved_method: str | None = None) -> bool:
    """Whether a checkpoint's config may be resumed or reused by `method` with `current`: the same network
    (`osrkit.engine.identity.same_network`): scorer-only parameters are ignored (the scorer is refit anyway),
    and a field or method parameter added since the checkpoint reads at its default."""
    return same_network(saved, saved_method or method, current, method)


class NonFiniteLossError(FloatingPointError):
    """Training diverged; the message says where and what to change."""


class DivergenceWarning(UserWarning):
    """Training ended worse than it began, or at chance accuracy: the model is probably useless."""


def divergence(history: list[dict], first_loss: float | None, num_classes: int) -> str | None:
    """Why a finished run looks diverged (None if it does not): the last epoch's mean training loss above the
    first step's loss, or a validation accuracy within a quarter of chance (1/K)."""
    if not history:
        return None
    last = history[-1]
    if first_loss is not None and math.isfinite(first_loss) and last["train_loss"] > first_loss:
        return (f"the training loss ended at {last['train_loss']:.4g}, above where it began ({first_loss:.4g}): "
                "lower the learning rate (--lr)")
    acc = last.get("val_accuracy", float("nan"))
    if num_classes > 1 and acc == acc and acc <= 1.25 / num_classes:
        return (f"the validation accuracy ended at chance ({acc:.3f}, chance {1 / num_classes:.3f}): lower the "
                "learning rate (--lr) or train longer")
    return None


def _cuda_rng() -> list[torch.Tensor] | None:
    """The CUDA generators' states (None without CUDA), saved so a resume on GPU draws the same numbers."""
    return torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None


def _restore_cuda_rng(state: list[torch.Tensor] | None) -> None:
    if state is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state)


def train(model: torch.nn.Module, loss_fn: torch.nn.Module, task: OpenSetTask, cfg: TrainConfig,
          checkpoint: str | Path | None = None, resume: bool = False, device: str = "cpu",
          loss_step: LossStep = default_loss_step, meta: dict[str, Any] | None = None,
          progress: bool = True, on_epoch: Callable[[int, dict], None] | None = None,
          sync_bn: bool = False) -> dict[str, Any]:
    """Train `model` on task.train with `loss_fn`; checkpoint atomically after every epoch.

    With `resume=True` and an existing checkpoint, training continues from its last finished epoch
    and ends with the same weights an uninterrupted run would (same seed, CPU). Returns the history.
    `cfg.precision`/`cfg.memory_format` "auto" resolve for `device` (bf16 + channels_last where native);
    the checkpoint records the resolved values. Under torchrun, each rank trains on its slice of every batch
    with DDP and rank 0 alone validates and checkpoints (`osrkit.engine.distributed`).
    """
    cfg = cfg.resolved(device)
    rank, world = distributed.active()
    main = rank == 0
    if world > 1 and cfg.batch_size < world:
        raise ValueError(f"--batch-size {cfg.batch_size} is the global batch and must be at least the number of DDP "
                         f"ranks ({world})")
    torch.manual_seed(cfg.seed)
    model.to(device)
    loss_fn.to(device)
    apply_memory_format(model, cfg.memory_format)
    net = distributed.wrap(model, device, sync_bn) if world > 1 else model
    model = net.module if world > 1 else model
    opt = make_optimizer(param_groups([model, loss_fn], cfg), cfg)
    n = len(task.train_y)
    if n == 0:
        raise ValueError(f"task {task.name} has no training images")
    steps = math.ceil(n / cfg.batch_size)
    sched = make_scheduler(opt, cfg, steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    augment = make_augment(cfg.augment)
    history: list[dict[str, float]] = []
    start_epoch, best = 0, {"val_loss": math.inf, "model": None, "epoch": -1}
    first_loss: float | None = None
    if cfg.select in _SELECT_KEY and len(task.val_y) == 0:
        raise ValueError(f"--select {cfg.select} needs validation data, and task {task.name} has none "
                         "(--val-fraction 0): give a validation share, or --select last")

    if resume and checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint)
        ts = state.get("train_state")
        if ts is None:
            raise ValueError(f"{checkpoint} holds no training state to resume from")
        if not same_config(state.get("config"), cfg.to_dict(), (meta or {}).get("method"), state.get("method")):
            raise ValueError(f"{checkpoint} was written with a different config; resume needs the same settings "
                             "(or delete the checkpoint to start over)")
        if meta is not None and "task" in meta and state.get("task") != meta["task"]:
            raise ValueError(f"{checkpoint} was trained on another task ({state.get('task')}), not {meta['task']}; "
                             "use another checkpoint path (or delete it to start over)")
        model.load_state_dict(state["model"])
        loss_fn.load_state_dict(state["loss"])
        opt.load_state_dict(ts["optimizer"])
        sched.load_state_dict(ts["scheduler"])
        gen.set_state(ts["generator"])
        torch.set_rng_state(ts["torch_rng"])
        _restore_cuda_rng(ts.get("cuda_rng"))
        first_loss = ts.get("first_loss")
        history = list(ts["history"])
        start_epoch = int(ts["epoch"]) + 1
        best = dict(ts["best"])

    x_all, y_all = task.train_x.to(device), task.train_y.to(device)
    model.train()
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
               TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[ips]:.0f} img/s"), TimeRemainingColumn()]
    with Progress(*columns, disable=not (progress and main), transient=False) as bar:
        for epoch in range(start_epoch, cfg.epochs):
            pid = bar.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=steps, loss=float("nan"), ips=0.0)
            perm = torch.randperm(n, generator=gen)  # the same on every rank: `gen` draws nothing else under DDP
            aug_gen = gen if world == 1 else torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch * 7919 + rank)
            t0, seen, loss_sum = time.perf_counter(), 0, 0.0
            for s in range(steps):
                idx = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
                idx = (idx if world == 1 else distributed.shard(idx, rank, world)).to(device)
                x = normalize(augment(x_all[idx].float().div_(255.0), aug_gen), task.mean, task.std)
                x = to_memory_format(x, cfg.memory_format)
                y = y_all[idx]
                with autocast(cfg.precision, device):  # the body in bf16 where chosen; heads and losses fp32
                    out = outputs_fp32(net(x))
                    loss = loss_step(loss_fn, out, x, y)
                loss_val = float(loss.detach())  # one device sync per step
                if first_loss is None:
                    first_loss = loss_val
                if not math.isfinite(loss_val):
                    raise NonFiniteLossError(
                        f"loss became {loss_val} at epoch {epoch + 1}, step {s + 1}: training diverged. "
                        f"Lower the learning rate (now {cfg.lr}, --lr), or check the inputs for NaN. "
                        + (f"The last good checkpoint is {checkpoint} (resume with --resume)."
                           if checkpoint is not None and Path(checkpoint).exists()
                           else "No epoch finished, so no checkpoint was written."))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if world > 1:
                    distributed.average_gradients(loss_fn.parameters())
                opt.step()
                sched.step()
                seen += len(y)
                loss_sum += loss_val * len(y)
                bar.update(pid, advance=1, loss=loss_val, ips=seen / (time.perf_counter() - t0))
            train_time = time.perf_counter() - t0
            if not main:  # rank 0 alone validates, selects and checkpoints
                continue
            val = _validate(model, loss_fn, loss_step, task, cfg, device)
            rec = {"epoch": epoch, "train_loss": loss_sum / seen, **val,
                   "train_seconds": train_time, "images_per_second": seen * world / train_time,
                   "lr": float(opt.param_groups[0]["lr"])}
            history.append(rec)
            if cfg.select in _SELECT_KEY:
                key = _SELECT_KEY[cfg.select]
                if key not in val:
                    raise ValueError(f"--select {cfg.select} needs the loss's {key[4:]} term on validation data; "
                                     f"this method's loss has {sorted(k[4:] for k in val if k != 'val_accuracy')}")
                if not math.isfinite(val[key]):
                    warnings.warn(f"epoch {epoch + 1}: validation {key[4:].replace('_', ' ')} is {val[key]}; "
                                  f"--select {cfg.select} skips this epoch", DivergenceWarning, stacklevel=2)
                elif val[key] < best["val_loss"]:
                    best = {"val_loss": val[key], "epoch": epoch,
                            "model": {k: v.detach().clone() for k, v in model.state_dict().items()}}
            if checkpoint is not None:
                save_checkpoint(checkpoint, {
                    **(meta or {}), "config": cfg.to_dict(), "model": model.state_dict(), "loss": loss_fn.state_dict(),
                    "train_state": {"epoch": epoch, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                                    "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                                    "cuda_rng": _cuda_rng(), "first_loss": first_loss,
                                    "history": history, "best": best, "finished": epoch + 1 == cfg.epochs}})
            if on_epoch is not None:
                on_epoch(epoch, rec)
    if cfg.select in _SELECT_KEY and best["model"] is not None:
        model.load_state_dict(best["model"])
    elif cfg.select in _SELECT_KEY and history:
        warnings.warn(f"--select {cfg.select}: no epoch had a finite validation value; kept the last epoch",
                      DivergenceWarning, stacklevel=2)
    model.eval()
    diverged = divergence(history, first_loss, task.num_classes)
    if diverged:
        warnings.warn(f"training of {task.name} looks diverged: {diverged}", DivergenceWarning, stacklevel=2)
    return {"history": history, "best_epoch": best["epoch"], "diverged": diverged}
