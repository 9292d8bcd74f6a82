#!/usr/bin/env bash
# flowforge's workloads bench and the PyTorch baseline, interleaved, on this machine.
#
#   bash benches/side_by_side.sh [passes=2] [workload ...]
#
# For each pass and each workload it runs `torch_baseline.py --only W` and then flowforge's
# `workloads --only W`, so both see the same machine state, and appends every JSON line to
# target/side_by_side.jsonl; then it prints the comparison table (benches/side_by_side.py).
#
# PyTorch comes from a virtualenv with ../shared/bench/requirements.txt (torch 2.15 and its
# dependencies, ~6 GB), made on first use at $FLOWFORGE_TORCH_VENV
# (default ~/.cache/flowforge/torch-venv). Nothing here is part of the test suite or CI.
set -euo pipefail
cd "$(dirname "$0")/.."

passes="${1:-2}"
shift || true
workloads=("$@")
if [ ${#workloads[@]} -eq 0 ]; then
  workloads=(gemm_peak cfm_moons ddpm_moons mlp_step_micro unet_digits_step)
fi

bench_dir="$(cd .. && pwd)/shared/bench"
venv="${FLOWFORGE_TORCH_VENV:-$HOME/.cache/flowforge/torch-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$bench_dir/requirements.txt"
fi

bin="$(cargo bench --profile dev --bench workloads --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "workloads" and m.get("executable"):
        print(m["executable"])' | tail -n 1)"

out="target/side_by_side.jsonl"
: > "$out"
for pass in $(seq 1 "$passes"); do
  for w in "${workloads[@]}"; do
    echo "pass $pass: $w (PyTorch)" >&2
    "$venv/bin/python" "$bench_dir/torch_baseline.py" --only "$w" --out /dev/null \
      | grep '^{' | tail -n 1 | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); r["side"]="torch"; r["pass"]='"$pass"'; print(json.dumps(r))' >> "$out"
    echo "pass $pass: $w (flowforge)" >&2
    "$bin" --only "$w" --seed $((pass - 1)) 2>/dev/null \
      | grep '^{' | tail -n 1 | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); r["side"]="flowforge"; r["pass"]='"$pass"'; print(json.dumps(r))' >> "$out"
  done
done
python3 benches/side_by_side.py "$out"
