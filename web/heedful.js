// heedful in the browser: a small typed API over the wasm package (web/pkg, built by
// web/build.sh). Types: heedful.d.ts. Everything that touches the GPU returns a promise.
//
//   import { createEngine, loadG2p, loadBert } from "./heedful.js";
//   const engine = await createEngine();
//   const g2p = await loadG2p(engine, "models/g2p_rnn_dot.safetensors");
//   const [r] = await g2p.run(["attention"]);       // r.phonemes, r.attention (heatmap rows)
//   const bert = await loadBert(engine, "models/minilm/");
//   const [e] = await bert.embed(["Attention is all you need."]);   // Float32Array(384)

import init, { Engine, G2p, Bert } from "./pkg/heedful_web.js";

let ready = null;

/** Loads the wasm module once. */
function start() {
  ready ??= init();
  return ready;
}

async function fetchBytes(url, optional = false) {
  const res = await fetch(url);
  if (!res.ok) {
    if (optional && res.status === 404) return new Uint8Array();
    throw new Error(`fetching ${url}: HTTP ${res.status}`);
  }
  return new Uint8Array(await res.arrayBuffer());
}

/** The WebGPU device every model runs on. */
export async function createEngine() {
  await start();
  if (!("gpu" in navigator)) throw new Error("this browser has no WebGPU (navigator.gpu)");
  return Engine.create();
}

/** Loads a seq2seq G2P model (an exported .safetensors file) from `url`. */
export async function loadG2p(engine, url) {
  const g2p = G2p.load(engine, await fetchBytes(url), url);
  return {
    /** Phonemes and attention of `words`, decoded in one batch (beam 1: greedy). */
    run: (words, beam = 1) => g2p.run(words, beam),
    free: () => g2p.free(),
  };
}

/** Loads a Hugging Face BERT folder (config.json, tokenizer.json, model.safetensors) under `base`. */
export async function loadBert(engine, base) {
  const dir = base.endsWith("/") ? base : base + "/";
  const [config, tokenizer, weights, sentence] = await Promise.all([
    fetchBytes(dir + "config.json"),
    fetchBytes(dir + "tokenizer.json"),
    fetchBytes(dir + "model.safetensors"),
    fetchBytes(dir + "sentence_bert_config.json", true),
  ]);
  const bert = Bert.load(engine, config, tokenizer, weights, sentence);
  return {
    /** One L2-normalized embedding per text. */
    embed: (texts) => bert.embed(texts),
    free: () => bert.free(),
  };
}
