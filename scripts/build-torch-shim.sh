#!/usr/bin/env bash
# Builds libcapfilt_torch.so, the only library package torch links, against a libtorch.
#
#   scripts/build-torch-shim.sh                 # Debian's libtorch-dev (system paths)
#   LIBTORCH=/opt/libtorch scripts/build-torch-shim.sh
#   LIBTORCH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))') scripts/build-torch-shim.sh
#
# LIBTORCH must hold include/ and lib/. OUT (default build/) receives the library; the Go
# binary finds it next to itself, in ../build, or through LD_LIBRARY_PATH, so a binary
# built elsewhere runs unchanged against a shim rebuilt here for this machine's libtorch.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
src="$root/torch/csrc"
out=${OUT:-$root/build}
cxx=${CXX:-g++}
mkdir -p "$out"

if [[ -n "${LIBTORCH:-}" ]]; then
  inc=(-I"$LIBTORCH/include" -I"$LIBTORCH/include/torch/csrc/api/include")
  libdir="$LIBTORCH/lib"
else
  inc=(-I/usr/include/torch/csrc/api/include)
  libdir=$(dirname "$(ls /usr/lib/*/libtorch_cpu.so /usr/lib/libtorch_cpu.so 2>/dev/null | head -1)")
  [[ -n "$libdir" && -d "$libdir" ]] || { echo "build-torch-shim: no libtorch found (install libtorch-dev or set LIBTORCH)" >&2; exit 1; }
fi
[[ -e "$libdir/libtorch_cpu.so" ]] || { echo "build-torch-shim: $libdir has no libtorch_cpu.so" >&2; exit 1; }

libs=(-ltorch -ltorch_cpu -lc10)
defs=()
# A CUDA libtorch ships libc10_cuda; then the shim reports devices and memory.
if [[ -e "$libdir/libc10_cuda.so" ]]; then
  defs+=(-DCAPFILT_WITH_CUDA)
  libs+=(-ltorch_cuda -lc10_cuda)
  # CUDA runtime headers and library: a CUDA toolkit, or the nvidia-* wheels beside torch
  # (which ship only the versioned libcudart.so.N, hence -l:NAME).
  cudart=""
  for d in "${CUDA_HOME:-/usr/local/cuda}" "${LIBTORCH:-/nonexistent}/../nvidia/cuda_runtime"; do
    if [[ -e "$d/include/cuda_runtime_api.h" ]]; then
      inc+=(-I"$d/include")
      for l in "$d/lib64" "$d/lib"; do
        [[ -d "$l" ]] || continue
        libs+=(-L"$l" -Wl,-rpath,"$l")
        [[ -n "$cudart" ]] || cudart=$(cd "$l" && ls libcudart.so libcudart.so.* 2>/dev/null | head -1)
      done
      break
    fi
  done
  [[ -n "$cudart" ]] || { echo "build-torch-shim: CUDA libtorch but no CUDA runtime found (set CUDA_HOME)" >&2; exit 1; }
  libs+=(-l:"$cudart")
fi

# torch/csrc/dist.cpp includes c10d's ProcessGroupGloo.hpp, which includes Gloo's headers:
# Debian ships them apart from libtorch-dev (libgloo-dev); a pip wheel has them in include/.
if [[ ! -e "${LIBTORCH:-/nonexistent}/include/gloo/context.h" && ! -e /usr/include/gloo/context.h ]]; then
  echo "build-torch-shim: no Gloo headers (gloo/context.h): install libgloo-dev" >&2; exit 1
fi
# ProcessGroupNCCL only where the CUDA libtorch has it: its header is compiled only under
# USE_C10D_NCCL and needs nccl.h (a CUDA toolkit, or the nvidia-nccl wheel beside torch).
if [[ " ${defs[*]} " == *" -DCAPFILT_WITH_CUDA "* ]] && nm -DC "$libdir/libtorch_cuda.so" 2>/dev/null | grep -q "c10d::ProcessGroupNCCL::ProcessGroupNCCL("; then
  for d in "${CUDA_HOME:-/usr/local/cuda}/include" "${LIBTORCH:-/nonexistent}/../nvidia/nccl/include" /usr/include; do
    if [[ -e "$d/nccl.h" ]]; then
      defs+=(-DCAPFILT_WITH_NCCL -DUSE_C10D_NCCL)
      inc+=(-I"$d")
      break
    fi
  done
fi

# libtorch 1.13 and pip wheels before 2.? are built with the old C++ ABI; follow libtorch.
abi=1
if nm -DC "$libdir/libc10.so" 2>/dev/null | grep -q "c10::Error::Error(c10::SourceLocation, std::string)"; then abi=0; fi
if [[ -n "${CAPFILT_CXX11_ABI:-}" ]]; then abi=$CAPFILT_CXX11_ABI; fi

flags=(-std=c++17 -O2 -fPIC -Wall -Wno-unused-parameter -D_GLIBCXX_USE_CXX11_ABI=$abi "${defs[@]}" "${inc[@]}")
objs=()
pids=()
for f in "$src"/*.cpp; do
  o="$out/$(basename "${f%.cpp}").o"
  objs+=("$o")
  stale=0
  for dep in "$f" "$src"/*.h "$0"; do [[ "$dep" -nt "$o" ]] && stale=1; done
  if [[ ! -e "$o" || $stale == 1 ]]; then
    "$cxx" "${flags[@]}" -c "$f" -o "$o" &
    pids+=($!)
  fi
done
for p in "${pids[@]}"; do wait "$p"; done
"$cxx" -shared -o "$out/libcapfilt_torch.so" "${objs[@]}" -L"$libdir" -Wl,-rpath,"$libdir" \
  -Wl,--no-as-needed "${libs[@]}" -Wl,--as-needed -Wl,-soname,libcapfilt_torch.so
echo "built $out/libcapfilt_torch.so against $libdir"
