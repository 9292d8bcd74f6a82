#!/usr/bin/env bash
# Packs into .gpu/ (git-ignored) what a lent GPU machine needs to run flowforge's GPU checks
# and workloads; benches/gpu_run.sh runs them there.
#
# That machine has no Rust toolchain and no network, so the programs travel already built:
# - the cross-backend test (tests/backends.rs) and the workloads bench (benches/workloads.rs),
#   built here with the `wgpu` feature (CI's feature set: nothing of burn is rebuilt), stripped
#   and xz-compressed (about 10 MB each);
# - the kernels' unit tests (flowforge-kernels, `flex`): that machine's CPU may have AVX-512,
#   whose micro-kernels no CI machine runs;
# - Debian's Vulkan loader (libvulkan1), which wgpu opens and the NVIDIA driver's ICD plugs into;
# - PyTorch's side of the workloads (../shared/bench/torch_baseline.py), where this checkout has
#   it: that machine's PyTorch runs W0 and W3 on the same two cores as flex.
#
# The binaries need glibc 2.35 or newer there (built on Debian 12; checked with objdump -T).
#
# Then, with the device tool: carry [".gpu"], command `bash benches/gpu_run.sh`.
#
# Why wgpu and not `--features cuda`: burn 0.22.1's CUDA backend (cubecl-cuda 0.11.3) builds
# cubecl-llvm with `nvptx`, whose build script downloads an LLVM bundle (tracel-llvm-bundler);
# neither this machine nor the GPU machine can reach the network.
set -euo pipefail
cd "$(dirname "$0")/.."
kit=.gpu
rm -rf "$kit"
mkdir -p "$kit/deb"
executable() { sed -n 's/^ *Executable .* (\(.*\))$/\1/p' | tail -1; }
backends=$(cargo test --features wgpu --test backends --no-run 2>&1 | tee /dev/stderr | executable)
workloads=$(cargo bench --profile dev --bench workloads --features wgpu --no-run 2>&1 | tee /dev/stderr | executable)
kernels=$(cargo test -p flowforge-kernels --features flex --lib --no-run 2>&1 | tee /dev/stderr | executable)
for pair in "backends:$backends" "workloads:$workloads" "kernels:$kernels"; do
    name=${pair%%:*}
    strip -o "$kit/$name" "${pair#*:}"
    xz -T0 -6 "$kit/$name"
done
(cd "$kit/deb" && apt-get download libvulkan1)
if [ -f ../shared/bench/torch_baseline.py ]; then cp ../shared/bench/torch_baseline.py "$kit/"; fi
git rev-parse HEAD > "$kit/commit"
ls -l "$kit" "$kit/deb"
du -sh "$kit"
