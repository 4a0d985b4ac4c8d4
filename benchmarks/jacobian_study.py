"""Jacobian-norm study on MNIST `neal` splits (Park et al. 2024): softmax, CAC and m-OvR side by side.

    python benchmarks/jacobian_study.py --splits 0 --model vgg32-lite --epochs 2 --n 300

For each method and split: train (resumable checkpoints under --out-dir), evaluate AUROC/OSCR/accuracy,
and compute the per-sample Frobenius norm of the embedding's input Jacobian for --n known-test and
--n unknown-test images (exact, batched). Writes benchmarks/results/jacobian_study.{json,md} and one
PNG per method and split (known vs unknown norm distributions). The paper's two findings, checked:
(1) known norm < unknown norm; (2) the gap is larger for the method with stronger inter-class separation.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, header, write  # noqa: E402

from osrkit.analysis.study import jacobian_study  # noqa: E402
from osrkit.data.tasks import make_task  # noqa: E402
from osrkit.engine.pipeline import evaluate, fit_method  # noqa: E402
from osrkit.methods import default_config  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="softmax,cac,movr")
    ap.add_argument("--splits", default="0,1,2,3,4")
    ap.add_argument("--model", default="vgg32-lite")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--n", type=int, default=300, help="samples per side for the Jacobian norms")
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out-dir", default="runs/bench-jacobian")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for split in [int(s) for s in args.splits.split(",")]:
        task = make_task("mnist", split, data_root=args.data_root)
        for method in args.methods.split(","):
            cfg = default_config(method, "mnist").replace(model=args.model, epochs=args.epochs)
            ckpt = Path(args.out_dir) / f"{method}-{args.model}-e{args.epochs}-split{split}.pt"
            trained = fit_method(method, task, cfg, checkpoint=ckpt, resume=True, progress=False)
            res = evaluate(trained, task)
            plot_dir = RESULTS / "jacobian_study" / f"{method}-split{split}"
            jac = jacobian_study(trained, task, plot_dir, n=args.n, progress=False)
            row = {"method": method, "split": split, **{k: res[k] for k in ("auroc", "oscr", "accuracy")},
                   **{k: jac[k] for k in ("known_mean", "unknown_mean", "difference", "auroc_of_norm")}}
            rows.append(row)
            print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    md = [f"# Jacobian-norm study, MNIST `neal` splits {args.splits}: {args.model}, {args.epochs} epochs "
          "(osrkit fast recipe)", "",
          "| method | AUROC | OSCR | accuracy | known norm | unknown norm | difference | AUROC of norm |",
          "|---|---|---|---|---|---|---|---|"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for m in methods:
        sel = [r for r in rows if r["method"] == m]
        cell = lambda k: f"{np.mean([r[k] for r in sel]):.4f} ± {np.std([r[k] for r in sel]):.4f}"  # noqa: E731
        md.append(f"| {m} | " + " | ".join(cell(k) for k in ("auroc", "oscr", "accuracy", "known_mean",
                                                           "unknown_mean", "difference", "auroc_of_norm")) + " |")
    finding1 = all(r["known_mean"] < r["unknown_mean"] for r in rows)
    md += ["", f"Finding 1 (known norm < unknown norm) holds in {sum(r['known_mean'] < r['unknown_mean'] for r in rows)}"
           f" of {len(rows)} runs. Norms are of the embedding w.r.t. the normalised input, exact, n={args.n} per side; "
           f"plots in `results/jacobian_study/`.", ""]
    h = header()
    md.append(f"Command: `{h['command']}`; date {h['date']}; {h['machine']['processor']}, {h['machine']['cpu_count']} cores; "
              f"commit {h['git_commit']}.")
    text = "\n".join(md) + "\n"
    print(text)
    write("jacobian_study", {**h, "rows": rows, "finding1_all_runs": finding1}, text)


if __name__ == "__main__":
    main()
