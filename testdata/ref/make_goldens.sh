#!/bin/sh
# Regenerate everything under testdata/golden from scratch (about 2-3 minutes on 2 cores).
# Needs /usr/bin/python3 with torch 1.13 and numpy; writes the 1.5 GB base checkpoint to a
# temporary directory and deletes it afterwards.
set -eu
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
REF=testdata/ref/blip_ref.py
G=testdata/golden
TMP=$(mktemp -d "${TMPDIR:-/tmp}/capfilt-golden.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
STEPS=$TMP/steps.tsv
: >"$STEPS"

# step OUTPUT COMMAND...: run the command and log it for the manifest
step() {
	out=$1
	shift
	echo "+ $*"
	"$@"
	printf '%s\t%s\n' "$out" "$*" >>"$STEPS"
}

$PY $REF selftest >"$TMP/selftest.log" || { cat "$TMP/selftest.log"; exit 1; }
rm -rf $G/tiny $G/tiny-gen $G/tiny-original $G/tiny-bin $G/tiny-nolmhead $G/base $G/itm-cls
mkdir -p $G

# tiny, weight seed 1 (the preset)
step $G/tiny/ $PY $REF make-random tiny $G/tiny
step $G/tiny/inputs.safetensors $PY $REF make-inputs tiny $G/tiny/inputs.safetensors
step $G/tiny/golden.safetensors $PY $REF dump $G/tiny $G/tiny/inputs.safetensors $G/tiny/golden.safetensors --extras
step $G/tiny-original/ $PY $REF make-random tiny $G/tiny-original --format original
step $G/tiny-bin/ $PY $REF make-random tiny $G/tiny-bin --bin
step $G/tiny-nolmhead/ $PY $REF make-random tiny $G/tiny-nolmhead --lm-head absent

# every checkpoint format must give bit-identical outputs
for d in tiny-original tiny-bin tiny-nolmhead; do
	$PY $REF dump $G/$d $G/tiny/inputs.safetensors "$TMP/$d.safetensors" --extras >/dev/null
	$PY $REF compare $G/tiny/golden.safetensors "$TMP/$d.safetensors" --atol 0 >"$TMP/cmp.log" ||
		{ cat "$TMP/cmp.log"; echo "$d differs from tiny"; exit 1; }
done

# tiny-gen: same config, weight seed 11 + input seed 974, where [SEP] and min_length fire
step $G/tiny-gen/ $PY $REF make-random tiny $G/tiny-gen --seed 11
step $G/tiny-gen/inputs.safetensors $PY $REF make-inputs tiny $G/tiny-gen/inputs.safetensors --seed 974
step $G/tiny-gen/golden.safetensors $PY $REF dump $G/tiny-gen $G/tiny-gen/inputs.safetensors $G/tiny-gen/golden.safetensors --extras

# ITM with [CLS] left first, as HF's BlipForImageTextRetrieval computes it (itm.* above: [ENC])
mkdir -p $G/itm-cls
for c in tiny tiny-gen; do
	step $G/itm-cls/$c.safetensors $PY $REF dump-itm-cls $G/$c $G/$c/inputs.safetensors $G/itm-cls/$c.safetensors
done

# base, weight seed 2: weights are NOT committed (regenerate them from the generator)
$PY $REF make-random base "$TMP/base" >/dev/null
mkdir -p $G/base
cp "$TMP/base/config.json" $G/base/config.json
printf '%s\t%s\n' "$G/base/config.json" "$PY $REF make-random base BASEDIR (config.json copied; weights not committed)" >>"$STEPS"
step $G/base/inputs.safetensors $PY $REF make-inputs base $G/base/inputs.safetensors
step $G/base/golden.safetensors $PY $REF dump "$TMP/base" $G/base/inputs.safetensors $G/base/golden.safetensors --decoder-positions 3
step $G/base/weights_check.safetensors $PY $REF weights-check "$TMP/base" $G/base/weights_check.safetensors
sha=$(sha256sum "$TMP/base/model.safetensors" | cut -d' ' -f1)
size=$(stat -c %s "$TMP/base/model.safetensors")
echo "| base model.safetensors (\`make-random base DIR\`; bytes depend on st.py's layout: sorted names, compact header, metadata; check values with weights_check instead) | $size | \`$sha\` |" >"$TMP/extra.md"

# MANIFEST.md paths are shown relative to the repository root; strip the temp dir from them
sed -i "s|$TMP/base|BASEDIR|g; s|$TMP/|TMP/|g" "$STEPS"
$PY testdata/ref/manifest.py $G "$STEPS" "$TMP/extra.md"
# the training goldens, merged into the manifest just written
sh testdata/ref/make_train_goldens.sh
echo "done: $G"
