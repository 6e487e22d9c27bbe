//! The opus-mt-en-zh-sized MarianMT model with deterministic "random" weights, written without
//! Python, for the `marian` bench suite and the tests (`tests/marian.rs`,
//! `tests/marian_random_weights.rs`): `write_random_opus_folder(dir)` writes `config.json`,
//! `generation_config.json` and an F16 `model.safetensors` (about 155 MB, 77 M parameters) whose
//! values equal those of `weights/marian_opus_random.py`, so
//! `weights/fixtures/marian_opus_random.json` (Hugging Face logits of that model) applies to it.
//!
//! The formula (the Python module's docstring is the reference): for tensor `name` with `n`
//! row-major elements, `seed = fnv1a64(name)`, `r_i = splitmix64(seed + (i + 1) * GAMMA)`,
//! `k_i = (r_i mod (2L + 1)) - L`, `value_i = center + scale * k_i / L`, with `(center, scale, L)`
//! chosen by the tensor's kind (see [`kind`]); the last row of `model.shared.weight` (the pad id
//! 65000, also the decoder start) is zero, as in converted opus-mt checkpoints. Every value is
//! exactly representable in f16, so no rounding rule has to agree between the languages and f64
//! sums of the values are exact.
//!
//! ```no_run
//! let dir = std::path::Path::new("target/models/marian_opus_random");
//! heedful::bench::marian_random::write_random_opus_folder(dir)?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io::{self, BufWriter, Write};
use std::path::Path;

use half::f16;

/// d_model of opus-mt-en-zh.
pub const D_MODEL: usize = 512;
/// Encoder and decoder layers (6 each).
pub const LAYERS: usize = 6;
/// Feed-forward width.
pub const FFN: usize = 2048;
/// Vocabulary size; pad = decoder start = VOCAB - 1, eos = 0.
pub const VOCAB: usize = 65001;

/// config.json as transformers 5.25's `save_pretrained` writes it for this model.
pub const CONFIG_JSON: &str = r#"{
  "activation_dropout": 0.0,
  "activation_function": "swish",
  "architectures": [
    "MarianMTModel"
  ],
  "attention_dropout": 0.0,
  "bos_token_id": null,
  "d_model": 512,
  "decoder_attention_heads": 8,
  "decoder_ffn_dim": 2048,
  "decoder_layerdrop": 0.0,
  "decoder_layers": 6,
  "decoder_start_token_id": 65000,
  "decoder_vocab_size": 65001,
  "dropout": 0.1,
  "dtype": "float16",
  "encoder_attention_heads": 8,
  "encoder_ffn_dim": 2048,
  "encoder_layerdrop": 0.0,
  "encoder_layers": 6,
  "eos_token_id": 0,
  "forced_eos_token_id": 0,
  "init_std": 0.02,
  "is_decoder": false,
  "is_encoder_decoder": true,
  "max_position_embeddings": 512,
  "model_type": "marian",
  "pad_token_id": 65000,
  "scale_embedding": true,
  "share_encoder_decoder_embeddings": true,
  "static_position_embeddings": true,
  "tie_word_embeddings": true,
  "transformers_version": "5.25.0",
  "use_cache": true,
  "vocab_size": 65001
}
"#;

/// generation_config.json, as opus-mt-en-zh's (beam 4, pad suppressed, forced EOS).
pub const GENERATION_CONFIG_JSON: &str = r#"{
  "bad_words_ids": [
    [
      65000
    ]
  ],
  "decoder_start_token_id": 65000,
  "eos_token_id": 0,
  "forced_eos_token_id": 0,
  "max_length": 512,
  "num_beams": 4,
  "pad_token_id": 65000,
  "renormalize_logits": false,
  "transformers_version": "5.25.0"
}
"#;

