//! Marian on the GPU against the CPU reference forward (`models::marian::reference`, f64): the
//! encoder on padded batches, the KV-cached decoder's logits at every step (greedy, batched,
//! beams with cache reordering), the kept cross-attention, and broken model folders. Models are
//! small random folders written here in every layout a `save_pretrained` folder may have (shared
//! or separate vocabularies, tied or untied output layer, learned or sinusoidal positions, F32,
//! F16 or BF16 files, awkward widths).

// Only the marian_random helper is used here.
#[allow(unused_imports)]
mod common;

use std::path::{Path, PathBuf};

use heedful::graph::{LoopBuilder, LoopResults, Schedule};
use heedful::kernels::topk::record_topk;
use heedful::models::marian::reference::Reference;
use heedful::models::marian::search::{GenerateOptions, GenerationParams, Hypothesis, Search};
use heedful::models::marian::{MarianConfig, MarianModel, Translator};
use heedful::weights::{Hold, WeightFile};
use heedful::{DType, Gpu};

/// A deterministic generator (xorshift) for weights.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// A random model's layout.
#[derive(Clone)]
struct Spec {
    d: usize,
    enc_layers: usize,
    dec_layers: usize,
    enc_heads: usize,
    dec_heads: usize,
    enc_ffn: usize,
    dec_ffn: usize,
    vocab: usize,
    dec_vocab: Option<usize>,
    positions: usize,
    act: &'static str,
    scale: bool,
    tied: bool,
    learned_positions: bool,
    bias: bool,
    /// "F32", "F16" or "BF16".
    dtype: &'static str,
}

fn spec_a() -> Spec {
    Spec {
        d: 20,
        enc_layers: 2,
        dec_layers: 3,
        enc_heads: 4,
        dec_heads: 2,
        enc_ffn: 28,
        dec_ffn: 36,
        vocab: 43,
        dec_vocab: None,
        positions: 40,
        act: "gelu",
        scale: true,
        tied: true,
        learned_positions: false,
        bias: true,
        dtype: "F16",
    }
}

fn spec_b() -> Spec {
    Spec {
        d: 24,
        enc_layers: 1,
        dec_layers: 2,
        enc_heads: 3,
        dec_heads: 4,
        enc_ffn: 30,
        dec_ffn: 17,
        vocab: 37,
        dec_vocab: Some(29),
        positions: 33,
        act: "relu",
        scale: false,
        tied: false,
        learned_positions: true,
        bias: false,
        dtype: "BF16",
    }
}

fn spec_c() -> Spec {
    Spec {
        d: 16,
        enc_layers: 1,
        dec_layers: 2,
        enc_heads: 2,
        dec_heads: 2,
        enc_ffn: 24,
        dec_ffn: 24,
        vocab: 31,
        dec_vocab: None,
        positions: 64,
        act: "swish",
        scale: true,
        tied: true,
        learned_positions: false,
        bias: true,
        dtype: "F32",
    }
}

impl Spec {
    fn dv(&self) -> usize {
        self.dec_vocab.unwrap_or(self.vocab)
    }

    fn config_json(&self) -> String {
        let pad = self.dv() - 1;
        let mut v = serde_json::json!({
            "architectures": ["MarianMTModel"], "model_type": "marian",
            "d_model": self.d, "encoder_layers": self.enc_layers, "decoder_layers": self.dec_layers,
            "encoder_attention_heads": self.enc_heads, "decoder_attention_heads": self.dec_heads,
            "encoder_ffn_dim": self.enc_ffn, "decoder_ffn_dim": self.dec_ffn,
            "vocab_size": self.vocab, "max_position_embeddings": self.positions,
            "activation_function": self.act, "scale_embedding": self.scale,
            "tie_word_embeddings": self.tied, "pad_token_id": pad, "decoder_start_token_id": pad,
            "eos_token_id": 0, "forced_eos_token_id": 0,
            "share_encoder_decoder_embeddings": self.dec_vocab.is_none(),
        });
        if let Some(dv) = self.dec_vocab {
            v["decoder_vocab_size"] = dv.into();
        }
        v.to_string()
    }

