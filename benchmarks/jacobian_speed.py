"""Speed and accuracy of `osrkit.analysis.jacobian_norm` on vgg32 with MNIST-sized inputs (1x32x32).

Compares, on the embedding f(x) (N, 128) of an eval-mode vgg32:
  * loop: a per-sample `torch.autograd.functional.jacobian` loop (the naive baseline),
  * exact: the batched exact norm (each `exact_impl`),
  * estimate: the random-projection estimator with k = 8 and k = 32 probes (jvp and vjp; vjp also
    with k = 1 and 2, to show what the issue's speed target would take).
All variants are measured interleaved in the same rounds (the machine may be shared), after an
untimed warm-up on the same shapes (oneDNN builds kernels per shape); speeds are reported both per
wall-clock second and per process-CPU second, with speed ratios to the loop and to the exact default.
The estimator's relative error is mean_i |est_i - exact_i| / exact_i over the benchmark samples.

Run: .venv/bin/python benchmarks/jacobian_speed.py  (writes benchmarks/results/jacobian_speed.{json,md})
"""

from __future__ import annotations

import os

# Shared 2-core machine: spinning OpenMP threads waiting at barriers for a preempted sibling burn
# whole time slices and make many-small-op variants (the loop) erratically slow; yield instead.
# Must be set before torch loads its OpenMP runtime; an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import datetime as _dt
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from osrkit.analysis import jacobian_norm
from osrkit.models import create_model

ROOT = Path(__file__).resolve().parents[1]
TARGET_EXACT = 20.0  # exact >= 20x the loop
TARGET_EST_SPEED = 100.0  # estimator >= 100x the loop ...
TARGET_EST_ERR = 0.02  # ... within 2 % mean relative error (issue 12; it was 5% before)
EMBEDDING_DIM = 128  # vgg32's embedding: the exact norm's passes per sample


def load_mnist(n: int, root: str) -> torch.Tensor:
    """First n MNIST test images as (n, 1, 32, 32) floats in [0, 1] (bilinear 28 -> 32)."""
    from torchvision.datasets import MNIST

    ds = MNIST(root=root, train=False, download=False)
    x = ds.data[:n].float().div(255.0).unsqueeze(1)
    return F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)


def loop_norms(fn: Callable, x: torch.Tensor) -> torch.Tensor:
    """Baseline: the full Jacobian of each sample with torch.autograd.functional.jacobian."""
    out = []
    for i in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda xi: fn(xi.unsqueeze(0))[0], x[i])
        out.append(jac.pow(2).sum().sqrt())
    return torch.stack(out)


