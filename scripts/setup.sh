#!/usr/bin/env bash
# Installs what this machine lacks for capfilt and builds it. Idempotent; safe to rerun.
#   - Debian packages: libtorch-dev (libtorch 1.13, CPU), libgloo-dev (the Gloo headers c10d's
#     ProcessGroupGloo.hpp includes; libtorch-dev lacks them) and libopenblas0-pthread
#     (without OpenBLAS libtorch's matmul is ~14x slower), plus the C++ toolchain;
#   - checks that the BLAS libtorch will load is OpenBLAS, and fails loudly if not;
#   - builds build/libcapfilt_torch.so (scripts/build-torch-shim.sh) and bin/capfilt.
# Nothing is downloaded outside the package managers (apt, the Go module proxy).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

command -v go >/dev/null || die "Go is not installed (capfilt needs Go 1.26 or newer on PATH)"

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || die "not root and no sudo: run as root to install packages"
  sudo=(sudo)
fi

pkgs=(libtorch-dev libgloo-dev libopenblas0-pthread g++ make git ca-certificates)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "packages present: ${pkgs[*]}"
fi

# The BLAS libtorch resolves through the libblas.so.3 alternative.
multiarch=$(gcc -print-multiarch 2>/dev/null || dpkg-architecture -qDEB_HOST_MULTIARCH)
torchlib=/usr/lib/$multiarch/libtorch_cpu.so
[[ -e $torchlib ]] || die "$torchlib missing after installing libtorch-dev"
blas_in_use() { readlink -f "$(ldd "$torchlib" | awk '/libblas\.so/ {print $3; exit}')"; }
blas=$(blas_in_use)
if [[ $blas != *openblas* ]]; then
  openblas=/usr/lib/$multiarch/openblas-pthread/libblas.so.3
  log "libtorch would load $blas; switching the libblas.so.3 alternative to OpenBLAS"
  [[ -e $openblas ]] && "${sudo[@]}" update-alternatives --set "libblas.so.3-$multiarch" "$openblas" >/dev/null || true
  blas=$(blas_in_use)
fi
[[ $blas == *openblas* ]] || die "libtorch loads BLAS from '$blas', not OpenBLAS: matmuls would be ~14x slower.
  Install libopenblas0-pthread and select it: update-alternatives --config libblas.so.3-$multiarch"
log "libtorch's BLAS: $blas"

go mod download
log "building the libtorch shim"
scripts/build-torch-shim.sh
log "building bin/capfilt"
make --no-print-directory build-go
./bin/capfilt version >/dev/null || die "bin/capfilt version failed"
./bin/capfilt version --json | grep -q '"library": ".*openblas' || die "bin/capfilt does not see OpenBLAS at run time"
log "done: $(./bin/capfilt version | head -1)"