    /// (name, shape, values) of every tensor, in the names `save_pretrained` writes.
    fn tensors(&self, seed: u64) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let mut rng = Rng(seed | 1);
        let mut out = Vec::new();
        let mut add = |name: String, shape: Vec<usize>, kind: u8| {
            let n: usize = shape.iter().product();
            let fan = *shape.last().unwrap_or(&1) as f32;
            let vals = (0..n)
                .map(|_| match kind {
                    b'w' => rng.next() * 1.7 / fan.sqrt(),
                    b'n' => 1.0 + 0.3 * rng.next(),
                    b'e' => rng.next(),
                    _ => 0.3 * rng.next(),
                })
                .collect();
            out.push((name, shape, vals));
        };
        let (d, dv) = (self.d, self.dv());
        match self.dec_vocab {
            None => add("model.shared.weight".into(), vec![self.vocab, d], b'e'),
            Some(_) => {
                add(
                    "model.encoder.embed_tokens.weight".into(),
                    vec![self.vocab, d],
                    b'e',
                );
                add(
                    "model.decoder.embed_tokens.weight".into(),
                    vec![dv, d],
                    b'e',
                );
            }
        }
        if !self.tied {
            add("lm_head.weight".into(), vec![dv, d], b'w');
        }
        if self.bias {
            add("final_logits_bias".into(), vec![1, dv], b'b');
        }
        if self.learned_positions {
            for side in ["encoder", "decoder"] {
                add(
                    format!("model.{side}.embed_positions.weight"),
                    vec![self.positions, d],
                    b'e',
                );
            }
        }
        let lin = |add: &mut dyn FnMut(String, Vec<usize>, u8), p: String, o: usize, i: usize| {
            add(format!("{p}.weight"), vec![o, i], b'w');
            add(format!("{p}.bias"), vec![o], b'b');
        };
        let norm = |add: &mut dyn FnMut(String, Vec<usize>, u8), p: String| {
            add(format!("{p}.weight"), vec![d], b'n');
            add(format!("{p}.bias"), vec![d], b'b');
        };
        for (side, layers, ffn) in [
            ("encoder", self.enc_layers, self.enc_ffn),
            ("decoder", self.dec_layers, self.dec_ffn),
        ] {
            for l in 0..layers {
                let p = format!("model.{side}.layers.{l}");
                let mut attns = vec![("self_attn", "self_attn_layer_norm")];
                if side == "decoder" {
                    attns.push(("encoder_attn", "encoder_attn_layer_norm"));
                }
                for (a, n) in attns {
                    for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                        lin(&mut add, format!("{p}.{a}.{proj}"), d, d);
                    }
                    norm(&mut add, format!("{p}.{n}"));
                }
                lin(&mut add, format!("{p}.fc1"), ffn, d);
                lin(&mut add, format!("{p}.fc2"), d, ffn);
                norm(&mut add, format!("{p}.final_layer_norm"));
            }
        }
        out
    }
}

/// Writes a safetensors file of `tensors` in `dtype`.
fn write_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)], dtype: &str) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, vals) in tensors {
        let start = data.len();
        for &v in vals {
            match dtype {
                "F32" => data.extend_from_slice(&v.to_le_bytes()),
                "F16" => data.extend_from_slice(&half::f16::from_f32(v).to_le_bytes()),
                _ => data.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes()),
            }
        }
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut h = serde_json::Value::Object(header).to_string().into_bytes();
    h.resize(h.len().div_ceil(8) * 8, b' ');
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&h);
    bytes.extend_from_slice(&data);
    std::fs::write(path, bytes).unwrap();
}

/// A fresh folder under the system temp dir, removed when dropped (the opus-sized one holds a
/// 155 MB checkpoint: left behind, every test run would add one).
struct Folder(PathBuf);

