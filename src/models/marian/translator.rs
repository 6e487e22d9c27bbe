//! [`Translator`]: a Marian folder loaded on the GPU, translating texts (or source ids) with
//! Hugging Face `generate`'s rules, the whole decode on the GPU.
//!
//! One call is one loop run: the encoder (recorded into the loop's init phase), the cross K/V
//! projections, then chunks of KV-cached decoder steps each followed by the search's selection
//! ([`super::search::Search`]), with one small readback per chunk. Plans are cached per shape
//! (items, source length rounded up to a multiple of 8, options, kept attention layer) in a
//! bounded [`PlanCache`].
//!
//! ```no_run
//! use heedful::models::marian::Translator;
//! let gpu = heedful::Gpu::shared()?;
//! let t = Translator::load(&gpu, "weights/marian".as_ref())?;
//! let out = t.translate(&["How are you?"], &t.default_options())?;
//! println!("{:?} {:?}", out[0].text, out[0].ids);
//! # Ok::<(), heedful::Error>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{ChunkTime, LoopBuilder, LoopPlan, PlanCache, Schedule};
use crate::weights::{Hold, WeightFile};

use super::config::{GenerationConfig, MarianConfig};
use super::decoder::{DecoderState, MarianModel};
use super::search::{GenerateOptions, GenerationParams, Hypothesis, Search};
use super::tokenizer::{MarianTokenizer, MarianTokenizerFiles};
use super::weights::open_weights;

const OP: &str = "marian translate";
/// Decoder rows (items x beams) of one run; larger batches are split into runs.
pub const MAX_ROWS: usize = 256;
/// Plans kept per translator (least recently used out first).
pub const MAX_PLANS: usize = 16;

/// Cross-attention probabilities of one hypothesis: for each generated token, the attention of
/// the decoder query that chose it over the source tokens, per head.
#[derive(Clone, Debug)]
pub struct CrossAttention {
    /// The decoder layer.
    pub layer: usize,
    /// Heads H.
    pub heads: usize,
    /// Source tokens S (the input's own length, `</s>` included).
    pub src_len: usize,
    /// `[T, H, S]`, T = generated tokens.
    pub probs: Vec<f32>,
}

impl CrossAttention {
    /// Generated tokens T.
    pub fn steps(&self) -> usize {
        self.probs.len() / (self.heads * self.src_len).max(1)
    }

    /// `[T, S]`: head `head`, or the mean over heads when `None`.
    pub fn matrix(&self, head: Option<usize>) -> Result<Vec<f32>> {
        let (h, s) = (self.heads, self.src_len);
        if let Some(k) = head.filter(|&k| k >= h) {
            return Err(Error::invalid(
                OP,
                format!("attention head {k}: the layer has {h} heads"),
            ));
        }
        Ok((0..self.steps())
            .flat_map(|t| {
                (0..s).map(move |j| match head {
                    Some(k) => self.probs[(t * h + k) * s + j],
                    None => (0..h).map(|k| self.probs[(t * h + k) * s + j]).sum::<f32>() / h as f32,
                })
            })
            .collect())
    }
}

/// One input's result.
#[derive(Clone, Debug)]
pub struct Translation {
    /// The best hypothesis decoded (special tokens skipped); None without tokenizer files.
    pub text: Option<String>,
    /// The best hypothesis's ids as `generate` returns them (decoder start first, the end token
    /// when reached, no padding).
    pub ids: Vec<u32>,
    /// `num_return_sequences` hypotheses in HF's order (the first is `ids`).
    pub hypotheses: Vec<Hypothesis>,
    /// The best hypothesis's cross-attention, when asked for.
    pub attention: Option<CrossAttention>,
}

/// What a plan is specialized to (options included: they are compiled into the search).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    batch: usize,
    src_len: usize,
    attention: Option<usize>,
    beams: usize,
    max_length: usize,
    min_length: usize,
    length_penalty: u64,
    early_stopping: u8,
    num_return_sequences: usize,
    bad_words: Vec<Vec<u32>>,
    ids: [Option<u32>; 4],
}

