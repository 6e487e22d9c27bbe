//! heedful in the browser: the engine on WebGPU through wasm-bindgen.
//!
//! Everything here is a thin binding over the engine's async entry points ([`Gpu::new_async`],
//! [`Seq2Seq::decode_async`], [`BertEncoder::embed_async`], [`Translator::translate_async`]); the
//! models load from bytes the page fetched ([`Seq2Seq::from_bytes`], [`BertEncoder::from_files`],
//! [`Translator::from_files`]). `web/heedful.js` wraps these classes in the typed JavaScript API.

use heedful::graph::Session;
use heedful::models::bert::{BertEncoder, BertFiles, LoadOptions};
use heedful::models::marian::search::GenerationParams;
use heedful::models::marian::{MarianFiles, MarianTokenizerFiles, Translator};
use heedful::models::seq2seq::{DecodeOptions, Seq2Seq};
use heedful::weights::WeightFile;
use heedful::{Gpu, GpuOptions};
use js_sys::{Array, Float32Array, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

fn js_err(e: heedful::Error) -> JsError {
    JsError::new(&e.to_string())
}

fn set(obj: &Object, key: &str, value: impl Into<JsValue>) -> Result<(), JsError> {
    Reflect::set(obj, &JsValue::from_str(key), &value.into())
        .map(drop)
        .map_err(|_| JsError::new(&format!("cannot set {key}")))
}

/// A panic becomes a console error naming its message (instead of `unreachable`).
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&JsValue::from_str(&format!("heedful panicked: {info}")));
    }));
}

/// The GPU device (WebGPU adapter) everything runs on.
#[wasm_bindgen]
pub struct Engine {
    gpu: Gpu,
}

#[wasm_bindgen]
impl Engine {
    /// Requests the browser's WebGPU adapter and device. Without `shader-f16` the kernels read f16
    /// weights as packed u32 (`unpack2x16float`).
    pub async fn create() -> Result<Engine, JsError> {
        let options = GpuOptions {
            backends: Some("webgpu".into()),
            ..GpuOptions::default()
        };
        let gpu = Gpu::new_async(&options).await.map_err(js_err)?;
        Ok(Engine { gpu })
    }

    /// `{adapter, backend, features, f16}`: what the engine runs on.
    pub fn info(&self) -> Result<JsValue, JsError> {
        let c = self.gpu.caps();
        let o = Object::new();
        set(&o, "adapter", c.adapter_name.clone())?;
        set(&o, "backend", format!("{:?}", c.backend))?;
        let features: Array = c
            .feature_names()
            .into_iter()
            .map(JsValue::from_str)
            .collect();
        set(&o, "features", features)?;
        set(
            &o,
            "f16",
            if c.native_f16 { "native" } else { "packed u32" },
        )?;
        set(&o, "maxStorageBuffersPerStage", c.max_storage_buffers)?;
        Ok(o.into())
    }
}

/// A seq2seq grapheme-to-phoneme model (an exported `.safetensors` file).
#[wasm_bindgen]
pub struct G2p {
    gpu: Gpu,
    model: Seq2Seq,
}

#[wasm_bindgen]
impl G2p {
    /// Loads the model from the file's bytes; `label` names it in errors.
    pub fn load(engine: &Engine, bytes: Vec<u8>, label: &str) -> Result<G2p, JsError> {
        let model = Seq2Seq::from_bytes(&engine.gpu, bytes, label).map_err(js_err)?;
        Ok(G2p {
            gpu: engine.gpu.clone(),
            model,
        })
    }