impl std::ops::Deref for Folder {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn folder(name: &str) -> Folder {
    let dir = std::env::temp_dir().join(format!("heedful_marian_{}_{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Folder(dir)
}

fn write_model(name: &str, spec: &Spec, seed: u64) -> Folder {
    let dir = folder(name);
    std::fs::write(dir.join("config.json"), spec.config_json()).unwrap();
    write_safetensors(
        &dir.join("model.safetensors"),
        &spec.tensors(seed),
        spec.dtype,
    );
    dir
}

fn load(gpu: &Gpu, dir: &Path) -> (MarianModel, Reference) {
    let cfg =
        MarianConfig::from_json_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
            .unwrap();
    let file = WeightFile::open(dir.join("model.safetensors")).unwrap();
    // f32 on the GPU: the comparison is of the arithmetic, not of f16 storage.
    let m = MarianModel::new(gpu, cfg, &file, Hold::F32).unwrap();
    (m, Reference::load(dir).unwrap())
}

fn gpu() -> Gpu {
    Gpu::shared().unwrap()
}

/// `|got - want| <= atol + rtol |want|` everywhere, else the worst mismatches.
fn assert_close(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let bad: Vec<(usize, f32, f64)> = got
        .iter()
        .zip(want)
        .enumerate()
        .filter(|(_, (g, w))| (**g as f64 - **w).abs() > atol + rtol * w.abs())
        .map(|(i, (g, w))| (i, *g, *w))
        .take(5)
        .collect();
    let max = got
        .iter()
        .zip(want)
        .map(|(g, w)| (*g as f64 - w).abs())
        .fold(0.0, f64::max);
    assert!(
        bad.is_empty(),
        "{what}: max abs err {max}; first mismatches {bad:?}"
    );
}

fn sources(spec: &Spec, lens: &[usize], seed: u64) -> Vec<Vec<u32>> {
    let mut rng = Rng(seed);
    lens.iter()
        .map(|&n| {
            let mut s: Vec<u32> = (1..n)
                .map(|_| 1 + ((rng.next() + 1.0) * 0.5 * (spec.vocab - 3) as f32) as u32)
                .collect();
            s.push(0);
            s
        })
        .collect()
}

#[test]
fn encoder_matches_reference_on_padded_batches() {
    let gpu = gpu();
    for (name, spec) in [
        ("enc_a", spec_a()),
        ("enc_b", spec_b()),
        ("enc_c", spec_c()),
    ] {
        let dir = write_model(name, &spec, 11);
        let (m, r) = load(&gpu, &dir);
        for lens in [vec![1], vec![7, 1, 13], vec![5, 5]] {
            let src = sources(&spec, &lens, 3);
            let s = *lens.iter().max().unwrap();
            let got = m.encoder().encode(&src, 0).unwrap();
            for (i, x) in src.iter().enumerate() {
                let want = r.encode(x).unwrap();
                let row = &got[i * s * spec.d..(i * s + x.len()) * spec.d];
                assert_close(
                    &format!("{name} {lens:?} row {i}"),
                    row,
                    &want.data,
                    1e-4,
                    1e-4,
                );
            }
        }
    }
}

/// A decode driven by argmax (top-1 on the GPU) or, with `parents`, by fixed parents each step:
/// returns the per-step tokens `[steps, R]`, logits `[steps, R, V]` and (with `attn`) the kept
/// cross-attention `[steps, R, H, S]`.
fn run_decode(
    m: &MarianModel,
    src: &[Vec<u32>],
    beams: usize,
    steps: usize,
    parents: Option<&[u32]>,
    attn: Option<usize>,
) -> LoopResults {
    let gpu = m.gpu();
    let rows = src.len() * beams;
    let s = src.iter().map(Vec::len).max().unwrap();
    let mut b = LoopBuilder::new(gpu, steps);
    let st = m
        .declare_decoder(&mut b, src.len(), s, beams, attn)
        .unwrap();
    let tokens = b.named("tokens", &[rows], DType::U32).unwrap();
    let par = b.named("parents", &[rows], DType::U32).unwrap();
    let ids = tokens.reshape(&[rows, 1]).unwrap();
    let logp = b.buffer(&[rows, 1], DType::F32).unwrap();
    let phases = if beams > 1 { 2 } else { 1 };
    for phase in 0..phases {
        m.record_decoder_step(&mut b, &st, phase, &tokens, parents.map(|_| &par))
            .unwrap();
    }
    b.history("logits", &st.logits).unwrap();
    if let Some((_, p)) = &st.cross_attention {
        b.history("attn", p).unwrap();
    }
    // After its logits, each step writes its rows' argmax into `tokens` (what the next step
    // consumes); the history keeps them: chosen[s] = argmax of step s.
    for phase in 0..phases {
        record_topk(b.step(phase), &st.logits, &ids, &logp).unwrap();
    }
    b.history("chosen", &tokens).unwrap();
    let plan = b.build().unwrap();
    let mut w = m.decoder_writes(&st, src).unwrap();
    let start = m.config().decoder_start_id().unwrap();
    w.u32s("tokens", &vec![start; rows]);
    w.u32s("parents", parents.unwrap_or(&vec![0; rows]));
    plan.run(
        &w,
        Schedule {
            max_steps: steps,
            first_chunk: 3,
            chunk: 2,
        },
    )
    .unwrap()
}

#[test]
fn decoder_logits_match_reference_at_every_step() {
    let gpu = gpu();
    for (name, spec, lens) in [
        ("dec_a", spec_a(), vec![9, 1, 4]),
        ("dec_b", spec_b(), vec![3, 8]),
        ("dec_c", spec_c(), vec![6]),
    ] {
        let dir = write_model(name, &spec, 5);
        let (m, r) = load(&gpu, &dir);
        let src = sources(&spec, &lens, 9);
        let steps = 7;
        let res = run_decode(&m, &src, 1, steps, None, None);
        let logits = res.f32s("logits").unwrap();
        let chosen = res.u32s("chosen").unwrap();
        let dv = spec.dv();
        let start = m.config().decoder_start_id().unwrap();
        for (i, x) in src.iter().enumerate() {
            let mut seq = vec![start];
            seq.extend((0..steps - 1).map(|s| chosen[s * src.len() + i]));
            let enc = r.encode(x).unwrap();
            let want = r.decoder_logits(&enc, &seq).unwrap();
            let got: Vec<f32> = (0..steps)
                .flat_map(|s| {
                    let at = (s * src.len() + i) * dv;
                    logits[at..at + dv].to_vec()
                })
                .collect();
            let want: Vec<f64> = want.iter().map(|&v| v as f64).collect();
            assert_close(&format!("{name} row {i}"), &got, &want, 2e-4, 2e-4);
        }
    }
}

#[test]
fn beam_rows_reorder_their_caches_by_parents() {
    let gpu = gpu();
    let spec = spec_a();
    let dir = write_model("beam", &spec, 21);
    let (m, r) = load(&gpu, &dir);
    let src = sources(&spec, &[5, 2], 4);
    let (beams, steps) = (3, 6);
    // Every step, rows move within their item: (0 1 2) -> (2 0 0), (3 4 5) -> (4 5 3).
    let parents = [2u32, 0, 0, 4, 5, 3];
    let res = run_decode(&m, &src, beams, steps, Some(&parents), None);
    let logits = res.f32s("logits").unwrap();
    let chosen = res.u32s("chosen").unwrap();
    let rows = src.len() * beams;
    let dv = spec.dv();
    let mut stepper = r.stepper(&src, beams).unwrap();
    let start = m.config().decoder_start_id().unwrap();
    let mut tokens = vec![start; rows];
    for s in 0..steps {
        let want = stepper.step(&tokens, Some(&parents)).unwrap();
        let got = &logits[s * rows * dv..(s + 1) * rows * dv];
        let want: Vec<f64> = want.iter().map(|&v| v as f64).collect();
        assert_close(&format!("beam step {s}"), got, &want, 2e-4, 2e-4);
        tokens = chosen[s * rows..(s + 1) * rows].to_vec();
    }
}

#[test]
fn kept_cross_attention_matches_reference() {
    let gpu = gpu();
    let spec = spec_b();
    let dir = write_model("attn", &spec, 8);
    let (m, r) = load(&gpu, &dir);
    let src = sources(&spec, &[6, 3], 2);
    let (steps, layer, s) = (4, 1, 6);
    let res = run_decode(&m, &src, 1, steps, None, Some(layer));
    let attn = res.f32s("attn").unwrap();
    let chosen = res.u32s("chosen").unwrap();
    let h = spec.dec_heads;
    let start = m.config().decoder_start_id().unwrap();
    for (i, x) in src.iter().enumerate() {
        let mut seq = vec![start];
        seq.extend((0..steps - 1).map(|t| chosen[t * src.len() + i]));
        let out = r.decode(&r.encode(x).unwrap(), &seq).unwrap();
        let want = &out.cross_attention[layer]; // [H, T, S_i]
        for t in 0..steps {
            for hh in 0..h {
                let at = ((t * src.len() + i) * h + hh) * s;
                let got = &attn[at..at + s];
                let mut w: Vec<f64> = (0..x.len())
                    .map(|j| want[(hh * steps + t) * x.len() + j])
                    .collect();
                w.resize(s, 0.0); // padded source positions get no weight
                assert_close(
                    &format!("attn row {i} step {t} head {hh}"),
                    got,
                    &w,
                    1e-5,
                    1e-4,
                );
            }
        }
    }
}

#[test]
fn broken_folders_are_clear_errors() {
    let gpu = gpu();
    let spec = spec_a();
    let load_err = |dir: &Path| -> String {
        let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let cfg = match MarianConfig::from_json_str(&cfg) {
            Ok(c) => c,
            Err(e) => return e.to_string(),
        };
        let file = match heedful::models::marian::weights::open_weights(dir) {
            Ok(f) => f,
            Err(e) => return e.to_string(),
        };
        match MarianModel::new(&gpu, cfg, &file, Hold::F16) {
            Ok(_) => panic!("{} loaded", dir.display()),
            Err(e) => e.to_string(),
        }
    };
    // Only pytorch_model.bin: the error names the converter.
    let dir = folder("bin_only");
    std::fs::write(dir.join("config.json"), spec.config_json()).unwrap();
    std::fs::write(dir.join("pytorch_model.bin"), b"PK\x03\x04").unwrap();
    let e = load_err(&dir);
    assert!(e.contains("weights/marian_bin_to_safetensors.py"), "{e}");
    // A tensor of the wrong shape: the error names it and both shapes.
    let mut t = spec.tensors(1);
    let fc1 = t
        .iter_mut()
        .find(|x| x.0 == "model.decoder.layers.1.fc1.weight")
        .unwrap();
    fc1.1 = vec![spec.dec_ffn + 1, spec.d];
    fc1.2.extend(vec![0.0; spec.d]);
    let dir = folder("bad_shape");
    std::fs::write(dir.join("config.json"), spec.config_json()).unwrap();
    write_safetensors(&dir.join("model.safetensors"), &t, "F32");
    let e = load_err(&dir);
    assert!(
        e.contains("model.decoder.layers.1.fc1.weight")
            && e.contains("[37, 20]")
            && e.contains("[36, 20]"),
        "{e}"
    );
    // A missing tensor.
    let t: Vec<_> = spec
        .tensors(1)
        .into_iter()
        .filter(|x| x.0 != "model.encoder.layers.0.self_attn.k_proj.bias")
        .collect();
    let dir = folder("missing");
    std::fs::write(dir.join("config.json"), spec.config_json()).unwrap();
    write_safetensors(&dir.join("model.safetensors"), &t, "F32");
    let e = load_err(&dir);
    assert!(
        e.contains("model.encoder.layers.0.self_attn.k_proj.bias"),
        "{e}"
    );
    // A config with fewer layers than the file: refused, naming the extra layer's tensor.
    let mut fewer = spec.clone();
    fewer.dec_layers = 2;
    let dir = folder("extra_layer");
    std::fs::write(dir.join("config.json"), fewer.config_json()).unwrap();
    write_safetensors(&dir.join("model.safetensors"), &spec.tensors(1), "F32");
    let e = load_err(&dir);
    assert!(
        e.contains("model.decoder.layers.2.") && e.contains("decoder_layers = 2"),
        "{e}"
    );
    // Pre-LN configs are refused.
    let mut v: serde_json::Value = serde_json::from_str(&spec.config_json()).unwrap();
    v["normalize_before"] = true.into();
    let dir = folder("pre_ln");
    std::fs::write(dir.join("config.json"), v.to_string()).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("normalize_before"), "{e}");
    // No weights at all.
    let dir = folder("empty");
    std::fs::write(dir.join("config.json"), spec.config_json()).unwrap();
    let e = load_err(&dir);
    assert!(e.contains("model.safetensors"), "{e}");
}

/// Runs `opts`'s search over `src` on the GPU as the translator does, keeping every step's
/// logits: (hypotheses per item, logits `[steps, R, V]`).
fn search_with_logits(
    m: &MarianModel,
    src: &[Vec<u32>],
    opts: &GenerateOptions,
) -> (Vec<Vec<Hypothesis>>, Vec<f32>) {
    let s = src.iter().map(Vec::len).max().unwrap();
    let mut b = LoopBuilder::new(m.gpu(), opts.max_steps());
    let st = m
        .declare_decoder(&mut b, src.len(), s, opts.num_beams, None)
        .unwrap();
    let search = Search::declare(&mut b, opts, src.len(), m.config().decoder_vocab()).unwrap();
    let phases = if search.parents().is_some() { 2 } else { 1 };
    for phase in 0..phases {
        m.record_decoder_step(&mut b, &st, phase, search.tokens(), search.parents())
            .unwrap();
        search
            .record_step(&mut b, phase, &st.logits, &st.step)
            .unwrap();
    }
    b.history("logits", &st.logits).unwrap();
    let plan = b.build().unwrap();
    let res = plan
        .run(
            &m.decoder_writes(&st, src).unwrap(),
            Schedule {
                max_steps: opts.max_steps(),
                first_chunk: 2,
                chunk: 3,
            },
        )
        .unwrap();
    (
        search.finish(&res, res.steps_run).unwrap(),
        res.f32s("logits").unwrap(),
    )
}

/// The opus-mt-en-zh-sized random model (`heedful::bench::marian_random`, F16 values; the writer
/// is a bench tool, so this test needs the `tools` feature):
/// Hugging Face's greedy ids and the first steps' logits (top 16 values and ids, row sums) from
/// `weights/fixtures/marian_opus_random.json`.
#[cfg(feature = "tools")]
#[test]
fn opus_sized_random_model_matches_hugging_face() {
    let gpu = gpu();
    let dir = folder("opus_random");
    common::marian_random::write_random_opus_folder(&dir).unwrap();
    let fix: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/fixtures/marian_opus_random.json"),
        )
        .unwrap(),
    )
    .unwrap();
    // Every value is an f16, so holding the weights in f16 is exact.
    let t = Translator::load_with(&gpu, &dir, Hold::F16).unwrap();
    let v = t.config().decoder_vocab();
    for input in fix["inputs"].as_array().unwrap() {
        let src: Vec<u32> = serde_json::from_value(input["input_ids"].clone()).unwrap();
        let want: Vec<u32> = serde_json::from_value(input["greedy_ids"].clone()).unwrap();
        let opts = t
            .options(&GenerationParams {
                num_beams: Some(1),
                max_length: Some(want.len()),
                ..Default::default()
            })
            .unwrap();
        let got = t.translate_ids(std::slice::from_ref(&src), &opts).unwrap();
        assert_eq!(got[0].ids, want, "greedy ids of {src:?}");
        let (_, logits) = search_with_logits(t.model(), std::slice::from_ref(&src), &opts);
        for step in input["steps"].as_array().unwrap() {
            let pos = step["position"].as_u64().unwrap() as usize;
            let row = &logits[pos * v..(pos + 1) * v];
            let ids: Vec<usize> = serde_json::from_value(step["top_ids"].clone()).unwrap();
            let vals: Vec<f64> = serde_json::from_value(step["top_values"].clone()).unwrap();
            let got: Vec<f32> = ids.iter().map(|&i| row[i]).collect();
            assert_close(
                &format!("{src:?} position {pos} top values"),
                &got,
                &vals,
                2e-3,
                1e-3,
            );
            // Nothing outside the fixture's top 16 beats its 16th value.
            let floor = vals[vals.len() - 1] as f32 + 2e-3;
            let above = row
                .iter()
                .enumerate()
                .filter(|(i, &x)| x > floor && !ids.contains(i))
                .count();
            assert_eq!(above, 0, "{src:?} position {pos}: logits above the top 16");
            let sum: f64 = row.iter().map(|&x| x as f64).sum();
            let sum_sq: f64 = row.iter().map(|&x| (x as f64) * (x as f64)).sum();
            let (ws, wq) = (
                step["row_sum"].as_f64().unwrap(),
                step["row_sum_sq"].as_f64().unwrap(),
            );
            assert!(
                (sum - ws).abs() < 0.5 + 1e-3 * ws.abs(),
                "row sum {sum} vs {ws}"
            );
            assert!(
                (sum_sq - wq).abs() < 1e-3 * wq,
                "row sum sq {sum_sq} vs {wq}"
            );
        }
    }
}

