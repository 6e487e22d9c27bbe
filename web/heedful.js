// heedful in the browser: a small typed API over the wasm package (web/pkg, built by
// web/build.sh). Types: heedful.d.ts. Everything that touches the GPU returns a promise.
//
//   import { createEngine, loadG2p, loadBert } from "./heedful.js";
//   const engine = await createEngine();
//   const g2p = await loadG2p(engine, "models/g2p_rnn_dot.safetensors");
//   const [r] = await g2p.run(["attention"]);       // r.phonemes, r.attention (heatmap rows)
//   const bert = await loadBert(engine, "models/minilm/");
//   const [e] = await bert.embed(["Attention is all you need."]);   // Float32Array(384)
//   const mt = await loadMarian(engine, "models/marian/");
//   const [t] = await mt.translate(["blood pressure"], { beams: 4, attention: true });
//   // t.text, t.ids, t.attention.rows[target][source] (mean over the last layer's heads)

import init, { Engine, G2p, Bert, Marian } from "./pkg/heedful_web.js";

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

/** The bytes at `url`, or null when the server answers 404 (a file the folder may lack). */
async function fetchOptional(url) {
  const res = await fetch(url);
  if (res.status === 404) return null;
  if (!res.ok) throw new Error(`fetching ${url}: HTTP ${res.status}`);
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

/** Loads a Hugging Face MarianMT folder under `base` (as `save_pretrained` writes it):
 *  config.json, model.safetensors, source.spm, target.spm, vocab.json, and where present
 *  generation_config.json, tokenizer_config.json, special_tokens_map.json (target_vocab.json
 *  when tokenizer_config.json says separate_vocabs). */
export async function loadMarian(engine, base) {
  const dir = base.endsWith("/") ? base : base + "/";
  const required = ["config.json", "model.safetensors", "source.spm", "target.spm", "vocab.json"];
  const optional = ["generation_config.json", "tokenizer_config.json", "special_tokens_map.json"];
  const files = {};
  await Promise.all([
    ...required.map(async (n) => (files[n] = await fetchBytes(dir + n))),
    ...optional.map(async (n) => {
      const b = await fetchOptional(dir + n);
      if (b) files[n] = b;
    }),
  ]);
  const tokConfig = files["tokenizer_config.json"];
  if (tokConfig && JSON.parse(new TextDecoder().decode(tokConfig)).separate_vocabs === true) {
    files["target_vocab.json"] = await fetchBytes(dir + "target_vocab.json");
  }
  const mt = Marian.load(engine, dir, files);
  return {
    /** The model's shape and default search: {encoderLayers, decoderLayers, heads, numBeams, maxLength}. */
    info: () => mt.info(),
    /** Translations of `texts` in one batch; see heedful.d.ts for the options. */
    translate: (texts, opts = {}) => {
      const a = opts.attention;
      return mt.translate(
        texts,
        opts.beams,
        opts.maxLength,
        Boolean(a),
        typeof a === "object" ? a.layer : undefined,
        typeof a === "object" ? a.head : undefined,
      );
    },
    free: () => mt.free(),
  };
}