    /// Converts `words` in one batch (beam 1: greedy). Returns one object per word:
    /// `{word, phonemes, ended, inputs: string[], outputs: string[], attention: Float32Array[]}`
    /// with `attention[step][input]` (the rows of the heatmap, input symbols with the end
    /// symbol, output symbols with the end token where it was reached).
    pub async fn run(&self, words: Vec<String>, beam: usize) -> Result<Array, JsError> {
        let ids = words
            .iter()
            .map(|w| self.model.encode_text(w))
            .collect::<heedful::Result<Vec<_>>>()
            .map_err(js_err)?;
        let opts = DecodeOptions {
            beam: beam.max(1),
            keep_attention: true,
            ..Default::default()
        };
        let decoded = self
            .model
            .decode_async(&self.gpu, &ids, &opts)
            .await
            .map_err(js_err)?;
        let cfg = self.model.config();
        let out = Array::new();
        for ((word, ids), d) in words.iter().zip(&ids).zip(&decoded) {
            let o = Object::new();
            set(&o, "word", word.clone())?;
            set(&o, "phonemes", self.model.target_text(&d.tokens))?;
            set(&o, "ended", d.ended)?;
            let mut inputs: Vec<String> = ids
                .iter()
                .map(|&i| cfg.src_tokens.get(i as usize).cloned().unwrap_or_default())
                .collect();
            if let Some(e) = cfg.src_eos_id {
                inputs.push(cfg.src_tokens.get(e).cloned().unwrap_or_default());
            }
            let mut outputs: Vec<String> = d
                .tokens
                .iter()
                .map(|&t| self.model.target_text(&[t]))
                .collect();
            if d.attention.len() > outputs.len() {
                outputs.push(self.model.target_text(&[cfg.eos_id as u32]));
            }
            let rows: Array = d
                .attention
                .iter()
                .map(|r| JsValue::from(Float32Array::from(r.as_slice())))
                .collect();
            let strings = |v: Vec<String>| -> Array { v.into_iter().map(JsValue::from).collect() };
            set(&o, "inputs", strings(inputs))?;
            set(&o, "outputs", strings(outputs))?;
            set(&o, "attention", rows)?;
            out.push(&o);
        }
        Ok(out)
    }
}

/// A BERT sentence-embedding model (a Hugging Face folder's files).
#[wasm_bindgen]
pub struct Bert {
    encoder: BertEncoder,
    session: Session,
}

#[wasm_bindgen]
impl Bert {
    /// Loads the model from `config.json`, `tokenizer.json` and `model.safetensors` bytes
    /// (F32 weights are held in f16; `sentence` is `sentence_bert_config.json` or empty).
    pub fn load(
        engine: &Engine,
        config: Vec<u8>,
        tokenizer: Vec<u8>,
        weights: Vec<u8>,
        sentence: Vec<u8>,
    ) -> Result<Bert, JsError> {
        let files = BertFiles {
            config_json: config,
            tokenizer_json: tokenizer,
            sentence_config_json: (!sentence.is_empty()).then_some(sentence),
            weights: WeightFile::from_bytes(weights, "model.safetensors").map_err(js_err)?,
        };
        let encoder = BertEncoder::from_files(
            &engine.gpu,
            "model".as_ref(),
            files,
            &LoadOptions::default(),
        )
        .map_err(js_err)?;
        let session = encoder.session();
        Ok(Bert { encoder, session })
    }

    /// One L2-normalized embedding per text.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Array, JsError> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let vecs = self
            .encoder
            .embed_async(&self.session, &refs)
            .await
            .map_err(js_err)?;
        Ok(vecs
            .iter()
            .map(|v| JsValue::from(Float32Array::from(v.as_slice())))
            .collect())
    }
}

/// The bytes of `files[name]` (a `Uint8Array`), or None when the page did not give that file.
fn file_opt(files: &Object, name: &str) -> Result<Option<Vec<u8>>, JsError> {
    let v = Reflect::get(files, &JsValue::from_str(name))
        .map_err(|_| JsError::new(&format!("cannot read files[{name:?}]")))?;
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    let bytes = v
        .dyn_into::<Uint8Array>()
        .map_err(|_| JsError::new(&format!("files[{name:?}] is not a Uint8Array")))?;
    Ok(Some(bytes.to_vec()))
}

/// A MarianMT translation model (a Hugging Face folder's files).
#[wasm_bindgen]
pub struct Marian {
    translator: Translator,
}