/// The translator's own refusals: inputs longer than max_position_embeddings, ids outside the
/// vocabulary, empty inputs, no tokenizer files for texts.
#[test]
fn translator_refuses_bad_inputs_clearly() {
    let gpu = gpu();
    let spec = spec_c();
    let dir = write_model("refuse", &spec, 3);
    let t = Translator::load(&gpu, &dir).unwrap();
    let o = t.default_options();
    let long = vec![5u32; spec.positions + 1];
    let e = t.translate_ids(&[long], &o).unwrap_err().to_string();
    assert!(
        e.contains("max_position_embeddings") && e.contains("65 tokens"),
        "{e}"
    );
    let e = t
        .translate_ids(&[vec![spec.vocab as u32, 0]], &o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("outside the source vocabulary"), "{e}");
    let e = t.translate_ids(&[vec![]], &o).unwrap_err().to_string();
    assert!(e.contains("input 0: no tokens"), "{e}");
    // Every input is checked before the first run: the index is the caller's, not the run's
    // (a list of 300 is decoded in runs of at most 256 rows).
    let mut many = vec![vec![5u32, 0]; 300];
    many[299].clear();
    let e = t.translate_ids(&many, &o).unwrap_err().to_string();
    assert!(e.contains("input 299: no tokens"), "{e}");
    let e = t.translate(&["hello"], &o).unwrap_err().to_string();
    assert!(e.contains("tokenizer files") && e.contains("--ids"), "{e}");
    let too_long = t.options(&GenerationParams {
        max_length: Some(spec.positions + 2),
        ..Default::default()
    });
    let e = match too_long {
        Ok(o) => t.translate_ids(&[vec![1, 0]], &o).unwrap_err().to_string(),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("max_length") || e.contains("max_position"),
        "{e}"
    );
    // The same translator still works.
    assert_eq!(t.translate_ids(&[vec![3, 0]], &o).unwrap().len(), 1);
}

