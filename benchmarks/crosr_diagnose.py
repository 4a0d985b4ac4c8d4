"""Why protocol A falls short on MNIST-noise and Noise: diagnostics on the protocol A networks.

    python benchmarks/crosr_diagnose.py

Loads the two networks `benchmarks/crosr_protocol_a.py` trained (CE `vgg32-lite` and DHRNet, both
under runs/bench-crosr-a/) and, for MNIST test and each outlier set, reports:

* what the network does with the outliers: mean max logit, MSP, joint-vector norm, the share of
  outliers put in the single most common class, reconstruction error (DHRNet);
* AUROC and macro-F1 (threshold rejecting 10% of validation knowns) of detector variants: MSP,
  OpenMax on the logits (eucos / euclidean), CROSR on [logits, latents] with average- or max-pooled
  latents, OpenMax on the latents alone, and the reconstruction error;
* the two F1 reference points: rejecting nothing, and a perfect detector with the same 10% known
  rejection, so the paper's numbers can be read against them.

Writes benchmarks/results/crosr_diagnose.{json,md}.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, header, write  # noqa: E402

from osrkit import metrics as M  # noqa: E402
from osrkit.data.tasks import make_task  # noqa: E402
from osrkit.data.transforms import normalize  # noqa: E402
from osrkit.engine.pipeline import load_trained  # noqa: E402
from osrkit.scores.crosr import JointScaler  # noqa: E402
from osrkit.scores.openmax import OpenMax  # noqa: E402

OUTLIERS = ("omniglot", "mnist-noise", "noise")


@torch.no_grad()
def collect(model: torch.nn.Module, images: torch.Tensor, mean, std, batch_size: int = 500) -> dict[str, torch.Tensor]:
    """Logits, avg/max-pooled latents and per-sample reconstruction MSE (the last three for DHRNet)."""
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(images), batch_size):
        x = normalize(images[i:i + batch_size], mean, std)
        out = model(x)
        got = {"logits": out.logits.double()}
        extras = out.extras or {}
        if "latent_maps" in extras:
            got["z_avg"] = torch.cat([z.mean(dim=(2, 3)) for z in extras["latent_maps"]], 1).double()
            got["z_max"] = torch.cat([z.amax(dim=(2, 3)) for z in extras["latent_maps"]], 1).double()
            got["recon"] = ((extras["reconstruction"] - x) ** 2).flatten(1).mean(1).double()
        for k, v in got.items():
            parts.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in parts.items()}


def f1_at(kp, ks, up, us, labels, threshold, k) -> float:
    return M.open_set_f1(np.concatenate([kp, up]), np.concatenate([labels, -np.ones(len(up), int)]),
                         np.concatenate([ks, us]), threshold, num_classes=k)


def detectors(train: dict, labels: torch.Tensor, dhrnet: bool) -> dict[str, callable]:
    """name -> function(outputs dict) -> (unknown scores, predictions), each fitted on the training outputs."""
    def msp(o):
        p = o["logits"].softmax(1)
        return 1 - p.max(1).values, p.argmax(1)

    def openmax(distance, feat=None):
        om = OpenMax(tailsize=20, alpha=None if dhrnet else 10, distance=distance)
        om.fit(train["logits"], labels, features=None if feat is None else feat(train))
        return lambda o: tuple(om.score(o["logits"], None if feat is None else feat(o)))

    out = {"MSP": msp, "OpenMax eucos (logits)": openmax("eucos"),
           "OpenMax euclidean (logits)": openmax("euclidean")}
    if dhrnet:
        out["CROSR [y, z avg] euclidean"] = openmax("euclidean", lambda o: torch.cat([o["logits"], o["z_avg"]], 1))
        out["CROSR [y, z max] euclidean"] = openmax("euclidean", lambda o: torch.cat([o["logits"], o["z_max"]], 1))
        out["CROSR [y, z avg] eucos"] = openmax("eucos", lambda o: torch.cat([o["logits"], o["z_avg"]], 1))
        for how in ("block", "standardize"):
            for pool in ("avg", "max"):
                cat = lambda o, pool=pool: torch.cat([o["logits"], o[f"z_{pool}"]], 1)  # noqa: E731
                sc = JointScaler(how, num_logits=train["logits"].shape[1]).fit(cat(train))
                out[f"CROSR [y, z {pool}] euclidean, joint_scale={how}"] = openmax(
                    "euclidean", lambda o, cat=cat, sc=sc: sc.transform(cat(o)))
        out["OpenMax on z max only"] = openmax("euclidean", lambda o: o["z_max"])
        out["reconstruction MSE"] = lambda o: (o["recon"], o["logits"].argmax(1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default="runs/bench-crosr-a")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--render-only", action="store_true", help="rebuild the Markdown from results/crosr_diagnose.json")
    args = ap.parse_args()
    if args.render_only:
        saved = json.loads((RESULTS / "crosr_diagnose.json").read_text())
        write("crosr_diagnose", saved, render(saved["behaviour"], saved["scores"], saved))
        return
    torch.set_num_threads(args.threads)
    tasks = {o: make_task("mnist", split=None, outlier=o, data_root=args.data_root, image_size=28) for o in OUTLIERS}
    base = tasks[OUTLIERS[0]]
    nets = {"CE vgg32-lite": f"softmax-vgg32-lite-e{args.epochs}-s28.pt", "DHRNet": f"crosr-dhrnet-e{args.epochs}-s28.pt"}
    behaviour, scores = [], []
    for net, fname in nets.items():
        trained = load_trained(Path(args.run_dir) / fname)
        model, dh = trained.model, net == "DHRNet"
        run = lambda imgs: collect(model, imgs, base.mean, base.std)  # noqa: E731
        train, val, test = run(base.train_x), run(base.val_x), run(base.test_x)
        sets = {"MNIST test": test, **{o: run(t.unknown_x) for o, t in tasks.items()}}
        for name, o in sets.items():
            lg = o["logits"]
            pred = lg.argmax(1)
            row = {"network": net, "set": name, "max_logit": float(lg.max(1).values.mean()),
                   "msp": float(lg.softmax(1).max(1).values.mean()),
                   "top_class_share": float(torch.bincount(pred, minlength=10).max() / len(pred)),
                   "logit_norm": float(lg.norm(dim=1).mean())}
            if dh:
                row.update(z_avg_norm=float(o["z_avg"].norm(dim=1).mean()), z_max_norm=float(o["z_max"].norm(dim=1).mean()),
                           recon_mse=float(o["recon"].mean()))
            behaviour.append(row)
        labels_test = base.test_y.numpy()
        for det, fn in detectors(train, base.train_y, dh).items():
            thr = M.threshold_at_known_rejection(fn(val)[0].numpy(), 0.1)
            ks, kp = (t.numpy() for t in fn(test))
            for o in OUTLIERS:
                us, up = (t.numpy() for t in fn(sets[o]))
                scores.append({"network": net, "detector": det, "outlier": o, "auroc": M.auroc(ks, us),
                               "f1": f1_at(kp, ks, up, us, labels_test, thr, 10),
                               "f1_reject_none": f1_at(kp, ks, up, us, labels_test, float(max(ks.max(), us.max())) + 1, 10),
                               "f1_perfect": f1_at(kp, ks, up, np.full(len(us), thr + 1.0), labels_test, thr, 10)})
                print(f"{net:14s} {det:30s} {o:12s} AUROC={scores[-1]['auroc']:.3f} F1={scores[-1]['f1']:.3f}", flush=True)
    h = header()
    write("crosr_diagnose", {**h, "behaviour": behaviour, "scores": scores}, render(behaviour, scores, h))


def render(behaviour: list[dict], scores: list[dict], h: dict) -> str:
    """The Markdown report: behaviour table, detector table, findings."""
    nets = list(dict.fromkeys(r["network"] for r in scores))
    md = ["# CROSR protocol A diagnostics: what the networks do with the outliers", "",
          "Networks from `benchmarks/crosr_protocol_a.py` (2 epochs, fast recipe). Means over each set (10,000 images).", "",
          "| network | set | max logit | MSP | share in top class | ‖logits‖ | ‖z avg‖ | ‖z max‖ | recon MSE |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in behaviour:
        md.append(f"| {r['network']} | {r['set']} | {r['max_logit']:.2f} | {r['msp']:.4f} | {r['top_class_share']:.3f} | "
                  f"{r['logit_norm']:.2f} | " + " | ".join(f"{r[k]:.3f}" if k in r else "" for k in ("z_avg_norm", "z_max_norm", "recon_mse")) + " |")
    md += ["", "Detector variants: AUROC / macro-F1 (threshold rejects 10% of validation knowns). "
           "F1 reference points per network: 'reject none' (no sample called unknown) and 'perfect' "
           "(every outlier rejected, 10% of knowns rejected by the threshold).", "",
           "| network | detector | " + " | ".join(f"{o} AUROC | {o} F1" for o in OUTLIERS) + " |",
           "|---|---|" + "---|---|" * len(OUTLIERS)]
    for net in nets:
        for det in dict.fromkeys(r["detector"] for r in scores if r["network"] == net):
            sel = {r["outlier"]: r for r in scores if r["network"] == net and r["detector"] == det}
            md.append(f"| {net} | {det} | " + " | ".join(f"{sel[o]['auroc']:.3f} | {sel[o]['f1']:.3f}" for o in OUTLIERS) + " |")
        msp = {r["outlier"]: r for r in scores if r["network"] == net and r["detector"] == "MSP"}
        md.append(f"| {net} | *F1 reject none / perfect (MSP threshold)* | " + " | ".join(
            f" | {msp[o]['f1_reject_none']:.3f} / {msp[o]['f1_perfect']:.3f}" for o in OUTLIERS) + " |")
    md += ["", *findings(behaviour, scores)]
    md += ["", f"Command: `{h['command']}`; date {h['date']}; {h['machine']['processor']}, {h['machine']['cpu_count']} cores; "
           f"commit {h['git_commit']}."]
    text = "\n".join(md) + "\n"
    print(text)
    return text


def findings(behaviour: list[dict], scores: list[dict]) -> list[str]:
    """Why protocol A's numbers differ from the paper's, stated from this run's measurements."""
    b = {(r["network"], r["set"]): r for r in behaviour}
    s = {(r["network"], r["detector"], r["outlier"]): r for r in scores}
    ce, dh, noisy = "CE vgg32-lite", "DHRNet", ("mnist-noise", "noise")
    pair = lambda net, det, k="auroc": " / ".join(f"{s[(net, det, o)][k]:.3f}" for o in noisy)  # noqa: E731
    out = ["## Findings (MNIST-noise / Noise unless named)", "",
           f"1. The cross-entropy network is confidently wrong on noise: mean max logit "
           f"{b[(ce, 'mnist-noise')]['max_logit']:.1f} / {b[(ce, 'noise')]['max_logit']:.1f} against "
           f"{b[(ce, 'MNIST test')]['max_logit']:.1f} on MNIST test digits, MSP "
           f"{b[(ce, 'noise')]['msp']:.4f}, and {100 * b[(ce, 'noise')]['top_class_share']:.0f}% of Noise lands in one "
           f"class. So MSP scores AUROC {pair(ce, 'MSP')}, and OpenMax with the paper's eucos distance (which mostly "
           f"ignores the logit magnitude) {pair(ce, 'OpenMax eucos (logits)')}. With the Euclidean distance the same "
           f"logits give {pair(ce, 'OpenMax euclidean (logits)')}: the information is there, the distance discards it.",
           f"2. DHRNet's latents and reconstruction separate noise: OpenMax on the latents alone "
           f"{pair(dh, 'OpenMax on z max only')}, reconstruction MSE {pair(dh, 'reconstruction MSE')}. But in the "
           f"paper's joint vector [y, z] the logits dominate the Euclidean distance (mean ||y|| "
           f"{b[(dh, 'MNIST test')]['logit_norm']:.1f} against ||z avg|| {b[(dh, 'MNIST test')]['z_avg_norm']:.1f} "
           f"on MNIST test), so CROSR ({pair(dh, 'CROSR [y, z avg] euclidean')}) equals logits-only OpenMax "
           f"({pair(dh, 'OpenMax euclidean (logits)')}).",
           f"3. Rescaling the joint vector (`--param joint_scale=...`, an osrkit option, not the paper): "
           f"standardize (every dimension z-scored on the training vectors) gives "
           f"{pair(dh, 'CROSR [y, z avg] euclidean, joint_scale=standardize')}, F1 "
           f"{pair(dh, 'CROSR [y, z avg] euclidean, joint_scale=standardize', 'f1')}, and Omniglot AUROC "
           f"{s[(dh, 'CROSR [y, z avg] euclidean, joint_scale=standardize', 'omniglot')]['auroc']:.3f} against "
           f"{s[(dh, 'CROSR [y, z avg] euclidean', 'omniglot')]['auroc']:.3f} raw (average-pooled latents). "
           f"block (logits and latents each divided by their mean training norm) is not enough: "
           f"{pair(dh, 'CROSR [y, z avg] euclidean, joint_scale=block')} (why block falls short was not "
           f"investigated further).",
           f"4. F1 depends on the threshold rule, AUROC does not. Rejecting nothing scores F1 "
           f"{pair(ce, 'MSP', 'f1_reject_none')} here, the paper's CROSR row is 0.827 / 0.826: the paper's rule "
           f"evidently rejects almost no knowns. Ours rejects 10% of validation knowns (the follow-ups' rule), "
           f"which costs about 0.04 F1 when nothing is detected and allows up to "
           f"{s[(ce, 'MSP', 'noise')]['f1_perfect']:.3f} with a perfect detector. Compare AUROC across papers, and F1 "
           f"only under one threshold rule.",
           "5. Not tested here: the paper's longer schedule. These networks train 2 epochs (osrkit's short CPU "
           "recipe); whether longer training changes finding 1 is open."]
    return out


if __name__ == "__main__":
    main()
