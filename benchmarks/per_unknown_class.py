"""AUROC per unknown class: which unknown class a network's score lets through (known test set vs each one alone).

    python benchmarks/per_unknown_class.py --checkpoints "runs/movr_tuning_mnist-checkpoints/*-mnist-seed0-*.pt" \
        --name per_unknown_mnist_custom

For every finished osrkit checkpoint matching the glob: the known-test outputs once, then the outputs of each
unknown class of its task on its own, scored by every reading of its method (m-OvR: every score kind; a
cross-entropy network: MSP and MLS), each scorer fitted as the pipeline fits it. Writes
benchmarks/results/<name>.{json,md}. Refuses checkpoints of a reported split (`--allow-reported` to look anyway),
since choosing anything from this view of reported splits would be tuning on the report.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finished_checkpoints, header, provenance, write  # noqa: E402

from osrkit.data.tasks import make_task  # noqa: E402
from osrkit.engine.config import TrainConfig  # noqa: E402
from osrkit.engine.pipeline import fit_scorer, load_trained, predict_with, task_from_checkpoint  # noqa: E402
from osrkit.methods import get_method  # noqa: E402
from osrkit.metrics import auroc  # noqa: E402
from osrkit.scores.ovr import MOVR_SCORE_KINDS  # noqa: E402

READINGS = {"movr": {k: ("movr", {"score": k}) for k in MOVR_SCORE_KINDS},
            "softmax": {"msp": ("softmax", {}), "mls": ("mls", {})}}


def scorers_for(trained, task, cfg) -> dict:
    """{label: fitted scorer} for every reading of the checkpoint's method."""
    method = trained.meta["method"]
    out = {}
    for label, (name, params) in READINGS.get(method, {method: (method, {})}).items():
        m = get_method(name)
        given = {k: v for k, v in cfg.method_params.items() if k in m.params} | dict(params)
        out[label] = fit_scorer(m.make_scorer(task.num_classes, m.resolved_params(given)), trained.model, task, cfg)
    return out


def per_class(path: str, data_root: str) -> dict:
    """AUROC of each reading against all unknowns and against each unknown class alone."""
    trained = load_trained(path)
    spec = trained.meta["task"]
    cfg = TrainConfig.from_dict(trained.meta["osrkit_config"])
    task = task_from_checkpoint(trained.meta, data_root=data_root, validation=True)
    known = predict_with(trained.model, task.test_x, task, cfg, labels=task.test_y)
    unknown = {c: predict_with(trained.model, make_task(spec["dataset"], known=spec["known"], unknown=[c],
                                                        data_root=data_root, test_only=True,
                                                        image_size=spec["image_size"],
                                                        normalization=(task.mean, task.std)).unknown_x, task, cfg)
               for c in spec["unknown"]}
    rows = {}
    for label, scorer in scorers_for(trained, task, cfg).items():
        k = scorer.score(known).unknown_scores
        u = {c: scorer.score(o).unknown_scores for c, o in unknown.items()}
        rows[label] = {"all": auroc(k, torch.cat(list(u.values()))), **{str(c): auroc(k, s) for c, s in u.items()}}
    return {"checkpoint": Path(path).name, "method": trained.meta["method"], "known": spec["known"],
            "unknown": spec["unknown"], "config": cfg.to_dict(), "auroc": rows}


def render(res: dict) -> str:
    lines = ["# AUROC per unknown class", ""]
    for net in res["networks"]:
        cls = [str(c) for c in net["unknown"]]
        mp = net["config"]["method_params"]
        lines += [f"## `{net['checkpoint']}`: {net['method']}, known {net['known']}, unknown {net['unknown']}"
                  + (f" ({', '.join(f'{k} {v}' for k, v in mp.items())})" if mp else ""), "",
                  "| score | all unknowns | " + " | ".join(f"class {c}" for c in cls) + " |",
                  "|---|---|" + "---|" * len(cls)]
        for label, r in net["auroc"].items():
            lines.append(f"| {label} | {r['all']:.4f} | " + " | ".join(f"{r[c]:.4f}" for c in cls) + " |")
        lines.append("")
    lines += [provenance(res), ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", required=True, help="a glob of finished osrkit checkpoints")
    ap.add_argument("--name", required=True, help="results/<name>.{json,md}")
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--allow-reported", action="store_true", help="also look at checkpoints of reported splits")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    nets = []
    for p in finished_checkpoints(args.checkpoints, args.allow_reported):
        nets.append(per_class(p, args.data_root))
        print(nets[-1]["checkpoint"], {k: round(v["all"], 4) for k, v in nets[-1]["auroc"].items()}, flush=True)
    res = header() | {"networks": nets}
    write(args.name, res, render(res))
    print(render(res))


if __name__ == "__main__":
    main()