impl Key {
    fn new(batch: usize, src_len: usize, attention: Option<usize>, o: &GenerateOptions) -> Key {
        Key {
            batch,
            src_len,
            attention,
            beams: o.num_beams,
            max_length: o.max_length(),
            min_length: o.min_length(),
            length_penalty: o.length_penalty.to_bits(),
            early_stopping: o.early_stopping as u8,
            num_return_sequences: o.num_return_sequences,
            bad_words: o.bad_words_ids.clone(),
            ids: [
                o.forced_eos_token_id,
                Some(o.eos_token_id),
                Some(o.pad_token_id),
                Some(o.decoder_start_token_id),
            ],
        }
    }
}

/// How a decode's steps are split into submissions: `first` steps in the first (which also runs
/// the encoder), then `chunk` steps per submission, with one small readback after each to see
/// which rows ended. More steps per submission mean fewer round trips but more wasted steps
/// after the last row ends (they are no-ops on the GPU, not wrong results).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepSchedule {
    /// Decoder steps in the first submission (>= 1).
    pub first: usize,
    /// Decoder steps in each later submission (>= 1).
    pub chunk: usize,
}

impl Default for StepSchedule {
    /// 4 then 8: short outputs end after one or two readbacks, long ones pay one per 8 tokens.
    fn default() -> StepSchedule {
        StepSchedule { first: 4, chunk: 8 }
    }
}

impl StepSchedule {
    /// The runtime schedule for a decode of at most `steps` steps.
    fn for_steps(self, steps: usize) -> Schedule {
        Schedule {
            max_steps: steps,
            first_chunk: self.first.min(steps).max(1),
            chunk: self.chunk,
        }
    }
}

struct Prepared {
    plan: LoopPlan,
    st: DecoderState,
    search: Search,
}

/// A Marian model ready to translate (see the module docs).
pub struct Translator {
    model: MarianModel,
    generation: GenerationConfig,
    params: GenerationParams,
    tokenizer: Option<MarianTokenizer>,
    dir: PathBuf,
    plans: PlanCache<Key, Mutex<Prepared>>,
    schedule: StepSchedule,
    /// The chunk times of the last decode ([`Translator::last_chunk_times`]).
    last_chunks: Mutex<Vec<ChunkTime>>,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A config file's bytes as text; `path` names it in errors.
fn utf8(bytes: Vec<u8>, path: &Path) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| Error::file(path, format!("not UTF-8: {e}")))
}

/// The files of a Marian folder as bytes (a page fetched them, or [`MarianFiles::read_dir`] read
/// them) for [`Translator::from_files`].
pub struct MarianFiles {
    /// `config.json`.
    pub config_json: Vec<u8>,
    /// `generation_config.json`, when the folder has one (without it, config.json's generation
    /// fields apply, as transformers' `GenerationConfig.from_model_config`).
    pub generation_config_json: Option<Vec<u8>>,
    /// `model.safetensors`: [`WeightFile::open`] maps a file; [`WeightFile::from_bytes`] holds
    /// fetched bytes.
    pub weights: WeightFile,
    /// The tokenizer's files; without them only [`Translator::translate_ids`] works.
    pub tokenizer: Option<MarianTokenizerFiles>,
}

impl MarianFiles {
    /// Reads a Marian folder (`model.safetensors` memory-mapped, the tokenizer files when
    /// `source.spm` is there). Errors name the missing file; a folder with only
    /// `pytorch_model.bin` gets one naming the converter script.
    pub fn read_dir(dir: &Path) -> Result<MarianFiles> {
        check_dir(dir)?;
        let gpath = dir.join("generation_config.json");
        Ok(MarianFiles {
            config_json: read(&dir.join("config.json"))?,
            generation_config_json: gpath.exists().then(|| read(&gpath)).transpose()?,
            weights: open_weights(dir)?,
            tokenizer: tokenizer_files(dir)?,
        })
    }
}

