"""Precision and memory format: what `auto` resolves to, fp32 heads under bf16 autocast, configs and checkpoints."""

from __future__ import annotations

import os

import pytest
import torch

from osrkit.data.tasks import make_task
from osrkit.engine import precision as P
from osrkit.engine.checkpoint import load_checkpoint
from osrkit.engine.config import TrainConfig
from osrkit.engine.pipeline import evaluate, fit_method, load_trained
from osrkit.engine.train import param_groups, same_config
from osrkit.methods import default_config
from osrkit.models import create_model


@pytest.mark.parametrize("native", [True, False])
def test_auto_resolves_by_native_bf16(monkeypatch, native: bool) -> None:
    monkeypatch.setattr(P, "native_bf16", lambda device="cpu": native)
    assert P.resolve_precision("auto") == ("bf16" if native else "fp32")
    assert P.resolve_memory_format("auto") == ("channels_last" if native else "contiguous")
    # explicit choices are kept whatever the device
    assert P.resolve_precision("fp32") == "fp32" and P.resolve_precision("bf16") == "bf16"
    assert P.resolve_memory_format("contiguous") == "contiguous"
    cfg = TrainConfig().resolved("cpu")
    assert (cfg.precision, cfg.memory_format) == (("bf16", "channels_last") if native else ("fp32", "contiguous"))


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="the kernel's CPU flags are Linux's /proc/cpuinfo")
def test_native_bf16_matches_cpu_flags() -> None:
    flags = open("/proc/cpuinfo").read()
    has = " avx512_bf16" in flags or " amx_tile" in flags or " amx_bf16" in flags
    assert P.native_bf16("cpu") == has


@pytest.mark.parametrize("flags, native", [("fpu avx2 avx512f avx512_bf16 sse", True), ("fpu amx_tile", True),
                                           ("fpu avx2 avx512f avx512bw", False), (None, False)])
