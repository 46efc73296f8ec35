#!/bin/sh
# Regenerate the training goldens (testdata/golden/tiny-train, tiny-train-retrieval,
# tiny-train-caption; a few seconds) and merge their steps into MANIFEST.md. The other
# golden folders are left as they are. make_goldens.sh runs this at its end.
set -eu
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
REF=testdata/ref/train_ref.py
G=testdata/golden
TMP=$(mktemp -d "${TMPDIR:-/tmp}/capfilt-train-golden.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
STEPS=$TMP/steps.tsv
: >"$STEPS"

step() {
	out=$1
	shift
	echo "+ $*"
	"$@"
	printf '%s\t%s\n' "$out" "$*" >>"$STEPS"
}

$PY $REF selftest >"$TMP/selftest.log" || { cat "$TMP/selftest.log"; exit 1; }
rm -rf $G/tiny-train $G/tiny-train-retrieval $G/tiny-train-caption
step "$G/tiny-train/ (with tiny-train-retrieval/, tiny-train-caption/)" $PY $REF make-models $G
step $G/tiny-train/inputs.safetensors $PY $REF make-inputs $G/tiny-train/inputs.safetensors
step $G/tiny-train/golden.safetensors $PY $REF dump-pretrain $G/tiny-train $G/tiny-train/inputs.safetensors $G/tiny-train/golden.safetensors
step $G/tiny-train-retrieval/golden.safetensors $PY $REF dump-retrieval $G/tiny-train-retrieval $G/tiny-train/inputs.safetensors $G/tiny-train-retrieval/golden.safetensors
step $G/tiny-train-caption/golden.safetensors $PY $REF dump-caption $G/tiny-train-caption $G/tiny-train/inputs.safetensors $G/tiny-train-caption/golden.safetensors
$PY testdata/ref/manifest.py --merge $G "$STEPS"
echo "done: $G/tiny-train*"
