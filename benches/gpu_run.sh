#!/usr/bin/env bash
# Runs on a lent GPU machine, from the repository root, with the .gpu/ folder that
# benches/gpu_kit.sh packs carried along. Two tracks run at once, each pinned to its own CPU
# cores, so that one lease of a few minutes holds everything:
# - GPU track: the cross-backend test on the GPU through wgpu (Vulkan on the NVIDIA driver),
#   then each workload on wgpu, one JSON line each (gpu.jsonl);
# - CPU track: the kernels' unit tests on that machine's CPU (its AVX-512 micro-kernels, if it
#   has them), then W0 and W3 on flex with two threads, alternating with PyTorch's own
#   torch_baseline.py on the same two cores when the kit carries it (cpu.jsonl): a side by side
#   on a second kind of CPU.
# Everything is written under $OUT (the device tool brings that folder back).
# FLOWFORGE_GPU_BUDGET: seconds for the whole script (default 500); no step starts later, and
# each step is cut at that deadline.
set -uo pipefail
budget=${FLOWFORGE_GPU_BUDGET:-500}
deadline=$(($(date +%s) + budget))
out=${OUT:-/tmp/flowforge-gpu}
mkdir -p "$out"

# `within LIMIT COMMAND...`: COMMAND for at most LIMIT seconds, and never past the deadline.
within() {
    local limit=$1 left
    shift
    left=$((deadline - $(date +%s)))
    if [ "$left" -lt 15 ]; then
        echo "skipped, deadline: $*"
        return 124
    fi
    if [ "$limit" -gt "$left" ]; then limit=$left; fi
    timeout "$limit" "$@"
}

{
    echo "kit built at commit $(cat .gpu/commit)"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
    grep -m1 'model name' /proc/cpuinfo
    echo "CPU: $(nproc) threads; AVX-512F: $(grep -qw avx512f /proc/cpuinfo && echo yes || echo no)"
    python3 -c 'import torch; print("torch", torch.__version__, torch.backends.cpu.get_cpu_capability())' 2>&1 || true
} > "$out/machine.txt" 2>&1
cat "$out/machine.txt"

for f in .gpu/deb/*.deb; do dpkg -x "$f" /; done
ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$icd" ]; then export VK_DRIVER_FILES=$icd; fi
# The bundled data sets (W4's digits) from this copy of the repository, not from the path
# compiled into the binaries.
export FLOWFORGE_DATA_DIR=$PWD/data
for name in backends workloads kernels; do
    # xz where it is installed, Python's lzma otherwise.
    xz -dkf ".gpu/$name.xz" 2>/dev/null || python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' ".gpu/$name.xz" ".gpu/$name"
    chmod +x ".gpu/$name"
done

# Cores: one group of hyper-thread siblings per physical core. The GPU track gets the first
# half of the cores, the kernels' tests the second half, and the two-thread side by side one
# thread on each of the last two cores (no sibling shared).
mapfile -t cores < <(cat /sys/devices/system/cpu/cpu[0-9]*/topology/thread_siblings_list | sort -n -u)
half=$((${#cores[@]} / 2))
join() { local IFS=,; echo "$*"; }
gpu_cpus=$(join "${cores[@]:0:half}")
test_cpus=$(join "${cores[@]:half}")
if [ "${#cores[@]}" -ge 2 ]; then pair=$(join "${cores[-2]%%[,-]*}" "${cores[-1]%%[,-]*}"); else pair=0; fi
if command -v taskset > /dev/null && [ "${#cores[@]}" -ge 4 ]; then
    on_gpu_cpus=(taskset -c "$gpu_cpus") on_test_cpus=(taskset -c "$test_cpus") on_pair=(taskset -c "$pair")
else
    on_gpu_cpus=() on_test_cpus=() on_pair=()
fi
echo "cores: ${#cores[@]}; GPU track on ${gpu_cpus}; kernels' tests on ${test_cpus}; side by side on ${pair}" | tee -a "$out/machine.txt"

gpu_track() {
    echo "== cross-backend subset: wgpu (the GPU) against flex"
    within 120 "${on_gpu_cpus[@]}" .gpu/backends --test-threads 1 || echo "backends: exit $?"
    echo "== workloads on wgpu"
    for w in gemm_peak mlp_step_micro unet_digits_step cfm_moons ddpm_moons; do
        within 110 "${on_gpu_cpus[@]}" .gpu/workloads --device wgpu --only "$w" | tee -a "$out/gpu.jsonl" || echo "$w: exit $?"
    done
}

cpu_track() {
    echo "== kernels' unit tests on this CPU"
    within 120 "${on_test_cpus[@]}" .gpu/kernels || echo "kernels: exit $?"
    echo "== W0 and W3, two threads on cores ${pair}: flex, then PyTorch"
    for pass in 1 2; do
        for w in gemm_peak mlp_step_micro; do
            within 90 env RAYON_NUM_THREADS=2 "${on_pair[@]}" .gpu/workloads --device flex --only "$w" | tee -a "$out/cpu.jsonl" || echo "$w (flex, pass $pass): exit $?"
            if [ -f .gpu/torch_baseline.py ]; then
                within 90 "${on_pair[@]}" python3 .gpu/torch_baseline.py --only "$w" | tee -a "$out/cpu.jsonl" || echo "$w (torch, pass $pass): exit $?"
            fi
        done
    done
}

gpu_track > "$out/gpu_track.log" 2>&1 &
cpu_track > "$out/cpu_track.log" 2>&1 &
wait
for log in gpu_track cpu_track; do
    echo "######## $log"
    cat "$out/$log.log"
done