fn fixture(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("weights/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (written by weights/make_marian_fixtures.py)",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap()
}

fn bundled() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/marian")
}

fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).unwrap()
}

/// The caller's options of a fixture run (`kwargs` given to generate on top of
/// generation_config.json).
fn params_of(kwargs: &serde_json::Value) -> GenerationParams {
    let n = |k: &str| kwargs.get(k).and_then(|v| v.as_u64()).map(|v| v as usize);
    GenerationParams {
        num_beams: n("num_beams"),
        max_length: n("max_length"),
        max_new_tokens: n("max_new_tokens"),
        num_return_sequences: n("num_return_sequences"),
        length_penalty: kwargs.get("length_penalty").and_then(|v| v.as_f64()),
        early_stopping: kwargs
            .get("early_stopping")
            .map(|v| heedful::models::marian::search::EarlyStopping::from_json(v).unwrap()),
        ..Default::default()
    }
}

/// Runs every generate run of a fixture file through the translator, batch by batch as Hugging
/// Face ran them (padded batches, the same compositions): every returned sequence must equal
/// Hugging Face's, except for inputs whose scores came within 1e-4 of a tie at some step
/// (`min_gap`), which are set aside, counted and listed.
fn check_generate_fixture(name: &str) {
    let gpu = gpu();
    let t = Translator::load(&gpu, &bundled()).unwrap();
    let fix = fixture(name);
    let inputs = fix["inputs"].as_array().unwrap();
    let mut checked = 0;
    let mut aside = Vec::new();
    let mut failures = Vec::new();
    for run in fix["runs"].as_array().unwrap() {
        let rname = run["name"].as_str().unwrap();
        let opts = t.options(&params_of(&run["kwargs"])).unwrap();
        let results: std::collections::HashMap<u64, &serde_json::Value> = run["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["input"].as_u64().unwrap(), r))
            .collect();
        for batch in run["batches"].as_array().unwrap() {
            let idx: Vec<u64> = serde_json::from_value(batch["inputs"].clone()).unwrap();
            let src: Vec<Vec<u32>> = idx
                .iter()
                .map(|&i| ids_of(&inputs[i as usize]["source_ids"]))
                .collect();
            let got = t.translate_ids(&src, &opts).unwrap();
            for (i, g) in idx.iter().zip(&got) {
                let want = results[i];
                let want_ids: Vec<Vec<u32>> = serde_json::from_value(want["ids"].clone()).unwrap();
                let got_ids: Vec<Vec<u32>> = g.hypotheses.iter().map(|h| h.ids.clone()).collect();
                let gap = want["min_gap"].as_f64().unwrap_or(f64::INFINITY);
                if got_ids == want_ids {
                    checked += 1;
                } else if gap < 1e-4 {
                    aside.push(format!("{rname} input {i} (min_gap {gap:.2e})"));
                } else {
                    failures.push(format!(
                        "{rname} input {i} (min_gap {gap:.2e}): got {got_ids:?}, HF {want_ids:?}"
                    ));
                }
            }
        }
    }
    println!(
        "{name}: {checked} equal to Hugging Face, {} set aside as near ties: {aside:?}",
        aside.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} differ from Hugging Face: {:#?}",
        failures.len(),
        checked + failures.len() + aside.len(),
        &failures[..failures.len().min(10)]
    );
    assert!(checked >= 200, "only {checked} inputs compared");
}

#[test]
fn bundled_model_greedy_equals_hugging_face_generate() {
    check_generate_fixture("marian_generate_greedy.json");
}

#[test]
fn bundled_model_beam_equals_hugging_face_generate() {
    check_generate_fixture("marian_generate_beam.json");
}

/// Hugging Face's encoder states and teacher-forced logits of the bundled model (F16 weights,
/// float32 arithmetic): encoder rows, and the top-16 logits and row sums at each decoder
/// position of the greedy prefix.
#[test]
fn bundled_model_encoder_and_logits_match_hugging_face() {
    let gpu = gpu();
    let t = Translator::load(&gpu, &bundled()).unwrap();
    let m = t.model();
    let fix = fixture("marian_logits.json");
    let pad = m.config().pad_id().unwrap();
    for e in fix["encoder"].as_array().unwrap() {
        let src = ids_of(&e["source_ids"]);
        let want: Vec<Vec<f64>> = serde_json::from_value(e["last_hidden_state"].clone()).unwrap();
        let got = m.encoder().encode(std::slice::from_ref(&src), pad).unwrap();
        let want: Vec<f64> = want.into_iter().flatten().collect();
        assert_close(&format!("encoder {src:?}"), &got, &want, 2e-3, 2e-3);
    }
    let v = m.config().decoder_vocab();
    for x in fix["inputs"].as_array().unwrap() {
        let src = ids_of(&x["source_ids"]);
        let dec = ids_of(&x["decoder_ids"]);
        let opts = t
            .options(&GenerationParams {
                num_beams: Some(1),
                max_length: Some(dec.len() + 1),
                ..Default::default()
            })
            .unwrap();
        let (hyps, logits) = search_with_logits(m, std::slice::from_ref(&src), &opts);
        for p in x["positions"].as_array().unwrap() {
            let pos = p["position"].as_u64().unwrap() as usize;
            // Teacher forcing holds while the greedy prefix is the fixture's.
            if hyps[0][0].ids.get(..=pos) != dec.get(..=pos) {
                panic!(
                    "greedy prefix {:?} left HF's {dec:?} before position {pos}",
                    hyps[0][0].ids
                );
            }
            let row = &logits[pos * v..(pos + 1) * v];
            let ids: Vec<usize> = serde_json::from_value(p["top_ids"].clone()).unwrap();
            let vals: Vec<f64> = serde_json::from_value(p["top_values"].clone()).unwrap();
            let got: Vec<f32> = ids.iter().map(|&i| row[i]).collect();
            assert_close(&format!("{src:?} position {pos}"), &got, &vals, 2e-3, 1e-3);
            let sum: f64 = row.iter().map(|&x| x as f64).sum();
            let ws = p["row_sum"].as_f64().unwrap();
            assert!(
                (sum - ws).abs() < 0.05 + 1e-4 * ws.abs(),
                "row sum {sum} vs {ws}"
            );
        }
    }
}

/// On a device whose storage bindings are small (as a browser's may be), a batch whose KV cache
/// would not fit one binding is decoded in several runs, each within the limit, with the same
/// result as one run on the full device; a single input that cannot fit is a limit error naming
/// the binding limit, not a failed allocation.
#[test]
fn runs_split_to_fit_a_small_storage_binding_limit() {
    let full = Translator::load(&gpu(), &bundled()).unwrap();
    let opts = full
        .options(&GenerationParams {
            num_beams: Some(4),
            // The longest the model allows: a row's KV cache (260 KB) outweighs every weight.
            max_length: Some(128),
            ..Default::default()
        })
        .unwrap();
    let model = full.model();
    let per_row = model.bytes_per_row(opts.max_steps(), 8, false);
    // Room for 2 inputs of 4 beams per binding: 5 inputs take 3 runs.
    let small = Gpu::new(&heedful::GpuOptions {
        max_storage_binding: Some(8 * per_row + per_row / 2),
        ..heedful::GpuOptions::from_env()
    })
    .unwrap();
    let limited = Translator::load(&small, &bundled()).unwrap();
    assert_eq!(limited.model().rows_fitting(opts.max_steps(), 8, false), 8);
    let texts = [
        "green tea",
        "to abandon",
        "a small dog",
        "library",
        "the river",
    ];
    let want = full.translate(&texts, &opts).unwrap();
    let got = limited.translate(&texts, &opts).unwrap();
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(w.ids, g.ids);
    }
    // A binding that holds the weights (the 1.1 MB embedding) but not one input's 8 beams.
    let eight = full
        .options(&GenerationParams {
            num_beams: Some(8),
            max_length: Some(128),
            ..Default::default()
        })
        .unwrap();
    let tiny = Gpu::new(&heedful::GpuOptions {
        max_storage_binding: Some(5 * per_row),
        ..heedful::GpuOptions::from_env()
    })
    .unwrap();
    let t = Translator::load(&tiny, &bundled()).unwrap();
    let err = t.translate(&texts[..1], &eight).unwrap_err().to_string();
    assert!(
        err.contains("max_storage_buffer_binding_size") && err.contains("8 beams"),
        "{err}"
    );
}

