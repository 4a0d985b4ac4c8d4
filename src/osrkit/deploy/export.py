"""Export a trained open-set classifier as one graph: uint8 images in; logits, unknown_score and label out.

The graph holds the normalisation, the network, the fitted scorer (`Scorer.graph()`) and the threshold:
`label` is the class index, or -1 where `unknown_score` is above the threshold. It runs in fp32 whatever
precision the network was trained in (a bf16 network's threshold was calibrated on bf16 outputs, so near it the
graph and `osrkit predict` can label a sample differently). ONNX needs `pip install osrkit[export]` (onnx, onnxscript,
onnxruntime); TorchScript needs only torch.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from osrkit.deploy.predictor import resolve_threshold
from osrkit.engine.checkpoint import atomic_write_bytes
from osrkit.engine.pipeline import Trained, load_trained

FORMATS = ("onnx", "torchscript")
OUTPUT_NAMES = ("logits", "unknown_score", "label")


class DeployedGraph(nn.Module):
    """uint8 (N, C, H, W) → (logits (N, K), unknown_score (N,), label (N,) int64, -1 = unknown)."""

    def __init__(self, model: nn.Module, score_graph: nn.Module, mean: list[float], std: list[float],
                 threshold: float) -> None:
        super().__init__()
        self.model, self.score_graph = model.eval(), score_graph.eval()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("threshold", torch.tensor(float(threshold), dtype=torch.float32))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = (images.float() / 255.0 - self.mean) / self.std
        out = self.model(x)
        latents = out.extras["latents"] if getattr(self.score_graph, "needs_latents", False) else None
        logits = out.logits.float()
        score, pred = self.score_graph(logits, out.embedding.float(), latents)
        label = torch.where(score > self.threshold, torch.full_like(pred, -1), pred)
        return logits, score, label


def deployed_graph(trained: Trained, threshold: float | None = None, tpr: float | None = None) -> DeployedGraph:
    """The graph module of a trained model (its scorer must have a graph form)."""
    meta = trained.meta
    g = trained.scorer.graph()
    return DeployedGraph(trained.model.float().cpu().eval(), g, meta["normalization"]["mean"],
                         meta["normalization"]["std"], resolve_threshold(meta, threshold, tpr))


def _example(meta: dict[str, Any], n: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    c, s = int(meta["in_channels"]), int(meta["image_size"])
    return torch.randint(0, 256, (n, c, s, s), dtype=torch.uint8, generator=g)


def _write_torchscript(graph: DeployedGraph, example: torch.Tensor, out: Path) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(graph, (example,), check_trace=False, strict=False)
    atomic_write_bytes(out, lambda f: torch.jit.save(traced, f))


def _write_onnx(graph: DeployedGraph, example: torch.Tensor, out: Path) -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise RuntimeError(f"ONNX export needs the export extra: pip install 'osrkit[export]' ({e})") from e
    tmp = out.with_name(f".{out.name}.partial.onnx")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(graph, (example,), dynamo=True, input_names=["images"],
                                        output_names=list(OUTPUT_NAMES),
                                        dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), verbose=False,
                                        external_data=False)
            program.save(str(tmp), external_data=False)
        data = tmp.read_bytes()
    finally:
        tmp.unlink(missing_ok=True)
    atomic_write_bytes(out, lambda f: f.write(data))


def run_exported(path: str | Path, images: torch.Tensor, fmt: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits, unknown_score, label) from an exported file, by onnxruntime or torch.jit."""
    if fmt == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outs = sess.run(list(OUTPUT_NAMES), {"images": images.numpy()})
        return tuple(np.asarray(o) for o in outs)
    m = torch.jit.load(str(path))
    with torch.no_grad():
        return tuple(t.numpy() for t in m(images))


def export_trained(trained: Trained, fmt: str, out: str | Path, threshold: float | None = None,
                   tpr: float | None = None, check: bool = True, source: str = "model") -> dict[str, Any]:
    """Write a trained model as an ONNX or TorchScript graph to `out` (atomically); with `check`, run the
    written file on random images and compare it with the PyTorch module (max |difference|, labels equal)."""
    if fmt not in FORMATS:
        raise ValueError(f"export format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    method = trained.meta.get("method")
    try:
        graph = deployed_graph(trained, threshold, tpr)
    except ValueError as e:
        raise ValueError(f"{source}: method {method!r} cannot be exported as {fmt}: {e}") from e
    example = _example(trained.meta)
    out = Path(out)
    (_write_onnx if fmt == "onnx" else _write_torchscript)(graph, example, out)
    info: dict[str, Any] = {"format": fmt, "out": str(out), "method": method, "threshold": float(graph.threshold),
                            "input_shape": ["N", *example.shape[1:]]}
    if check:
        probe = _example(trained.meta, n=7, seed=1)
        with torch.no_grad():
            ref = [t.numpy() for t in graph(probe)]
        got = run_exported(out, probe, fmt)
        info["max_abs_diff"] = float(max(np.abs(ref[0] - got[0]).max(), np.abs(ref[1] - got[1]).max()))
        info["labels_equal"] = bool((ref[2] == got[2]).all())
    return info


def export_checkpoint(checkpoint: str | Path, fmt: str, out: str | Path, threshold: float | None = None,
                      tpr: float | None = None, check: bool = True) -> dict[str, Any]:
    """`export_trained` for an osrkit checkpoint file."""
    if fmt not in FORMATS:
        raise ValueError(f"export format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return export_trained(load_trained(checkpoint), fmt, out, threshold, tpr, check, source=str(checkpoint))