fn check_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    Err(Error::file(
        dir,
        "not a Marian model folder (expected config.json, model.safetensors, source.spm, \
         target.spm, vocab.json)",
    ))
}

/// The folder's tokenizer files, when it has `source.spm`.
fn tokenizer_files(dir: &Path) -> Result<Option<MarianTokenizerFiles>> {
    if !dir.join("source.spm").exists() {
        return Ok(None);
    }
    MarianTokenizerFiles::read_dir(dir).map(Some)
}

/// The model side of `generate`'s options: generation_config.json, with config.json's special
/// ids where it lacks them.
pub fn generation_params(g: &GenerationConfig, c: &MarianConfig) -> GenerationParams {
    GenerationParams {
        num_beams: g.num_beams,
        max_length: g.max_length,
        max_new_tokens: g.max_new_tokens,
        min_length: g.min_length,
        min_new_tokens: g.min_new_tokens,
        length_penalty: g.length_penalty,
        early_stopping: g.early_stopping.map(|e| match e {
            super::config::EarlyStoppingSetting::False => super::search::EarlyStopping::Heuristic,
            super::config::EarlyStoppingSetting::True => super::search::EarlyStopping::Done,
            super::config::EarlyStoppingSetting::Never => super::search::EarlyStopping::Never,
        }),
        num_return_sequences: g.num_return_sequences,
        bad_words_ids: g.bad_words_ids.clone(),
        forced_eos_token_id: g
            .forced_eos_token_id
            .as_ref()
            .or(c.forced_eos_token_id.as_ref())
            .and_then(|i| i.first()),
        eos_token_id: g
            .eos_token_id
            .as_ref()
            .or(c.eos_token_id.as_ref())
            .and_then(|i| i.first()),
        pad_token_id: g.pad_token_id.or(c.pad_token_id),
        decoder_start_token_id: g.decoder_start_token_id.or(c.decoder_start_token_id),
        bos_token_id: g.bos_token_id.or(c.bos_token_id),
        do_sample: g.do_sample,
    }
}

impl Translator {
    /// Loads a Marian folder: `config.json`, `generation_config.json` (optional: config.json's
    /// generation fields and transformers' defaults then), `model.safetensors` (held in f16), and the tokenizer
    /// files when present (without them only [`Translator::translate_ids`] works).
    pub fn load(gpu: &Gpu, dir: &Path) -> Result<Translator> {
        Translator::load_with(gpu, dir, Hold::F16)
    }

    /// [`Translator::load`] with the weights held as `hold` (f32: exact arithmetic for tests).
    pub fn load_with(gpu: &Gpu, dir: &Path, hold: Hold) -> Result<Translator> {
        check_dir(dir)?;
        // Each file is read just before its checks (a broken config.json is reported before a
        // missing model.safetensors), through the same loader as fetched bytes.
        let gpath = dir.join("generation_config.json");
        Translator::from_parts(
            gpu,
            dir,
            || read(&dir.join("config.json")),
            || gpath.exists().then(|| read(&gpath)).transpose(),
            || open_weights(dir),
            || tokenizer_files(dir),
            hold,
        )
    }

    /// Loads a Marian model from its files' bytes (the browser's loader; [`Translator::load`]
    /// reads a folder into the same path). `dir` only names the files in errors (a folder, or
    /// the URL they were fetched from). Weights are held in f16.
    pub fn from_files(gpu: &Gpu, dir: &Path, files: MarianFiles) -> Result<Translator> {
        Translator::from_files_with(gpu, dir, files, Hold::F16)
    }

    /// [`Translator::from_files`] with the weights held as `hold`.
    pub fn from_files_with(
        gpu: &Gpu,
        dir: &Path,
        files: MarianFiles,
        hold: Hold,
    ) -> Result<Translator> {
        let MarianFiles {
            config_json,
            generation_config_json,
            weights,
            tokenizer,
        } = files;
        Translator::from_parts(
            gpu,
            dir,
            || Ok(config_json),
            || Ok(generation_config_json),
            || Ok(weights),
            || Ok(tokenizer),
            hold,
        )
    }

