#!/usr/bin/env bash
# Runs on a lent GPU machine, from the repository root, with the .gpu/ folder that
# benches/gpu_kit.sh packs carried along: the cross-backend test on the GPU through wgpu
# (Vulkan on the NVIDIA driver), then each workload on it, one JSON line each. Everything it
# prints is also written under $OUT (the device tool brings that folder back).
# FLOWFORGE_GPU_TIMEOUT: seconds allowed each workload (default 150).
set -uo pipefail
limit=${FLOWFORGE_GPU_TIMEOUT:-150}
out=${OUT:-/tmp/flowforge-gpu}
mkdir -p "$out"
exec > >(tee "$out/gpu_run.log") 2>&1
echo "kit built at commit $(cat .gpu/commit)"
for f in .gpu/deb/*.deb; do dpkg -x "$f" /; done
ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$icd" ]; then export VK_DRIVER_FILES=$icd; fi
# The bundled data sets (W4's digits) from this copy of the repository, not from the path
# compiled into the binaries.
export FLOWFORGE_DATA_DIR=$PWD/data
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
for name in backends workloads; do
    xz -dkf ".gpu/$name.xz"
    chmod +x ".gpu/$name"
done
echo "== cross-backend subset: wgpu (the GPU) against flex"
timeout 240 .gpu/backends --test-threads 1 || echo "backends: exit $?"
echo "== workloads on wgpu"
for w in gemm_peak cfm_moons ddpm_moons mlp_step_micro unet_digits_step; do
    timeout "$limit" .gpu/workloads --device wgpu --only "$w" | tee -a "$out/workloads.jsonl" || echo "$w: exit $?"
done