def timed(run: Callable[[], object]) -> tuple[object, float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    res = run()
    return res, time.perf_counter() - w0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16, help="samples for the batched exact and the estimator")
    ap.add_argument("--loop-n", type=int, default=8, help="samples for the per-sample loop baseline")
    ap.add_argument("--vmap-n", type=int, default=4, help="samples for exact_impl='vmap' (slow; 0 skips it)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "jacobian_speed.json"))
    ap.add_argument("--render-only", action="store_true", help="rebuild the Markdown from the JSON at --out")
    ap.add_argument("--checkpoint", help="a trained osrkit checkpoint (its network, its normalisation); default: an "
                                         "untrained vgg32")
    args = ap.parse_args()
    if args.render_only:
        out = Path(args.out)
        write_results(json.loads(out.read_text()), out)
        return

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = load_mnist(max(args.n, args.loop_n, args.vmap_n), args.data_root)
    if args.checkpoint:
        from osrkit.engine.pipeline import load_trained

        trained = load_trained(args.checkpoint)
        model = trained.model.eval()
        norm = trained.meta["normalization"]
        x = (x - torch.tensor(norm["mean"]).view(1, -1, 1, 1)) / torch.tensor(norm["std"]).view(1, -1, 1, 1)
        cfg = trained.meta["osrkit_config"]
        model_desc = (f"{cfg['model']} trained by `{trained.meta['method']}` ({Path(args.checkpoint).name}: "
                      f"{cfg['epochs']} epochs on {trained.meta['task'].get('dataset')} split "
                      f"{trained.meta['task'].get('index')}), eval mode")
    else:
        model = create_model("vgg32", num_classes=6, in_channels=1).eval()  # untrained weights, eval mode
        model_desc = "vgg32 (num_classes=6, in_channels=1), untrained (seed 0), eval mode"
    fn = lambda inp: model(inp).embedding  # noqa: E731
    with torch.no_grad():
        d_z = fn(x[:1]).shape[1]
    xn, xl, xv = x[: args.n], x[: args.loop_n], x[: args.vmap_n]
    load_before = os.getloadavg()

    # name -> (samples, run); estimator runs draw fresh probes every round
    gen = torch.Generator().manual_seed(0)
    variants: dict[str, tuple[int, Callable[[], torch.Tensor]]] = {
        "loop (autograd.functional.jacobian)": (len(xl), lambda: loop_norms(fn, xl)),
        "exact backward": (len(xn), lambda: jacobian_norm(fn, xn, exact_impl="backward").norms),
        "exact batched_grad": (len(xn), lambda: jacobian_norm(fn, xn, exact_impl="batched_grad").norms),
    }
    if args.vmap_n > 0:
        variants["exact vmap(jacrev)"] = (len(xv), lambda: jacobian_norm(fn, xv, exact_impl="vmap").norms)
    for est in ("jvp", "vjp", "hutchpp"):
        for k in {"jvp": (8, 32), "vjp": (1, 2, 8, 32), "hutchpp": (4, 8, 16)}[est]:
            variants[f"estimate {est} k={k}"] = (
                len(xn),
                lambda est=est, k=k: jacobian_norm(fn, xn, method="estimate", probes=k, generator=gen, estimator=est).norms,
            )

    # warm-up on the same shapes: exact variants with a 2-dim output (same batch shapes, 2 passes)
    fn2 = lambda inp: model(inp).embedding[:, :2]  # noqa: E731
    loop_norms(fn2, xl[:1])
    jacobian_norm(fn, xn[:1], exact_impl="batched_grad", chunk_size=1)
    jacobian_norm(fn, xn, exact_impl="batched_grad", chunk_size=len(xn))  # default chunk is 2048 // 128 = 16
    if args.vmap_n > 0:
        jacobian_norm(fn, xv[:1], exact_impl="vmap")
    for name, (_, run) in variants.items():
        if name.startswith("estimate"):
            run()

    exact_ref = jacobian_norm(fn, xn, exact_impl="backward").norms  # reference; also warms "backward" up
    loop_ref = exact_ref[: len(xl)]
    wall: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    relerr: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(args.rounds):
        for name, (n, run) in variants.items():
            res, w, c = timed(run)
            wall[name].append(w / n)
            cpu[name].append(c / n)
            ref = loop_ref if name.startswith("loop") else exact_ref[: len(res)]
            relerr[name].append(float(((res - ref).abs() / ref).mean()))
            print(f"round {r}: {name:38s} {n / w:8.2f} samples/s (wall)", flush=True)

    loop_name = "loop (autograd.functional.jacobian)"
    rows = []
    for name in variants:
        w_med, c_med = statistics.median(wall[name]), statistics.median(cpu[name])
        # ratio to the loop per round (interleaved), then the median over rounds
        ratio_w = statistics.median(lw / vw for lw, vw in zip(wall[loop_name], wall[name]))
        ratio_c = statistics.median(lc / vc for lc, vc in zip(cpu[loop_name], cpu[name]))
        rows.append(
            {
                "variant": name,
                "samples": variants[name][0],
                "samples_per_s_wall": 1.0 / w_med,
                "samples_per_s_cpu": 1.0 / c_med,
                "speedup_vs_loop_wall": ratio_w,
                "speedup_vs_loop_cpu": ratio_c,
                "mean_rel_error_vs_exact": statistics.mean(relerr[name]),
            }
        )
    by = {r["variant"]: r for r in rows}
    base = by["exact backward"]
    for r in rows:
        r["speedup_vs_exact_backward_cpu"] = base["samples_per_s_cpu"] and r["samples_per_s_cpu"] / base["samples_per_s_cpu"]

    hdr = f"{'variant':38s} {'n':>3s} {'samp/s wall':>11s} {'samp/s cpu':>10s} {'x loop(w)':>9s} {'x loop(c)':>9s} {'x exact(c)':>10s} {'rel.err':>8s}"
    print("\n" + hdr + "\n" + "-" * len(hdr))
    for r in rows:
        print(
            f"{r['variant']:38s} {r['samples']:3d} {r['samples_per_s_wall']:11.2f} {r['samples_per_s_cpu']:10.2f} "
            f"{r['speedup_vs_loop_wall']:9.2f} {r['speedup_vs_loop_cpu']:9.2f} {r['speedup_vs_exact_backward_cpu']:10.2f} "
            f"{r['mean_rel_error_vs_exact']:8.4f}"
        )

    targets = check_targets(rows)
    print("\ntargets:", json.dumps(targets, indent=1))

    result = {
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "torch": torch.__version__,
        "setup": {
            "model": f"{model_desc}; f = embedding ({d_z}-d)", "trained": bool(args.checkpoint), "d_z": d_z,
            "input": "MNIST test images 0..n-1, [0,1], bilinear 28->32",
            "rounds": args.rounds,
            "timing": "median over interleaved rounds after a warm-up; ratios per round, then median",
        },
        "results": rows,
        "raw_seconds_per_sample": {"wall": wall, "cpu": cpu},
    }
    write_results(result, Path(args.out))


def check_targets(rows: list[dict]) -> dict:
    """The issue's targets, judged on wall-clock ratios (what a user waits for on an otherwise idle machine)
    and on CPU-time ratios (robust to a shared machine, but blind to how well a variant uses both cores)."""
    out = {}
    for clock in ("wall", "cpu"):
        key = f"speedup_vs_loop_{clock}"
        best_exact = max((r for r in rows if r["variant"].startswith("exact")), key=lambda r: r[key])
        ok_est = [r for r in rows if r["variant"].startswith("estimate") and r["mean_rel_error_vs_exact"] <= TARGET_EST_ERR]
        best_est = max(ok_est, key=lambda r: r[key]) if ok_est else None
        out[clock] = {
            "exact_vs_loop": {"target": TARGET_EXACT, "best_variant": best_exact["variant"], "speedup": best_exact[key],
                              "met": best_exact[key] >= TARGET_EXACT},
            "estimate_vs_loop": {"target_speedup": TARGET_EST_SPEED, "target_rel_error": TARGET_EST_ERR,
                                 "best_variant_within_error": best_est and best_est["variant"],
                                 "rel_error": best_est and best_est["mean_rel_error_vs_exact"],
                                 "speedup": best_est and best_est[key],
                                 "met": bool(best_est and best_est[key] >= TARGET_EST_SPEED)},
        }
    return out


def render(result: dict) -> str:
    """The Markdown table of a result: speeds, ratios to the loop, errors, and whether each target is met."""
    m, t = result["machine"], check_targets(result["results"])
    md = [f"# Jacobian norm speed: {result['setup']['model']}", "",
          "| variant | samples | samples/s (wall) | samples/s (CPU) | × loop (wall) | × loop (CPU) | × exact (CPU) | mean rel. error |",
          "|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['variant']} | {r['samples']} | {r['samples_per_s_wall']:.2f} | {r['samples_per_s_cpu']:.2f} | "
           f"{r['speedup_vs_loop_wall']:.2f} | {r['speedup_vs_loop_cpu']:.2f} | {r['speedup_vs_exact_backward_cpu']:.2f} | {r['mean_rel_error_vs_exact']:.4f} |"
           for r in result["results"]]
    md.append("")
    for clock, label in (("wall", "wall-clock"), ("cpu", "CPU-time")):
        ex, es = t[clock]["exact_vs_loop"], t[clock]["estimate_vs_loop"]
        best = (f"best within error {es['best_variant_within_error']} at {es['speedup']:.1f}×, error "
                f"{es['rel_error']:.1%}" if es["best_variant_within_error"] else "no estimator variant was within the error")
        md.append(f"On {label} ratios: exact ≥ {ex['target']:.0f}× the loop: best {ex['best_variant']} at "
                  f"{ex['speedup']:.2f}× ({'met' if ex['met'] else 'not met'}); estimator within "
                  f"{es['target_rel_error']:.0%} at ≥ {es['target_speedup']:.0f}×: {best} "
                  f"({'met' if es['met'] else 'not met'}).")
    md += ["", "Wall-clock ratios count a variant's use of both cores (batched passes parallelise, batch-1 passes "
           "barely do); CPU-time ratios do not. Errors are against the exact norm of the same samples, on "
           + ("the trained network named above." if result["setup"].get("trained") else "an untrained network.")]
    ex, es = t["wall"]["exact_vs_loop"], t["wall"]["estimate_vs_loop"]
    md.append("")
    if not ex["met"] and not m.get("gpu"):
        why = (f"Why the exact target is out of reach on this CPU: the loop and the batched exact norm do the same work "
               f"(one backward pass per output dimension, {result['setup'].get('d_z', EMBEDDING_DIM)} here); batching only saves per-call overhead "
               f"and uses the {m['cpu_count']} cores better, which is small next to the convolutions' arithmetic, so the "
               "exact norm is FLOP-bound at a small multiple of the loop. On a GPU, where batch-1 passes leave the "
               "device mostly idle, batching gains far more.")
        if not es["met"]:
            why += (f" The estimator's speed-up is about {result['setup'].get('d_z', EMBEDDING_DIM)} / k times that multiple, so ≥ "
                    f"{es['target_speedup']:.0f}× needs k of 1 or 2, at the edge of the error target.")
        md += [why, ""]
    md += [
           f"Command: `{result['command']}`; date {result['date']}; {m['processor']}, {m['cpu_count']} cores, "
           f"{m['torch_threads']} threads, torch {result['torch']}, OMP_WAIT_POLICY={m['OMP_WAIT_POLICY']}; load "
           f"average before/after {m['loadavg_before'][0]:.1f}/{m['loadavg_after'][0]:.1f}. Timing: {result['setup']['timing']}."]
    return "\n".join(md) + "\n"


def write_results(result: dict, out: Path) -> None:
    """Write the JSON and the Markdown beside it, each atomically."""
    from osrkit.engine.checkpoint import atomic_write_text

    result = {**result, "targets": check_targets(result["results"])}
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    atomic_write_text(out.with_suffix(".md"), render(result))
    print(f"wrote {out} and {out.with_suffix('.md').name}")


if __name__ == "__main__":
    main()