    /// The one loader: each part is fetched (read, or handed over) just before its checks.
    fn from_parts(
        gpu: &Gpu,
        dir: &Path,
        config_json: impl FnOnce() -> Result<Vec<u8>>,
        generation_config_json: impl FnOnce() -> Result<Option<Vec<u8>>>,
        weights: impl FnOnce() -> Result<WeightFile>,
        tokenizer: impl FnOnce() -> Result<Option<MarianTokenizerFiles>>,
        hold: Hold,
    ) -> Result<Translator> {
        let cpath = dir.join("config.json");
        let ctext = utf8(config_json()?, &cpath)?;
        let cfg = MarianConfig::from_json_str(&ctext).map_err(|e| in_file(&cpath, e))?;
        // Without generation_config.json, generate takes its settings from config.json's
        // generation fields (transformers' `GenerationConfig.from_model_config`): folders written
        // before generation_config.json existed keep num_beams, max_length and bad_words_ids there.
        let (gtext, gfrom) = match generation_config_json()? {
            Some(bytes) => {
                let gpath = dir.join("generation_config.json");
                (utf8(bytes, &gpath)?, gpath)
            }
            None => (ctext, cpath),
        };
        let generation = GenerationConfig::from_json_str(&gtext).map_err(|e| in_file(&gfrom, e))?;
        generation
            .check_ids(cfg.decoder_vocab())
            .map_err(|e| in_file(&gfrom, e))?;
        let file = weights()?;
        let model = MarianModel::new(gpu, cfg.clone(), &file, hold)?;
        // The weights are on the GPU: the file (a map, or the fetched bytes) is not kept.
        drop(file);
        let tokenizer = tokenizer()?
            .map(|files| MarianTokenizer::from_files(dir, files))
            .transpose()?;
        let params = generation_params(&generation, &cfg);
        Ok(Translator {
            model,
            generation,
            params,
            tokenizer,
            dir: dir.to_path_buf(),
            plans: PlanCache::new(MAX_PLANS),
            schedule: StepSchedule::default(),
            last_chunks: Mutex::new(Vec::new()),
        })
    }

    /// Sets how many decoder steps go in one submission (see [`StepSchedule`]); an error when
    /// either count is 0.
    pub fn set_schedule(&mut self, schedule: StepSchedule) -> Result<()> {
        if schedule.first == 0 || schedule.chunk == 0 {
            return Err(Error::invalid(
                OP,
                format!("step schedule {schedule:?}: both counts must be >= 1"),
            ));
        }
        self.schedule = schedule;
        Ok(())
    }

    /// The step schedule in use.
    pub fn schedule(&self) -> StepSchedule {
        self.schedule
    }