/// `MarianModel::weight_bytes` of the bundled model (F16 file, held in f16) against the sizes
/// read from the safetensors header and config: every stored tensor once in f16 except
/// `final_logits_bias` (f32) and the self-attention q/k/v projections of the encoder and the
/// decoder, which are held only as each layer's fused QKV weight `[3E, E]` and bias `[3E]` f16; one sinusoidal position table `[P, E]`
/// f32 (shared by encoder and decoder; the embedding scale is a kernel parameter, not a buffer);
/// each buffer rounded up to 16 bytes as the engine allocates them.
#[test]
fn weight_bytes_counts_every_distinct_weight_buffer() {
    let pad = |b: u64| b.div_ceil(16) * 16;
    let gpu = gpu();
    let dir = bundled();
    let t = Translator::load(&gpu, &dir).unwrap();
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut want = 0u64;
    for (name, v) in header.as_object().unwrap() {
        if name == "__metadata__" {
            continue;
        }
        assert_eq!(v["dtype"], "F16", "{name}");
        let numel: u64 = v["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .product();
        let qkv = (name.starts_with("model.encoder.layers.")
            || name.starts_with("model.decoder.layers."))
            && ["q_proj", "k_proj", "v_proj"]
                .iter()
                .any(|p| name.contains(&format!(".self_attn.{p}.")));
        if !qkv {
            want += pad(numel * if name == "final_logits_bias" { 4 } else { 2 });
        }
    }
    let c = t.config();
    let (e, p) = (c.d_model as u64, c.max_position_embeddings as u64);
    assert!(c.scale_embedding && c.static_position_embeddings);
    want += pad(p * e * 4);
    want += (c.encoder_layers + c.decoder_layers) as u64 * (pad(3 * e * e * 2) + pad(3 * e * 2));
    assert_eq!(t.model().weight_bytes(), want);
}
