#!/usr/bin/env python3
"""The comparison table for benches/side_by_side.sh: flowforge against PyTorch, from one file of
JSON lines (one per workload, side and pass), with the issue's targets.

    python3 benches/side_by_side.py target/side_by_side.jsonl

Medians over the passes, [min-max] beside them. Ratios are speed-ups (> 1: flowforge faster).
W3's GFLOP/s are also given as a share of flowforge's own GEMM peak measured in the same run
(the faster of burn's matmul and flowforge's kernel GEMM).
"""
import json
import statistics
import sys

# (workload, field, what, "time" | "rate" | "quality" | "memory", target)
ROWS = [
    ("gemm_peak", ("flowforge_gflops", "torch_gflops"), "GEMM 1024^3 GFLOP/s, burn matmul", "rate", None),
    ("gemm_peak", ("kernel_gflops", "torch_gflops"), "GEMM 1024^3 GFLOP/s, flowforge kernel", "rate", None),
    ("cfm_moons", "steps_per_s", "W1 train steps/s", "rate", 1.5),
    ("cfm_moons", "euler100_s", "W1 Euler-100, 10k points (s)", "time", 1.5),
    ("cfm_moons", "rk4_25_s", "W1 RK4-25, 10k points (s)", "time", 1.5),
    ("cfm_moons", "euler100_w2", "W1 Euler-100 W2", "quality", 1.15),
    ("cfm_moons", "peak_rss_train_mib", "W1 peak RSS while training (MiB)", "memory", 0.25),
    ("ddpm_moons", "steps_per_s", "W2 train steps/s", "rate", 1.5),
    ("ddpm_moons", "ddpm1000_s", "W2 ancestral-1000 (s)", "time", 1.5),
    ("ddpm_moons", "ddim50_s", "W2 DDIM-50 (s)", "time", 1.5),
    ("ddpm_moons", "ddpm1000_w2", "W2 ancestral-1000 W2", "quality", 1.15),
    ("ddpm_moons", "ddim50_w2", "W2 DDIM-50 W2", "quality", 1.15),
    ("mlp_step_micro", "train_b256_ms", "W3 step, batch 256 (ms)", "time", 1.5),
    ("mlp_step_micro", "train_b4096_ms", "W3 step, batch 4,096 (ms)", "time", None),
    ("mlp_step_micro", "train_b65536_ms", "W3 step, batch 65,536 (ms)", "time", None),
    ("mlp_step_micro", "fwd_b65536_ms", "W3 forward, batch 65,536 (ms)", "time", None),
    ("unet_digits_step", "step_median_ms", "W4 U-Net step, batch 128 (ms)", "time", 1.0),
    ("unet_digits_step", "euler100_256img_s", "W4 Euler-100, 256 images (s)", "time", 1.0),
]
PEAK_SHARE = [("train_b4096_gflops", "W3 step 4,096"), ("train_b65536_gflops", "W3 step 65,536")]


def values(records, side, workload, field):
    return [float(r[field]) for r in records if r.get("side") == side and r.get("workload", workload) == workload and field in r]


def summary(xs):
    if not xs:
        return "-"
    med = statistics.median(xs)
    return f"{med:.4g}" if len(xs) == 1 else f"{med:.4g} [{min(xs):.4g}-{max(xs):.4g}]"


def main(path):
    records = []
    with open(path) as f:
        for line in f:
            if line.strip():
                records.append(json.loads(line))
    # The torch script names its workload in the JSON; flowforge's too. Both carry "side".
    print("| measure | flowforge | PyTorch | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    for workload, field, what, kind, target in ROWS:
        ours_field, theirs_field = field if isinstance(field, tuple) else (field, field)
        ours = values(records, "flowforge", workload, ours_field)
        theirs = values(records, "torch", workload, theirs_field)
        if not ours or not theirs:
            continue
        a, b = statistics.median(ours), statistics.median(theirs)
        if kind == "rate":
            ratio, shown = a / b, f"{a / b:.2f}x"
        elif kind == "time":
            ratio, shown = b / a, f"{b / a:.2f}x"
        elif kind == "quality":
            ratio, shown = a / b, f"{100 * (a / b - 1):+.0f}%"
        else:
            ratio, shown = a / b, f"{100 * a / b:.1f}%"
        if target is None:
            goal, met = "", ""
        elif kind in ("quality", "memory"):
            goal, met = (f"<= +{100 * (target - 1):.0f}%" if kind == "quality" else f"<= {100 * target:.0f}%"), ("yes" if ratio <= target else "NO")
        else:
            goal, met = f">= {target}x", ("yes" if ratio >= target else "NO")
        print(f"| {what} | {summary(ours)} | {summary(theirs)} | {shown} | {goal} | {met} |")
    # The peak is the faster of burn's matmul and the kernel GEMM, per pass.
    peak = [max(a, b) for a, b in zip(values(records, "flowforge", "gemm_peak", "flowforge_gflops"), values(records, "flowforge", "gemm_peak", "kernel_gflops"))] or values(records, "flowforge", "gemm_peak", "flowforge_gflops")
    if peak:
        p = statistics.median(peak)
        for field, what in PEAK_SHARE:
            got = values(records, "flowforge", "mlp_step_micro", field)
            if got:
                share = statistics.median(got) / p
                print(f"| {what}: GFLOP/s / own GEMM peak ({p:.0f}) | {summary(got)} | | {100 * share:.1f}% | >= 70% | {'yes' if share >= 0.7 else 'NO'} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/side_by_side.jsonl")