    /// The wall time of every chunk of the last decode this translator ran (empty before the
    /// first, and in the browser): what a decoder step costs at a given position, within one run.
    pub fn last_chunk_times(&self) -> Vec<ChunkTime> {
        self.last_chunks
            .lock()
            .map(|c| c.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// The model config.
    pub fn config(&self) -> &MarianConfig {
        self.model.config()
    }

    /// The generation config (defaults when the folder has none).
    pub fn generation_config(&self) -> &GenerationConfig {
        &self.generation
    }

    /// The tokenizer, when the folder has its files.
    pub fn tokenizer(&self) -> Option<&MarianTokenizer> {
        self.tokenizer.as_ref()
    }

    /// The model on the GPU.
    pub fn model(&self) -> &MarianModel {
        &self.model
    }

    /// `generate`'s options from the folder's configs alone.
    pub fn default_options(&self) -> GenerateOptions {
        self.options(&GenerationParams::default())
            .unwrap_or_else(|_| fallback_options(self.model.config()))
    }

    /// `generate`'s options: `caller` over the folder's configs over transformers' defaults.
    pub fn options(&self, caller: &GenerationParams) -> Result<GenerateOptions> {
        let c = self.model.config();
        let o = GenerateOptions::resolve(&self.params, caller, Some(c.max_position_embeddings))?;
        o.validate(Some(c.decoder_vocab()))?;
        Ok(o)
    }

    /// Tokenizes `texts` (the tokenizer files are needed).
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let tok = self.tokenizer.as_ref().ok_or_else(|| {
            Error::file(
                &self.dir,
                "has no tokenizer files (source.spm, target.spm, vocab.json): give source ids \
                 instead (`heedful translate --ids`, `Translator::translate_ids`)",
            )
        })?;
        texts.iter().map(|t| tok.encode(t)).collect()
    }

    /// Translates `texts` (one run for the batch, padded and masked).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn translate(&self, texts: &[&str], opts: &GenerateOptions) -> Result<Vec<Translation>> {
        self.translate_with(texts, opts, None)
    }

