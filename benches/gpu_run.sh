#!/usr/bin/env bash
# Runs on a lent GPU machine, from the repository root, with the .gpu/ folder that
# benches/gpu_kit.sh packs carried along:
# 1. the kernels' unit tests on that machine's CPU (its AVX-512 micro-kernels, if it has them);
# 2. the cross-backend test on the GPU through wgpu (Vulkan on the NVIDIA driver);
# 3. each workload on the GPU, one JSON line each;
# 4. W0 and W3 on the CPU (flex), for that CPU's GEMM and MLP figures.
# Everything it prints is also written under $OUT (the device tool brings that folder back).
# About 10 minutes at most. FLOWFORGE_GPU_TIMEOUT: seconds allowed each workload (default 90).
set -uo pipefail
limit=${FLOWFORGE_GPU_TIMEOUT:-90}
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
grep -m1 'model name' /proc/cpuinfo
echo "CPU: $(nproc) threads; AVX-512F: $(grep -qw avx512f /proc/cpuinfo && echo yes || echo no)"
for name in backends workloads kernels; do
    # xz where it is installed, Python's lzma otherwise.
    xz -dkf ".gpu/$name.xz" 2>/dev/null || python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' ".gpu/$name.xz" ".gpu/$name"
    chmod +x ".gpu/$name"
done
echo "== kernels' unit tests on this CPU"
timeout 120 .gpu/kernels || echo "kernels: exit $?"
echo "== cross-backend subset: wgpu (the GPU) against flex"
timeout 240 .gpu/backends --test-threads 1 || echo "backends: exit $?"
echo "== workloads on wgpu"
for w in gemm_peak cfm_moons ddpm_moons mlp_step_micro unet_digits_step; do
    timeout "$limit" .gpu/workloads --device wgpu --only "$w" | tee -a "$out/workloads.jsonl" || echo "$w: exit $?"
done
echo "== W0 and W3 on this CPU (flex)"
for w in gemm_peak mlp_step_micro; do
    timeout "$limit" .gpu/workloads --device flex --only "$w" | tee -a "$out/workloads.jsonl" || echo "$w (flex): exit $?"
done
