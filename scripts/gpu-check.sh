#!/usr/bin/env bash
# gpu-check.sh — capfilt's first GPU check (issue 18, item 3): one run, one results file,
# within 8 minutes, on a machine with an NVIDIA GPU, a pip PyTorch 2.x (its libtorch), g++,
# and transformers, but no Go toolchain.
#
#   here (Go, CPU):   scripts/gpu-check.sh --build       # stripped, xz'd binaries → build/gpu-check/
#   there (the GPU):  scripts/gpu-check.sh [--results FILE]
#   here, to test it: scripts/gpu-check.sh --dry-run     # every step on the CPU, tiny sizes
#
# --build writes build/gpu-check/{capfilt,captioner.test,filter.test}.xz (about 17 MB; with
# the checkout's tracked files under the 64 MiB that may travel; build/ is git-ignored, so
# name build/gpu-check in what carries files over). There the script:
#   1. records the machine (nvidia-smi, torch, transformers) and rebuilds the shim against
#      the pip torch's libtorch (scripts/build-torch-shim.sh); the Go binaries are unchanged;
#   2. runs the captioner's and filter's golden tests on cuda in float32
#      (CAPFILT_TEST_DEVICE=cuda): ids token for token, scores within the CPU tolerances;
#   3. runs `capfilt model forward` on the tiny and base reference inputs in float32 (CPU
#      tolerances: 1e-4 tiny, 1e-3 base) and bfloat16 (BF16_ATOL, measured: see below);
#   4. checks the fused attention is what the shim calls (libtorch ≥ 2) and that PyTorch
#      has a fused kernel for the model's attention shapes and dtypes;
#   5. measures caption + filter images/s (`capfilt bench model --stages whole`, base, random
#      weights) at batch 64, 128 and 256 in float32 and bfloat16, sampling GPU utilisation;
#   6. forces a real out-of-memory: another process holds all but OOM_FREE_GB of the GPU, and
#      `capfilt run --batch-size 512` must split its batches and still finish every shard;
#   7. runs `capfilt run --device cuda` over sample shards;
#   8. compares ITM, ITC and greedy ids with HF transformers on the same random weights.
# Every step has its own time limit and the script stops starting steps when the budget
# (BUDGET_S, 470 s) runs out; the results file says what ran, what passed and what did not.
#
# bfloat16 tolerance: BF16_ATOL = 0.5 on logits and hidden states is a bound stated before
# any GPU has run this (bfloat16 keeps 8 bits of mantissa: about 0.4% of each value, summed
# over 768-wide dot products and 12 layers); it has not been measured. The measured
# differences are written to the results, whatever they are, for docs/performance.md.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
art="$root/build/gpu-check"
results="${OUT:-$root}/gpu-check-results.txt"
dry=0
build=0
BUDGET_S=${BUDGET_S:-470}
BF16_ATOL=${BF16_ATOL:-0.5}
OOM_FREE_GB=${OOM_FREE_GB:-4}
while (($#)); do
  case "$1" in
    --dry-run) dry=1 ;;
    --build) build=1 ;;
    --results) results=$2; shift ;;
    --artifacts) art=$2; shift ;;
    -h|--help) sed -n '2,35p' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if ((build)); then
  command -v go >/dev/null || { echo "gpu-check --build: needs the Go toolchain" >&2; exit 1; }
  mkdir -p "$art"
  flags=(-trimpath -ldflags "-s -w")
  go build "${flags[@]}" -o "$art/capfilt" ./cmd/capfilt || exit 1
  go test -c "${flags[@]}" -o "$art/captioner.test" ./captioner || exit 1
  go test -c "${flags[@]}" -o "$art/filter.test" ./filter || exit 1
  for f in capfilt captioner.test filter.test; do xz -T0 -6 -f "$art/$f" || exit 1; done
  du -ch "$art"/*.xz | tail -1 | sed 's/^/gpu-check: artifacts /'
  ((dry)) || exit 0
fi

start=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
holder=""
cleanup() {
  [[ -n "$holder" ]] && kill "$holder" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$(dirname "$results")"
: >"$results"
failed=0
say() { echo "$*" | tee -a "$results"; }
left() { echo $((BUDGET_S - ($(date +%s) - start))); }

# step NAME LIMIT CMD...: runs CMD with a time limit, its output to the results file.
step() {
  local name=$1 limit=$2
  shift 2
  local l
  l=$(left)
  if ((l < 10)); then
    say "== $name: NOT RUN (time budget spent)"
    failed=1
    return 1
  fi
  ((limit > l)) && limit=$l
  say "== $name (limit ${limit}s)"
  local t0=$(date +%s)
  # timeout runs programs, not shell functions: a function runs in a child bash (it and
  # the variables it reads are exported where it is defined).
  declare -F "$1" >/dev/null && { export -f "$1"; set -- bash -c '"$@"' _ "$@"; }
  timeout --kill-after=5 "$limit" "$@" >>"$results" 2>&1
  local rc=$?
  say "-- $name: $([[ $rc == 0 ]] && echo ok || echo "FAILED (exit $rc)") in $(($(date +%s) - t0))s"
  ((rc == 0)) || failed=1
  return $rc
}

if ((dry)); then
  device=cpu dtypes=(float32) preset=tiny batches=(2 4) python=${GPU_CHECK_PYTHON:-/usr/bin/python3}
else
  device=cuda dtypes=(float32 bfloat16) preset=base batches=(64 128 256) python=${GPU_CHECK_PYTHON:-python3}
fi
[[ "${GPU_CHECK_NO_PYTHON:-0}" == 1 ]] && python=""
say "capfilt GPU check $(date -u +%FT%TZ) on $(hostname); $( ((dry)) && echo "DRY RUN on the CPU (tiny sizes, no GPU steps)" || echo "device $device")"
say "checkout $(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)"

# ---- 1. the machine, the binaries, the shim
bin="$work/bin"
mkdir -p "$bin" "$work/build"
for f in capfilt captioner.test filter.test; do
  if [[ -e "$art/$f.xz" ]]; then
    xz -dc "$art/$f.xz" >"$bin/$f" && chmod +x "$bin/$f"
  elif [[ -x "$art/$f" ]]; then
    cp "$art/$f" "$bin/$f"
  fi
done
capfilt=${GPU_CHECK_CAPFILT:-$bin/capfilt}
export root work dry device python capfilt # what the functions run by step read
[[ -x "$capfilt" ]] || { say "no capfilt binary in $art (run scripts/gpu-check.sh --build where Go is)"; exit 1; }
if ((!dry)); then
  step "nvidia-smi" 20 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
fi
if [[ -n "$python" ]]; then
  step "python torch" 60 "$python" -c 'import torch, sys
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
try:
    import transformers; print("transformers", transformers.__version__)
except ImportError:
    print("transformers: not installed")'
fi
libtorch=""
if [[ -n "$python" ]]; then
  libtorch=$("$python" -c 'import torch, os; print(os.path.dirname(torch.__file__))' 2>/dev/null)
fi
# The binaries look for the shim in ../build beside them (and LD_LIBRARY_PATH).
if [[ -n "$libtorch" && -e "$libtorch/include/ATen/ATen.h" ]]; then
  step "build the shim against $libtorch" 200 env LIBTORCH="$libtorch" OUT="$work/build" scripts/build-torch-shim.sh
elif ((dry)); then
  say "== shim: this torch ships no headers; the dry run uses build/libcapfilt_torch.so"
  cp build/libcapfilt_torch.so "$work/build/" || exit 1
else
  say "== shim: no libtorch with headers found beside python's torch: cannot go on"
  exit 1
fi
export LD_LIBRARY_PATH="$work/build${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
step "capfilt version" 30 "$capfilt" version
if ((!dry)); then
  "$capfilt" version 2>/dev/null | grep -q "cuda:0" || { say "capfilt sees no CUDA device: the checks below cannot pass"; failed=1; }
fi

# ---- 2. golden tests on the device (float32)
cases='(tiny|tiny-gen|base|greedy|nucleus.*)'
((dry)) && cases='(tiny|tiny-gen|greedy|nucleus.*)'
goldentest() { # BINARY PATTERN: runs the tests, fails on a skip (no goldens found, no device)
  local out rc
  out=$(env CAPFILT_TEST_DEVICE="$device" CAPFILT_GOLDEN_DIR="$root/testdata/golden" "$1" -test.run "$2" -test.v -test.count=1 2>&1)
  rc=$?
  echo "$out" | grep -E "^ *(=== RUN|--- |PASS|FAIL|ok)|max \|diff\||differs|reference" | head -80
  if ! echo "$out" | grep -q -- "--- PASS"; then
    echo "no test ran (the pattern matches none: $2)"; return 1
  fi
  if echo "$out" | grep -q -- "--- SKIP"; then
    echo "a golden test was skipped:"; echo "$out" | grep -A2 -- "--- SKIP"; return 1
  fi
  return $rc
}
if [[ -x "$bin/captioner.test" ]]; then
  step "captioner goldens on $device" 120 goldentest "$bin/captioner.test" \
    "^(TestGreedyAndBeamEqualTheReferenceTokenForToken|TestNucleusDistributionEqualsTheReference|TestFinishedImagesLeaveTheBatchWithoutChangingCaptions)\$/^$cases\$"
else
  say "== captioner goldens: NOT RUN (no captioner.test in $art)"; failed=1
fi
if [[ -x "$bin/filter.test" ]]; then
  fpat='^(TestBaseScoresEqualTheReference|TestITMFirstTokenMatchesTheReferenceBothWays)$'
  ((dry)) && fpat='^TestITMFirstTokenMatchesTheReferenceBothWays$'
  step "filter goldens on $device" 90 goldentest "$bin/filter.test" "$fpat"
else
  say "== filter goldens: NOT RUN (no filter.test in $art)"; failed=1
fi

# ---- 3. forward numerics against the reference's goldens
# A base checkpoint with the reference's weights (seed 2) and a vocabulary of the model's
# size (every id but BERT's specials a word "w<id>", as capfilt bench model makes).
base="$work/base"
export base
vocab="$work/vocab.txt"
awk 'BEGIN { for (i = 0; i < 30522; i++) { t = "w" i
  if (i == 0) t = "[PAD]"; if (i == 100) t = "[UNK]"; if (i == 101) t = "[CLS]"; if (i == 102) t = "[SEP]"
  if (i == 103) t = "[MASK]"; if (i == 1037) t = "a"; if (i == 3861) t = "picture"; if (i == 1997) t = "of"
  print t } }' >"$vocab"
if ((!dry)); then
  step "base checkpoint (reference weights, seed 2)" 90 "$capfilt" model random --preset base --seed 2 --vocab "$vocab" --out "$base"
fi
forward() { # CASE MODELDIR DTYPE ATOL
  local out="$work/forward-$1-$3.safetensors"
  "$capfilt" model forward --model "$2" --inputs "testdata/golden/$1/inputs.safetensors" --device "$device" --dtype "$3" --out "$out" || return 1
  if [[ -n "$python" ]]; then
    "$python" scripts/gpu_check.py compare "$out" "testdata/golden/$1/golden.safetensors" --atol "$4"
  else
    echo "(no Python: outputs written, not compared)"
  fi
}
for dt in "${dtypes[@]}"; do
  tol_tiny=1e-4 tol_base=1e-3
  [[ $dt == bfloat16 ]] && tol_tiny=$BF16_ATOL tol_base=$BF16_ATOL
  step "forward tiny $dt vs reference (atol $tol_tiny)" 60 forward tiny testdata/golden/tiny "$dt" "$tol_tiny"
  ((dry)) || step "forward base $dt vs reference (atol $tol_base)" 90 forward base "$base" "$dt" "$tol_base"
done

# ---- 4. fused attention
if ((!dry)) && [[ -n "$python" ]]; then
  step "fused attention" 60 sh -c "'$capfilt' bench model --device cuda --stages vit --bench-images 1 --batch 1 --warmup 0 | grep attention: &&
    '$capfilt' bench model --device cuda --stages vit --bench-images 1 --batch 1 --warmup 0 | grep -q 'fused scaled_dot_product_attention' &&
    '$python' scripts/gpu_check.py sdpa"
fi

# ---- 5. throughput
util="$work/gpu-util.csv"
if ((!dry)); then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits -lms 200 >"$util" 2>/dev/null &
  smi=$!
fi
for dt in "${dtypes[@]}"; do
  for b in "${batches[@]}"; do
    step "caption + filter, $preset, $dt, batch $b" 90 "$capfilt" bench model --bench-preset "$preset" --device "$device" --dtype "$dt" \
      --batch "$b" --bench-images $((4 * b)) --warmup 1 --stages whole
  done
done
if ((!dry)); then
  kill "$smi" 2>/dev/null
  wait "$smi" 2>/dev/null
  say "GPU utilisation while benchmarking (nvidia-smi every 200 ms; the model set-up of each run is included):"
  awk -F', *' '{ n++; s += $2; if ($2 >= 90) hi++ } END { if (n) printf "  %d samples, mean %.0f%%, %.0f%% of them at >= 90%%\n", n, s / n, 100 * hi / n }' "$util" | tee -a "$results"
fi

# ---- 6 and 7. capfilt run over sample shards, then again with too little device memory
shards="$work/shards"
step "sample shards" 60 "$capfilt" sample-shards --out "$shards" --shards 4 --per-shard $(((dry)) && echo 8 || echo 512) --image-size 384
runmodel=$base
((dry)) && { runmodel="$work/tiny"; "$capfilt" model random --preset tiny --out "$runmodel" >/dev/null; }
rundt=${dtypes[-1]}
step "capfilt run --device $device ($rundt)" 120 "$capfilt" run --model "$runmodel" --input "$shards/{00000..00003}.tar" \
  --output "$work/out-run" --device "$device" --dtype "$rundt" --batch-size "${batches[-1]}" --itm-threshold 0 --log-level info
if ((!dry)) && [[ -n "$python" ]]; then
  "$python" scripts/gpu_check.py hold --free-gb "$OOM_FREE_GB" >"$work/holder.log" 2>&1 &
  holder=$!
  for _ in $(seq 60); do grep -q holding "$work/holder.log" 2>/dev/null && break; sleep 1; done
  cat "$work/holder.log" >>"$results"
fi
oomrun() {
  local log="$work/oom.log"
  "$capfilt" run --model "$runmodel" --input "$shards/{00000..00001}.tar" --output "$work/out-oom" --device "$device" \
    --dtype "$rundt" --batch-size 512 --itm-threshold 0 --log-level info >"$log" 2>&1
  local rc=$?
  grep -E "shard done|shards:|out-of-memory|error" "$log"
  ((rc == 0)) || return $rc
  local sizes
  sizes=$(grep -o 'batch_size=[0-9]*' "$log" | cut -d= -f2 | sort -n | uniq | tr '\n' ' ')
  echo "batch sizes the workers ended with: $sizes"
  if ((dry)); then
    echo "(dry run: no device memory to exhaust; only the run's plumbing is checked)"
    return 0
  fi
  grep -q "2 shards: 2 done, 0 dead" "$log" || { echo "not every shard finished"; return 1; }
  [[ -n "$sizes" && ${sizes%% *} -lt 512 ]] || { echo "no batch was split: the out-of-memory was not forced"; return 1; }
}
export runmodel shards rundt
step "out of memory: batch 512 with ${OOM_FREE_GB} GB of the device left" 150 oomrun
[[ -n "$holder" ]] && { kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null; holder=""; }

# ---- 8. HF transformers on the same weights
if ((!dry)) && [[ -n "$python" ]]; then
  step "ITM, ITC and greedy ids vs HF transformers" 120 sh -c "
    '$capfilt' model forward --model '$base' --inputs testdata/golden/base/inputs.safetensors --device cuda --out '$work/hf-capfilt.safetensors' >/dev/null &&
    '$capfilt' model generate --model '$base' --inputs testdata/golden/base/inputs.safetensors --device cuda --greedy --max-length 20 --min-length 5 --out '$work/hf-capfilt-gen.safetensors' >/dev/null &&
    '$python' scripts/gpu_check.py hf --model '$base' --inputs testdata/golden/base/inputs.safetensors \
      --forward '$work/hf-capfilt.safetensors' --generate '$work/hf-capfilt-gen.safetensors'"
elif ((dry)); then
  say "== HF transformers comparison: not in a dry run (needs CUDA and transformers)"
fi

say "== $( ((failed)) && echo "SOME CHECKS FAILED" || echo "ALL CHECKS PASSED") in $(($(date +%s) - start))s; results in $results"
exit $failed
