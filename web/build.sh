#!/usr/bin/env bash
# Builds the browser package: the glue crate (web/crate) for wasm32-unknown-unknown, then
# wasm-bindgen's JavaScript bindings into web/pkg, copies the bundled G2P model into web/models
# and links the bundled Marian folder's files into web/models/marian (symlinks: the server
# follows them, and nothing is copied). Needs the wasm32 target and wasm-bindgen-cli at the version in web/crate/Cargo.lock
# (`cargo install wasm-bindgen-cli --version <it>`; .ci/setup installs both).
set -euo pipefail
cd "$(dirname "$0")"

want=$(grep -A1 '^name = "wasm-bindgen"$' crate/Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  echo "build.sh: wasm-bindgen-cli $want is needed (found: ${have:-none});" \
       "cargo install wasm-bindgen-cli --version $want" >&2
  exit 1
fi
# A target folder of its own: the wasm build shares nothing with the native one.
export CARGO_TARGET_DIR="$PWD/crate/target"
cargo build --release --quiet --target wasm32-unknown-unknown --manifest-path crate/Cargo.toml
wasm-bindgen --target web --out-dir pkg \
  "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/heedful_web.wasm"
mkdir -p models/marian
cp ../weights/g2p_rnn_dot.safetensors models/
for f in ../weights/marian/*.json ../weights/marian/*.spm ../weights/marian/model.safetensors; do
  ln -sf "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" models/marian/
done
echo "build.sh: web/pkg ($(du -h pkg/heedful_web_bg.wasm | cut -f1) of wasm) and web/models ready"