    /// [`Translator::translate`], keeping the cross-attention of decoder layer `attention`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn translate_with(
        &self,
        texts: &[&str],
        opts: &GenerateOptions,
        attention: Option<usize>,
    ) -> Result<Vec<Translation>> {
        pollster::block_on(self.translate_async(texts, opts, attention))
    }

    /// Translates source ids (as the tokenizer gives them, `</s>` included).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn translate_ids(
        &self,
        ids: &[Vec<u32>],
        opts: &GenerateOptions,
    ) -> Result<Vec<Translation>> {
        self.translate_ids_with(ids, opts, None)
    }

    /// Why one input's source token ids `src` cannot be translated, if they cannot: no tokens,
    /// more than `max_position_embeddings` of them, or an id outside the source vocabulary.
    /// [`Translator::translate_ids`] refuses such an input naming its 0-based index (the
    /// `heedful translate` command, its 1-based number).
    pub fn source_problem(&self, src: &[u32]) -> Option<String> {
        let c = self.model.config();
        let (p, v) = (c.max_position_embeddings, c.vocab_size);
        if src.is_empty() {
            return Some("no tokens (a tokenized text always ends with </s>)".into());
        }
        if src.len() > p {
            return Some(format!(
                "{} tokens, more than the model's max_position_embeddings = {p}; shorten or split it",
                src.len()
            ));
        }
        let (j, id) = src.iter().enumerate().find(|(_, &id)| id as usize >= v)?;
        Some(format!(
            "token {j} (id {id}) is outside the source vocabulary ({v} ids)"
        ))
    }

    /// [`Translator::translate_ids`], keeping the cross-attention of decoder layer `attention`
    /// (the fast path, `None`, records nothing extra). Inputs are decoded in runs of at most
    /// [`MAX_ROWS`] decoder rows, fewer where the KV cache would outgrow the device's storage
    /// binding limit ([`MarianModel::rows_fitting`]); the attention is kept for the inputs of the
    /// first run.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn translate_ids_with(
        &self,
        ids: &[Vec<u32>],
        opts: &GenerateOptions,
        attention: Option<usize>,
    ) -> Result<Vec<Translation>> {
        pollster::block_on(self.translate_ids_async(ids, opts, attention))
    }

    /// [`Translator::translate_with`] without blocking on the per-chunk readbacks.
    pub async fn translate_async(
        &self,
        texts: &[&str],
        opts: &GenerateOptions,
        attention: Option<usize>,
    ) -> Result<Vec<Translation>> {
        let ids = self.encode(texts)?;
        self.translate_ids_async(&ids, opts, attention).await
    }

    /// [`Translator::translate_ids_with`] without blocking on the per-chunk readbacks (the one
    /// implementation; the browser's). In the browser a second translation of the same plan shape
    /// while one is awaited is refused; await the first.
    pub async fn translate_ids_async(
        &self,
        ids: &[Vec<u32>],
        opts: &GenerateOptions,
        attention: Option<usize>,
    ) -> Result<Vec<Translation>> {
        let c = self.model.config();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Every input is checked before the first run, so the index named is the caller's.
        for (i, src) in ids.iter().enumerate() {
            if let Some(why) = self.source_problem(src) {
                return Err(Error::invalid(OP, format!("input {i}: {why}")));
            }
        }
        opts.validate(Some(c.decoder_vocab()))?;
        // Bounded runs: at most MAX_ROWS decoder rows (items x beams) per submission chain, and
        // no more than the device's binding limit holds (the KV cache grows with rows x steps),
        // so a long list neither outgrows the device's buffers nor holds the queue for long.
        let beams = opts.num_beams.max(1);
        let longest = ids.iter().map(Vec::len).max().unwrap_or(1);
        let src_len = plan_src_len(longest, c.max_position_embeddings);
        let fit = self
            .model
            .rows_fitting(opts.max_steps(), src_len, attention.is_some());
        if fit < beams {
            return Err(Error::Limit {
                what: format!(
                    "{OP}: one input's decoder buffers ({beams} beams x {} steps, source of \
                     {src_len} tokens; lower max_length or the beam width)",
                    opts.max_steps()
                ),
                needed: beams as u64
                    * self
                        .model
                        .bytes_per_row(opts.max_steps(), src_len, attention.is_some()),
                limit_name: "max_storage_buffer_binding_size",
                limit: self.model.gpu().caps().max_storage_binding,
            });
        }
        let per_run = (MAX_ROWS.min(fit) / beams).max(1);
        let mut out = Vec::with_capacity(ids.len());
        for (i, chunk) in ids.chunks(per_run).enumerate() {
            // The attention is of the caller's first input only.
            let keep = attention.filter(|_| i == 0);
            out.extend(self.run_batch(chunk, opts, keep).await?);
        }
        Ok(out)
    }

    /// One run of at most [`MAX_ROWS`] decoder rows.
    // The plan's lock spans the run on purpose (runs of one plan take turns on its buffers);
    // natively the future is driven by `block_on` on the calling thread.
    #[allow(clippy::await_holding_lock)]
    async fn run_batch(
        &self,
        ids: &[Vec<u32>],
        opts: &GenerateOptions,
        attention: Option<usize>,
    ) -> Result<Vec<Translation>> {
        let c = self.model.config();
        let p = c.max_position_embeddings;
        if opts.max_steps() > p {
            return Err(Error::invalid(
                OP,
                format!(
                    "max_length {} needs {} decoder positions, more than max_position_embeddings \
                     = {p}",
                    opts.max_length(),
                    opts.max_steps()
                ),
            ));
        }
        let longest = ids.iter().map(Vec::len).max().unwrap_or(1);
        let src_len = plan_src_len(longest, p);
        let key = Key::new(ids.len(), src_len, attention, opts);
        let prepared = self.plans.get_or_try_insert(key, || {
            self.prepare(ids.len(), src_len, opts, attention)
                .map(Mutex::new)
        })?;
        #[cfg(not(target_arch = "wasm32"))]
        let prepared = prepared.lock().unwrap_or_else(|e| e.into_inner());
        #[cfg(target_arch = "wasm32")]
        let prepared = prepared.try_lock().map_err(|_| {
            Error::invalid(
                OP,
                "a translation of this batch shape is in progress: await it first",
            )
        })?;
        let writes = self.model.decoder_writes(&prepared.st, ids)?;
        let steps = opts.max_steps();
        let res = prepared
            .plan
            .run_async(&writes, self.schedule.for_steps(steps))
            .await?;
        if let Ok(mut c) = self.last_chunks.lock() {
            c.clone_from(&res.chunk_times);
        }
        let hyps = prepared.search.finish(&res, res.steps_run)?;
        let attn = match &prepared.st.cross_attention {
            Some((layer, t)) => Some((*layer, res.f32s("cross_attention")?, t.shape().to_vec())),
            None => None,
        };
        let mut out = Vec::with_capacity(ids.len());
        for (i, h) in hyps.into_iter().enumerate() {
            let best = h.first().cloned().ok_or_else(|| {
                Error::invalid(
                    OP,
                    format!("the search returned no hypothesis for input {i}"),
                )
            })?;
            let text = match &self.tokenizer {
                Some(t) => Some(t.decode(&best.ids)?),
                None => None,
            };
            let attention = match &attn {
                Some((layer, data, shape)) => {
                    let (heads, s) = (shape[1], shape[2]);
                    let per_step = shape[0] * heads * s;
                    let len = ids[i].len();
                    let mut probs = Vec::with_capacity(best.rows.len() * heads * len);
                    for &row in &best.rows {
                        let (step, r) = (row / shape[0], row % shape[0]);
                        for k in 0..heads {
                            let at = step * per_step + (r * heads + k) * s;
                            probs.extend_from_slice(&data[at..at + len]);
                        }
                    }
                    Some(CrossAttention {
                        layer: *layer,
                        heads,
                        src_len: len,
                        probs,
                    })
                }
                None => None,
            };
            out.push(Translation {
                text,
                ids: best.ids.clone(),
                hypotheses: h,
                attention,
            });
        }
        Ok(out)
    }

    fn prepare(
        &self,
        batch: usize,
        src_len: usize,
        opts: &GenerateOptions,
        attention: Option<usize>,
    ) -> Result<Prepared> {
        let m = &self.model;
        let mut b = LoopBuilder::new(m.gpu(), opts.max_steps());
        let st = m.declare_decoder(&mut b, batch, src_len, opts.num_beams, attention)?;
        let search = Search::declare(&mut b, opts, batch, m.config().decoder_vocab())?;
        // The search's init resets its state, and `finish` reads each row's end from it and no
        // step past the stop (nor does the kept attention): the steps left in a submission after
        // the stop are skipped on the GPU.
        b.gate_steps();
        // Beam search reorders the caches: two phases whose cache buffers alternate.
        let phases = if search.parents().is_some() { 2 } else { 1 };
        for phase in 0..phases {
            m.record_decoder_step(&mut b, &st, phase, search.tokens(), search.parents())?;
            search.record_step(&mut b, phase, &st.logits, &st.step)?;
        }
        if let Some((_, t)) = &st.cross_attention {
            b.history("cross_attention", t)?;
        }
        Ok(Prepared {
            plan: b.build()?,
            st,
            search,
        })
    }
}

