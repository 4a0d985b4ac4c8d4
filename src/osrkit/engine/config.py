"""Training configuration: one dataclass; CLI flags and YAML files override fields by name."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, get_args, get_origin, get_type_hints

from osrkit.engine.precision import MEMORY_FORMATS, PRECISIONS, resolve_memory_format, resolve_precision


def _convert(name: str, value: Any, kind: Any) -> Any:
    """`value` as the field's declared type (numbers given as strings, e.g. YAML's "1e-3", are converted);
    a ValueError names the field, the value and what is allowed."""
    def bad(what: str) -> ValueError:
        return ValueError(f"config field {name}={value!r}: expected {what}")

    if kind is float:
        if isinstance(value, bool):
            raise bad("a number")
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise bad("a number, e.g. 0.001 or 1e-3") from None
        if not math.isfinite(out):
            raise bad("a finite number")
        return out
    if kind is int:
        if isinstance(value, bool):
            raise bad("a whole number")
        try:
            out = float(value)
        except (TypeError, ValueError):
            raise bad("a whole number") from None
        if not out.is_integer():
            raise bad("a whole number")
        return int(out)
    if kind is str:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if get_origin(kind) is list:
        if not isinstance(value, (list, tuple)):
            raise bad("a list of whole numbers, e.g. [30, 60]")
        return [_convert(f"{name}[]", v, get_args(kind)[0]) for v in value]
    return value


def _convert_fields(cfg: "TrainConfig") -> None:
    hints = get_type_hints(type(cfg))
    for f in fields(cfg):
        setattr(cfg, f.name, _convert(f.name, getattr(cfg, f.name), hints[f.name]))


@dataclass
class TrainConfig:
    """Everything that decides a training run. Stored with every checkpoint and result."""

    model: str = "vgg32"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"  # sgd | adam
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    weight_decay_on: str = "all"  # all | weights: "weights" exempts biases, norms and cosine prototypes
    schedule: str = "onecycle"  # onecycle | cosine | step | constant
    step_epochs: list[int] = field(default_factory=list)  # for "step": lr x0.1 at these epochs
    augment: str = "crop"  # none | crop | crop-flip
    select: str = "last"  # last | best-val-loss | best-val-anchor-loss (CAC): which epoch's weights to keep
    seed: int = 0
    method_params: dict[str, Any] = field(default_factory=dict)  # loss/scorer hyper-parameters
    precision: str = "auto"  # auto | bf16 | fp32: bf16 autocast where the device runs it natively
    memory_format: str = "auto"  # auto | channels_last | contiguous
    eval_batch_size: int = 512

    def __post_init__(self) -> None:
        _convert_fields(self)
        choices = {"select": ("last", "best-val-loss", "best-val-anchor-loss"), "schedule": ("onecycle", "cosine", "step", "constant"),
                   "optimizer": ("sgd", "adam"), "augment": ("none", "crop", "crop-flip"),
                   "precision": PRECISIONS, "memory_format": MEMORY_FORMATS, "weight_decay_on": ("all", "weights")}
        for name, ok in choices.items():
            if getattr(self, name) not in ok:
                raise ValueError(f"config field {name} must be one of {', '.join(ok)}, got {getattr(self, name)!r}")
        if int(self.batch_size) < 1 or int(self.epochs) < 0 or int(self.eval_batch_size) < 1:
            raise ValueError(f"need batch_size >= 1, eval_batch_size >= 1 and epochs >= 0, got "
                             f"{self.batch_size}, {self.eval_batch_size}, {self.epochs}")
        if not isinstance(self.model_kwargs, dict) or not isinstance(self.method_params, dict):
            raise ValueError("config fields model_kwargs and method_params must be mappings")
        for name, low, high in (("lr", 0.0, None), ("momentum", None, 1.0), ("weight_decay", None, None)):
            v = getattr(self, name)
            if (low is not None and not v > low) or (high is not None and not v < high) or v < 0:
                raise ValueError(f"config field {name}={v!r} is out of range: "
                                 + {"lr": "it must be > 0", "momentum": "it must be in [0, 1)",
                                    "weight_decay": "it must be >= 0"}[name])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def resolved(self, device: str = "cpu") -> "TrainConfig":
        """A copy with "auto" precision and memory format replaced by what `device` runs: the run's identity."""
        return self.replace(precision=resolve_precision(self.precision, device),
                            memory_format=resolve_memory_format(self.memory_format, device))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Build from a dict of fields; a config written before precision existed (it has `channels_last`)
        reads as what it ran: fp32, contiguous or channels_last."""
        d = dict(d)
        if "channels_last" in d:
            d.setdefault("memory_format", "channels_last" if d.pop("channels_last") else "contiguous")
            d.setdefault("precision", "fp32")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown config fields {unknown}; valid fields: {sorted(names)}")
        return cls(**d)

    def replace(self, **overrides: Any) -> "TrainConfig":
        d = self.to_dict()
        for k, v in overrides.items():
            if v is None:
                continue
            if k in ("model_kwargs", "method_params"):
                d[k] = {**d[k], **v}
            else:
                d[k] = v
        return TrainConfig.from_dict(d)