def test_native_bf16_reads_the_flags_line_where_torch_has_no_probe(tmp_path, monkeypatch, flags, native) -> None:
    """torch 2.14 has no torch._C._cpu probes: the flags line of /proc/cpuinfo decides (no file: fp32)."""
    info = tmp_path / "cpuinfo"
    if flags is not None:
        info.write_text(f"processor\t: 0\nmodel name\t: x\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    monkeypatch.delattr(P.torch.cpu, "get_capabilities", raising=False)
    monkeypatch.setattr(P.torch._C, "_cpu", None, raising=False)
    monkeypatch.setattr(P, "CPUINFO", str(info))
    assert P.native_bf16("cpu") is native


@pytest.mark.parametrize("caps, native", [({"avx512_bf16": True, "amx_bf16": False}, True),
                                          ({"avx512_bf16": False, "amx_tile": True}, True),
                                          ({"avx512_bf16": False, "avx512_f": True, "avx2": True}, False)])
def test_native_bf16_asks_torch_cpu_capabilities_first(tmp_path, monkeypatch, caps, native) -> None:
    """torch.cpu.get_capabilities() decides where it exists (every platform), whatever /proc/cpuinfo says."""
    monkeypatch.setattr(P.torch.cpu, "get_capabilities", lambda: caps, raising=False)
    info = tmp_path / "cpuinfo"
    info.write_text(f"flags\t\t: fpu {'avx2' if native else 'avx512_bf16'}\n")
    monkeypatch.setattr(P, "CPUINFO", str(info))
    assert P.native_bf16("cpu") is native


def test_memory_format_converts_four_d_weights_both_ways() -> None:
    model = create_model("vgg32-lite", num_classes=3, in_channels=1)
    conv = next(p for p in model.parameters() if p.dim() == 4 and p.shape[1] > 1)  # (1-channel: both layouts agree)
    P.apply_memory_format(model, "channels_last")
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    P.apply_memory_format(model, "contiguous")
    assert conv.is_contiguous() and any(p is conv for p in model.parameters())  # the same Parameter, re-laid


def test_bad_values_are_named() -> None:
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp16")
    with pytest.raises(ValueError, match="memory_format"):
        TrainConfig(memory_format="nhwc")
    with pytest.raises(ValueError, match="precision"):
        P.resolve_precision("half")
    with pytest.raises(ValueError, match="resolved"):
        P.autocast("auto")


def test_legacy_config_reads_as_what_it_ran() -> None:
    old = {k: v for k, v in TrainConfig().to_dict().items() if k not in ("precision", "memory_format", "weight_decay_on")}
    cfg = TrainConfig.from_dict({**old, "channels_last": False})
    assert (cfg.precision, cfg.memory_format, cfg.weight_decay_on) == ("fp32", "contiguous", "all")
    assert TrainConfig.from_dict({**old, "channels_last": True}).memory_format == "channels_last"
    # an old checkpoint's config resumes under the same explicit settings, not under another precision
    current = TrainConfig(precision="fp32", memory_format="contiguous").to_dict()
    assert same_config({**old, "channels_last": False}, current)
    assert not same_config({**old, "channels_last": False}, TrainConfig(precision="bf16").to_dict())


def test_fp32_head_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    model = create_model("vgg32-lite", num_classes=4, in_channels=1, image_size=32).eval()
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        ref = model(x)
        with P.autocast("bf16", "cpu"):
            out = model(x)
            raw = torch.nn.Linear(8, 2)(torch.randn(2, 8))  # a plain layer under autocast does run in bf16
    assert raw.dtype == torch.bfloat16
    assert out.logits.dtype == torch.float32  # the head ran in fp32
    assert out.embedding.dtype == torch.bfloat16  # the body in bf16
    # bf16 body: close to fp32, not equal
    assert torch.allclose(out.logits, ref.logits, atol=0.1 * float(ref.logits.abs().max()) + 1e-3)
    up = P.outputs_fp32(out)
    assert up.embedding.dtype == torch.float32 and up.logits.dtype == torch.float32


def test_memory_format_conversion() -> None:
    x = torch.randn(2, 3, 8, 8)
    assert P.to_memory_format(x, "channels_last").is_contiguous(memory_format=torch.channels_last)
    assert P.to_memory_format(x, "contiguous") is x
    conv = P.apply_memory_format(torch.nn.Conv2d(3, 4, 3), "channels_last")
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.fixture(scope="module")
def digits():
    return make_task("digits", 0)


def test_bf16_training_records_precision_and_stays_close(digits, tmp_path) -> None:
    base = default_config("softmax", "digits").replace(epochs=4)
    fp = fit_method("softmax", digits, base.replace(precision="fp32", memory_format="contiguous"), progress=False)
    bf = fit_method("softmax", digits, base.replace(precision="bf16", memory_format="channels_last"),
                    checkpoint=tmp_path / "bf.pt", progress=False)
    state = load_checkpoint(tmp_path / "bf.pt")
    assert state["config"]["precision"] == "bf16" and state["config"]["memory_format"] == "channels_last"
    assert state["osrkit_config"]["precision"] == "bf16"
    a, b = evaluate(fp, digits), evaluate(bf, digits)
    assert a["accuracy"] > 0.9 and b["accuracy"] > 0.9
    assert abs(a["auroc"] - b["auroc"]) < 0.05
    # a reloaded checkpoint evaluates at its own precision and gives the same numbers
    again = evaluate(load_trained(tmp_path / "bf.pt"), digits)
    assert again["auroc"] == pytest.approx(b["auroc"], abs=1e-12)


def test_auto_config_is_stored_resolved(digits, tmp_path) -> None:
    cfg = default_config("softmax", "digits").replace(epochs=1)
    assert cfg.precision == "auto"
    fit_method("softmax", digits, cfg, checkpoint=tmp_path / "a.pt", progress=False)
    saved = load_checkpoint(tmp_path / "a.pt")["config"]
    assert saved["precision"] == P.resolve_precision("auto")
    assert saved["memory_format"] == P.resolve_memory_format("auto")


def test_param_groups_exempt_biases_norms_and_prototypes() -> None:
    model = create_model("small", num_classes=3, in_channels=1, image_size=8, classifier="cosine", neck=16)
    groups = param_groups([model], TrainConfig(weight_decay_on="weights"))
    decay = {id(p) for p in groups[0]["params"]}
    no_decay = {id(p) for p in groups[1]["params"]}
    assert groups[1]["weight_decay"] == 0.0 and "weight_decay" not in groups[0]
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[i] for i in decay} == {"features.0.weight", "features.3.weight", "features.7.weight", "neck.0.weight"}
    assert names[id(model.classifier.weight)] in {names[i] for i in no_decay}
    assert len(decay) + len(no_decay) == len(list(model.parameters()))
    assert len(param_groups([model], TrainConfig())) == 1
    # the optimizer applies it: one SGD step with zero gradients moves only the decayed weights
    opt = torch.optim.SGD(groups, lr=0.1, weight_decay=0.5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in model.named_parameters():
        moved = not torch.equal(before[n], p.detach())
        assert moved == (id(p) in decay) or bool((before[n] == 0).all()), n