/// The source length a plan is built for: the longest input rounded up to a multiple of 8 (at
/// most `max_positions`), so that nearby lengths share a plan (the mask hides the rest).
fn plan_src_len(longest: usize, max_positions: usize) -> usize {
    longest
        .div_ceil(8)
        .saturating_mul(8)
        .min(max_positions)
        .max(longest)
}

/// Options when the folder's configs do not resolve (never for a checked config; a safe default
/// rather than a panic).
fn fallback_options(c: &MarianConfig) -> GenerateOptions {
    let eos = c.eos_id().unwrap_or(0);
    GenerateOptions {
        num_beams: 1,
        max_length: 21.min(c.max_position_embeddings),
        max_new_tokens: None,
        min_length: 0,
        min_new_tokens: None,
        length_penalty: 1.0,
        early_stopping: Default::default(),
        num_return_sequences: 1,
        bad_words_ids: Vec::new(),
        forced_eos_token_id: None,
        eos_token_id: eos,
        pad_token_id: c.pad_token_id.unwrap_or(eos),
        decoder_start_token_id: c.decoder_start_id().unwrap_or(eos),
    }
}

/// Puts the file's path on a config error.
fn in_file(path: &Path, e: Error) -> Error {
    match e {
        Error::Invalid { detail, .. } => Error::file(path, detail),
        other => other,
    }
}