/// FNV-1a 64 of the name's UTF-8 bytes: the tensor's seed.
pub fn fnv1a64(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Output `i` (0-based) of splitmix64 started at `seed`.
pub fn splitmix64(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add((i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `(center, scale, L)` of a tensor, by name: values are `center + scale * k / L`, `k` in `[-L, L]`.
pub fn kind(name: &str) -> (f64, f64, u64) {
    if name == "model.shared.weight" {
        (0.0, 1.0 / 16.0, 1024)
    } else if name == "final_logits_bias" {
        (0.0, 0.25, 1024)
    } else if name.ends_with("layer_norm.weight") {
        (1.0, 1.0 / 8.0, 128)
    } else if name.ends_with("layer_norm.bias") {
        (0.0, 1.0 / 16.0, 1024)
    } else if name.ends_with("fc2.weight") {
        (0.0, 1.0 / 64.0, 1024)
    } else if name.ends_with(".weight") {
        (0.0, 1.0 / 32.0, 1024)
    } else {
        // Every other tensor of the list is a bias.
        (0.0, 1.0 / 64.0, 1024)
    }
}

/// The `n` values of tensor `name` (row-major), exact f16 values of the formula.
pub fn tensor_values(name: &str, n: usize) -> Vec<f16> {
    let (center, scale, l) = kind(name);
    let seed = fnv1a64(name);
    // The pad row of the shared embedding (the last row) is zero.
    let zero_from = if name == "model.shared.weight" {
        (VOCAB - 1) * D_MODEL
    } else {
        n
    } as u64;
    (0..n as u64)
        .map(|i| {
            if i >= zero_from {
                return f16::ZERO;
            }
            let k = (splitmix64(seed, i) % (2 * l + 1)) as i64 - l as i64;
            let v = center + scale * k as f64 / l as f64;
            let h = f16::from_f64(v);
            debug_assert_eq!(h.to_f64(), v, "{name}[{i}] is not exact in f16");
            h
        })
        .collect()
}

/// The tensors `save_pretrained` writes for this MarianMTModel (tied embeddings stored once as
/// `model.shared.weight`, no position tables: they are static), with their shapes.
pub fn tensor_specs() -> Vec<(String, Vec<usize>)> {
    let (d, f) = (D_MODEL, FFN);
    let mut specs = vec![
        ("final_logits_bias".to_string(), vec![1, VOCAB]),
        ("model.shared.weight".to_string(), vec![VOCAB, d]),
    ];
    let attn = |prefix: &str, specs: &mut Vec<(String, Vec<usize>)>| {
        for p in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            specs.push((format!("{prefix}.{p}.weight"), vec![d, d]));
            specs.push((format!("{prefix}.{p}.bias"), vec![d]));
        }
        specs.push((format!("{prefix}_layer_norm.weight"), vec![d]));
        specs.push((format!("{prefix}_layer_norm.bias"), vec![d]));
    };
    for side in ["encoder", "decoder"] {
        for layer in 0..LAYERS {
            let base = format!("model.{side}.layers.{layer}");
            attn(&format!("{base}.self_attn"), &mut specs);
            if side == "decoder" {
                attn(&format!("{base}.encoder_attn"), &mut specs);
            }
            specs.push((format!("{base}.fc1.weight"), vec![f, d]));
            specs.push((format!("{base}.fc1.bias"), vec![f]));
            specs.push((format!("{base}.fc2.weight"), vec![d, f]));
            specs.push((format!("{base}.fc2.bias"), vec![d]));
            specs.push((format!("{base}.final_layer_norm.weight"), vec![d]));
            specs.push((format!("{base}.final_layer_norm.bias"), vec![d]));
        }
    }
    specs
}

/// Writes `config.json`, `generation_config.json` and F16 `model.safetensors` (safetensors
/// layout: u64 little-endian header length, JSON header padded with spaces to 8 bytes, data)
/// of the random opus-sized model into `dir` (created if missing). Holds one tensor in memory
/// at a time (the largest, the embedding, is 66 MB).
pub fn write_random_opus_folder(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("config.json"), CONFIG_JSON)?;
    std::fs::write(dir.join("generation_config.json"), GENERATION_CONFIG_JSON)?;
    let specs = tensor_specs();
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut offset = 0usize;
    for (name, shape) in &specs {
        let bytes = shape.iter().product::<usize>() * 2;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut text = serde_json::to_string(&header).map_err(io::Error::other)?;
    while text.len() % 8 != 0 {
        text.push(' ');
    }
    let mut out = BufWriter::new(std::fs::File::create(dir.join("model.safetensors"))?);
    out.write_all(&(text.len() as u64).to_le_bytes())?;
    out.write_all(text.as_bytes())?;
    for (name, shape) in &specs {
        let values = tensor_values(name, shape.iter().product());
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        out.write_all(&bytes)?;
    }
    out.flush()
}