#[wasm_bindgen]
impl Marian {
    /// Loads the model from `files`, an object from file name to bytes (`Uint8Array`):
    /// `config.json`, `model.safetensors`, `source.spm`, `target.spm`, `vocab.json`, and where
    /// the folder has them `generation_config.json`, `tokenizer_config.json`,
    /// `special_tokens_map.json`, `target_vocab.json`. `base` (the folder's URL) names the files
    /// in errors. Weights are held in f16.
    pub fn load(engine: &Engine, base: &str, files: &Object) -> Result<Marian, JsError> {
        let dir = std::path::Path::new(base.trim_end_matches('/'));
        let need = |name: &str| -> Result<Vec<u8>, JsError> {
            file_opt(files, name)?
                .ok_or_else(|| JsError::new(&format!("{}: not given", dir.join(name).display())))
        };
        let weights =
            WeightFile::from_bytes(need("model.safetensors")?, dir.join("model.safetensors"))
                .map_err(js_err)?;
        let tokenizer = MarianTokenizerFiles {
            source_spm: need("source.spm")?,
            target_spm: need("target.spm")?,
            vocab_json: need("vocab.json")?,
            target_vocab_json: file_opt(files, "target_vocab.json")?,
            tokenizer_config_json: file_opt(files, "tokenizer_config.json")?,
            special_tokens_map_json: file_opt(files, "special_tokens_map.json")?,
        };
        let files = MarianFiles {
            config_json: need("config.json")?,
            generation_config_json: file_opt(files, "generation_config.json")?,
            weights,
            tokenizer: Some(tokenizer),
        };
        let translator = Translator::from_files(&engine.gpu, dir, files).map_err(js_err)?;
        Ok(Marian { translator })
    }

    /// `{encoderLayers, decoderLayers, heads, numBeams, maxLength}`: the model's shape and its
    /// default search (generation_config.json).
    pub fn info(&self) -> Result<JsValue, JsError> {
        let c = self.translator.config();
        let o = self.translator.default_options();
        let info = Object::new();
        set(&info, "encoderLayers", c.encoder_layers)?;
        set(&info, "decoderLayers", c.decoder_layers)?;
        set(&info, "heads", c.decoder_attention_heads)?;
        set(&info, "numBeams", o.num_beams)?;
        set(&info, "maxLength", o.max_length())?;
        Ok(info.into())
    }

    /// Translates `texts` in one batch with `beams` (default: generation_config.json's) and
    /// `max_length` (decoder start included; default: the config's). With `attention`, the first
    /// input's cross-attention of decoder layer `layer` (default: the last), head `head` (default:
    /// the mean over heads) is kept. Returns one object per text: `{text, ids}` (`ids` as
    /// Hugging Face `generate` returns the row: decoder start first, the end token when reached),
    /// the first with `attention: {layer, head, sourcePieces, targetPieces, rows}` where
    /// `rows[t][s]` is the weight target piece `t` put on source piece `s`.
    pub async fn translate(
        &self,
        texts: Vec<String>,
        beams: Option<usize>,
        max_length: Option<usize>,
        attention: bool,
        layer: Option<usize>,
        head: Option<usize>,
    ) -> Result<Array, JsError> {
        let tr = &self.translator;
        let opts = tr
            .options(&GenerationParams {
                num_beams: beams,
                max_length,
                ..Default::default()
            })
            .map_err(js_err)?;
        let last = tr.config().decoder_layers.saturating_sub(1);
        let layer = attention.then(|| layer.unwrap_or(last));
        if let Some(l) = layer.filter(|&l| l > last) {
            return Err(JsError::new(&format!(
                "attention layer {l}: the decoder has {} layers",
                last + 1
            )));
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let res = tr
            .translate_async(&refs, &opts, layer)
            .await
            .map_err(js_err)?;
        let out = Array::new();
        for (i, t) in res.iter().enumerate() {
            let o = Object::new();
            set(&o, "text", t.text.clone().unwrap_or_default())?;
            let ids: Array = t.ids.iter().map(|&id| JsValue::from(id)).collect();
            set(&o, "ids", ids)?;
            if let (Some(a), Some(tok)) = (&t.attention, tr.tokenizer()) {
                let m = a.matrix(head).map_err(js_err)?;
                let strings =
                    |v: Vec<String>| -> Array { v.into_iter().map(JsValue::from).collect() };
                let source = tok.source_pieces(&texts[i]).map_err(js_err)?;
                let target = tok.target_pieces(t.ids.get(1..).unwrap_or(&[]));
                let rows: Array = m
                    .chunks(a.src_len.max(1))
                    .map(|r| JsValue::from(Float32Array::from(r)))
                    .collect();
                let att = Object::new();
                set(&att, "layer", a.layer)?;
                set(&att, "head", head.map_or(JsValue::NULL, JsValue::from))?;
                set(&att, "sourcePieces", strings(source))?;
                set(&att, "targetPieces", strings(target))?;
                set(&att, "rows", rows)?;
                set(&o, "attention", att)?;
            }
            out.push(&o);
        }
        Ok(out)
    }
}
