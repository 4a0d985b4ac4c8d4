"""One rule for "the same trained network", used by `osrkit run --out-dir`, `osrkit bench` (local and Ray),
resume checks and checkpoint file names.

A network is decided by its trainer (loss, loss step, backbone: softmax, mls, energy and openmax share the
cross-entropy trainer; crosr and the dhrnet-* ablations share DHRNet's), the training config with the
method's scorer-only parameters left out, and the task (data set, classes, holdout, seed). Methods that
train the same network share one checkpoint file, and each refits only its scorer on it.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Mapping

__all__ = ["trainer_of", "network_identity", "network_key", "checkpoint_name", "same_network"]


def _hash(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def trainer_of(method: str) -> str:
    """The first registered method that trains the same way as `method` (same loss factory, loss step,
    backbone and head): the name its shared checkpoints carry."""
    from osrkit.methods import METHODS, get_method

    m = get_method(method)
    sig = (m.make_loss, m.loss_step, m.model, json.dumps(m.model_kwargs, sort_keys=True, default=str))
    for name, other in METHODS.items():
        if (other.make_loss, other.loss_step, other.model,
                json.dumps(other.model_kwargs, sort_keys=True, default=str)) == sig:
            return name
    return method


def network_identity(method: str, config: Mapping[str, Any], task_spec: Mapping[str, Any] | None = None,
                     share_network: bool = True) -> dict[str, Any]:
    """What decides the trained weights. `config` is a TrainConfig dict; a config written before a field or a
    method parameter existed reads with that field's default (so old checkpoints keep their identity).
    Without share_network every method parameter counts and the method names itself (no sharing)."""
    from osrkit.engine.config import TrainConfig
    from osrkit.methods import METHODS

    cfg = TrainConfig.from_dict(dict(config)).to_dict()
    params = dict(cfg.pop("method_params", {}) or {})
    if method in METHODS:
        m = METHODS[method]
        known = {k: v for k, v in params.items() if k in m.params}
        params = {**m.params, **m.coerce_params(known)}
        if share_network:
            params = {k: v for k, v in params.items() if k not in m.scorer_params}
        params = m.without_later_defaults(params)
    trainer = trainer_of(method) if share_network and method in METHODS else method
    return {"trainer": trainer, "config": cfg, "training_params": params,
            "task": dict(task_spec) if task_spec is not None else None}


def network_key(method: str, config: Mapping[str, Any], task_spec: Mapping[str, Any] | None = None,
                share_network: bool = True) -> str:
    """A 12-hex-digit hash of `network_identity`."""
    return _hash(network_identity(method, config, task_spec, share_network))


def checkpoint_name(method: str, task_name: str, config: Mapping[str, Any], task_spec: Mapping[str, Any],
                    share_network: bool = True) -> str:
    """`<trainer>-<task>-seed<seed>-<network key>.pt`: equal for every run that trains the same network."""
    ident = network_identity(method, config, task_spec, share_network)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", task_name.replace("+", "plus"))
    return f"{ident['trainer']}-{safe}-seed{ident['config'].get('seed', 0)}-{_hash(ident)}.pt"


def same_network(saved_config: Mapping[str, Any] | None, saved_method: str | None,
                 config: Mapping[str, Any], method: str | None) -> bool:
    """Whether a checkpoint written by `saved_method` with `saved_config` holds the network `method` with
    `config` would train (the task is checked separately). Without a method: the configs must be equal."""
    if saved_config is None:
        return False
    if method is None:
        from osrkit.engine.config import TrainConfig

        return TrainConfig.from_dict(dict(saved_config)).to_dict() == TrainConfig.from_dict(dict(config)).to_dict()
    return (network_identity(saved_method or method, saved_config)
            == network_identity(method, config))
