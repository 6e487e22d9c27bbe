//! The Marian decoder step on the loop runtime ([`LoopBuilder`]), with the model on the GPU
//! ([`MarianModel`]).
//!
//! [`MarianModel::declare_decoder`] declares, for one batch shape, everything a decode needs:
//! - **init** (once per run): the encoder graph's plan (its inputs are the loop's named tensors
//!   `src.ids`, `src.positions`, `src.mask` `[B, S]`), then per decoder layer the cross-attention
//!   keys and values projected once per source sentence, `[B, S, E]`, expanded to the `R = B x K`
//!   beam rows (`[R, S, E]`) as transformers expands the encoder output;
//! - **state**: the self-attention KV cache `kv [2L, R, T, E]` (T = the plan's steps), two of them
//!   in ping-pong for beam search;
//! - the named `cross.mask` `[R, S]` u32 (1 = real source token).
//!
//! [`MarianModel::record_decoder_step`] records one step into phase `phase`: (beam) the caches'
//! rows gathered by the search's parents into this phase's buffer for positions `< s`; token
//! embeddings of `tokens` times `embed_scale` plus the position row `s` (from the GPU step
//! index), one lookup; per post-LN layer: one fused q/k/v projection, flash-decoding over
//! positions `0..=s` that first appends the step's K/V at position s, output projection +
//! residual + LayerNorm (one dispatch where the tuning table fuses them, else the projection and
//! the residual add fused into the norm); cross-attention over the expanded encoder keys with the
//! source mask (its probabilities `[R, H, S]` kept for one layer when asked), output projection +
//! residual + LayerNorm; FFN, residual + LayerNorm; finally the output layer plus `final_logits_bias` into `logits` `[R, Vd]` f32, which
//! the search reads.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, Recorder};
use crate::graph::{LoopBuilder, Plan, Writes};
use crate::kernels::attention_probs::record_attention_probs;
use crate::kernels::embedding::{record_embedding, record_embedding_positioned, Positions};
use crate::kernels::kv_cache::{
    record_cache_attention_appending, record_kv_gather, CacheLayout, Rows,
};
use crate::kernels::matmul::{
    record_linear, record_linear_act, record_linear_add_layer_norm, ResidualNorm,
};
use crate::kernels::sdpa::{record_sdpa, AttnDims, Causal, Heads, MaskKind, MaskView, SdpaArgs};
use crate::ops::Activation;
use crate::tensor::{DType, Tensor};
use crate::weights::{Hold, WeightFile};

use super::config::{MarianConfig, LAYER_NORM_EPS};
use super::encoder::Encoder;
use super::weights::{Attention, DecoderLayer, Linear, MarianWeights, Norm};

const OP: &str = "marian decoder";

/// A Marian model on the GPU: config, uploaded weights, the encoder graph.
pub struct MarianModel {
    gpu: Gpu,
    cfg: MarianConfig,
    /// The loaded weights less the layers (encoder layers live in the encoder graph, decoder
    /// layers in `layers`).
    w: MarianWeights<Tensor>,
    encoder: Encoder,
    /// The decoder layers as the step runs them.
    layers: Vec<StepLayer>,
    act: Activation,
}

/// A decoder layer's weights as the step runs them: the self-attention's q, k and v projections
/// stacked into one `[3E, E]` linear (one dispatch instead of three; the separate buffers are
/// freed), the rest as loaded.
struct StepLayer {
    /// Rows q, k, v: weight `[3E, E]`, bias `[3E]`.
    self_qkv: Linear<Tensor>,
    self_o: Linear<Tensor>,
    self_norm: Norm<Tensor>,
    cross_attn: Attention<Tensor>,
    cross_norm: Norm<Tensor>,
    fc1: Linear<Tensor>,
    fc2: Linear<Tensor>,
    final_norm: Norm<Tensor>,
}

impl StepLayer {
    fn new(gpu: &Gpu, l: DecoderLayer<Tensor>) -> Result<StepLayer> {
        let a = l.self_attn;
        let stack = |parts: [&Tensor; 3]| Tensor::concat_rows(gpu, &parts.map(Tensor::clone));
        Ok(StepLayer {
            self_qkv: Linear {
                w: stack([&a.q.w, &a.k.w, &a.v.w])?,
                b: stack([&a.q.b, &a.k.b, &a.v.b])?,
            },
            self_o: a.o,
            self_norm: l.self_norm,
            cross_attn: l.cross_attn,
            cross_norm: l.cross_norm,
            fc1: l.fc1,
            fc2: l.fc2,
            final_norm: l.final_norm,
        })
    }

    /// Every tensor the layer holds.
    fn tensors(&self) -> Vec<&Tensor> {
        let c = &self.cross_attn;
        let mut v = Vec::new();
        for l in [
            &self.self_qkv,
            &self.self_o,
            &c.q,
            &c.k,
            &c.v,
            &c.o,
            &self.fc1,
            &self.fc2,
        ] {
            v.push(&l.w);
            v.push(&l.b);
        }
        for n in [&self.self_norm, &self.cross_norm, &self.final_norm] {
            v.push(&n.w);
            v.push(&n.b);
        }
        v
    }
}

/// What [`MarianModel::declare_decoder`] declared; [`MarianModel::record_decoder_step`] records
/// steps with it.
pub struct DecoderState {
    /// Items B.
    pub batch: usize,
    /// Source positions S (the longest source).
    pub src_len: usize,
    /// Beams K.
    pub beams: usize,
    /// The loop's step index `[1]` u32.
    pub step: Tensor,
    /// The step's logits `[R, Vd]` f32.
    pub logits: Tensor,
    /// The kept cross-attention probabilities `[R, H, S]` of one layer (when asked).
    pub cross_attention: Option<(usize, Tensor)>,
    layout: CacheLayout,
    kv: Vec<Tensor>,
    cross_k: Vec<Tensor>,
    cross_v: Vec<Tensor>,
    cross_mask: Tensor,
    scratch: Scratch,
    /// The encoder's plan, replayed in the loop's init phase (kept so its buffers stay counted
    /// as this decode's).
    _encoder: Plan,
}

/// Per-step scratch, `[R, E]` unless noted (phases run one after another, so they share it).
struct Scratch {
    /// The hidden state, alternating with `h` (each post-LN block writes the other one).
    x: Tensor,
    /// `[R, 3E]` the self-attention's fused q/k/v projection.
    qkv: Tensor,
    /// The cross-attention's queries.
    q: Tensor,
    ctx: Tensor,
    o: Tensor,
    /// The hidden state alternating with `x`.
    h: Tensor,
    /// `[R, F]` the FFN's activated first layer.
    f1: Tensor,
    /// `[R*H]` log-sum-exp of the kept cross-attention.
    lse: Tensor,
}

impl MarianModel {
    /// Uploads the weights of `file` (checked against `cfg`) and builds the encoder graph.
    pub fn new(gpu: &Gpu, cfg: MarianConfig, file: &WeightFile, hold: Hold) -> Result<MarianModel> {
        let mut w = super::weights::MarianWeights::resolve(&cfg, file)?.upload(gpu, file, hold)?;
        let encoder = Encoder::build(gpu, &cfg, &w)?;
        // The encoder graph holds what it runs (its layers' fused QKV copies, the rest as they
        // are); the separate q/k/v projections are not used again, so their buffers are freed.
        w.encoder.clear();
        let layers = std::mem::take(&mut w.decoder)
            .into_iter()
            .map(|l| StepLayer::new(gpu, l))
            .collect::<Result<Vec<_>>>()?;
        let act = cfg.activation()?;
        Ok(MarianModel {
            gpu: gpu.clone(),
            cfg,
            w,
            encoder,
            layers,
            act,
        })
    }

    /// The config.
    pub fn config(&self) -> &MarianConfig {
        &self.cfg
    }

    /// Bytes of GPU memory the model's constants occupy: every uploaded weight (tied tensors and
    /// the shared position table once; the self-attention q/k/v projections as each layer's fused
    /// QKV copy),
    /// summed over distinct buffers (buffer sizes, so any
    /// allocation padding counts). Per-run state (KV caches,
    /// activations) belongs to the plans and is not included.
    pub fn weight_bytes(&self) -> u64 {
        let mut all: Vec<Tensor> = Vec::new();
        // try_map visits every entry; the closure never fails.
        let _ = self.w.try_map(|t| {
            all.push(t.clone());
            Ok(())
        });
        all.extend(self.encoder.weight_tensors().cloned());
        all.extend(self.layers.iter().flat_map(StepLayer::tensors).cloned());
        all.sort_by(|a, b| a.buffer().cmp(b.buffer()));
        all.dedup_by(|a, b| a.buffer() == b.buffer());
        all.iter().map(|t| t.buffer().size()).sum()
    }

    /// The encoder graph (runs alone in tests).
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// The GPU.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Bytes each decoder row (an item's beam) adds to the largest buffer of a run of `steps`
    /// steps over sources of `src_len` tokens: the KV cache `[2L, R, T, E]` f32, a layer's
    /// cross K or V `[R, S, E]`, the logits `[R, V]` and, when kept, the cross-attention history
    /// `[T, R, H, S]` all grow with the rows R.
    pub fn bytes_per_row(&self, steps: usize, src_len: usize, keep_attention: bool) -> u64 {
        let c = &self.cfg;
        let (e, t, s) = (c.d_model as u64, steps.max(1) as u64, src_len as u64);
        let kv = 2 * c.decoder_layers as u64 * t * e;
        let cross = s * e;
        let logits = c.decoder_vocab() as u64;
        let attention = if keep_attention {
            t * c.decoder_attention_heads as u64 * s
        } else {
            0
        };
        4 * kv.max(cross).max(logits).max(attention)
    }

    /// Decoder rows whose buffers fit the device's storage binding limit (and 32-bit element
    /// indexing) for a run as in [`MarianModel::bytes_per_row`].
    pub fn rows_fitting(&self, steps: usize, src_len: usize, keep_attention: bool) -> usize {
        let limit = self
            .gpu
            .caps()
            .max_storage_binding
            .min(4 * u64::from(u32::MAX));
        (limit / self.bytes_per_row(steps, src_len, keep_attention).max(1)) as usize
    }

    /// Declares a decode of `batch` sources of at most `src_len` tokens with `beams` rows each;
    /// `keep_attention` = the decoder layer whose cross-attention probabilities are kept.
    pub fn declare_decoder(
        &self,
        b: &mut LoopBuilder,
        batch: usize,
        src_len: usize,
        beams: usize,
        keep_attention: Option<usize>,
    ) -> Result<DecoderState> {
        let c = &self.cfg;
        let (e, vd, heads) = (c.d_model, c.decoder_vocab(), c.decoder_attention_heads);
        let rows = batch
            .checked_mul(beams)
            .filter(|&r| r > 0)
            .ok_or_else(|| Error::invalid(OP, format!("batch {batch} x beams {beams}")))?;
        if src_len == 0 || src_len > c.max_position_embeddings {
            return Err(Error::invalid(
                OP,
                format!(
                    "source length {src_len} must be 1..={} (max_position_embeddings)",
                    c.max_position_embeddings
                ),
            ));
        }
        if let Some(l) = keep_attention.filter(|&l| l >= c.decoder_layers) {
            return Err(Error::invalid(
                OP,
                format!(
                    "attention layer {l}: the decoder has {} layers",
                    c.decoder_layers
                ),
            ));
        }
        let step = b.step_index()?;
        let layout = CacheLayout {
            planes: 2 * c.decoder_layers,
            rows,
            positions: b.max_steps().max(1),
            heads,
            width: e,
        };
        layout.check(OP, None)?;
        let kv = (0..if beams > 1 { 2 } else { 1 })
            .map(|_| b.buffer(&layout.shape(), DType::F32))
            .collect::<Result<Vec<_>>>()?;

        // Init: the encoder's plan, its inputs named for the host writes.
        let plan = self.encoder.new_plan(batch, src_len)?;
        for (input, name) in [
            ("ids", "src.ids"),
            ("positions", "src.positions"),
            ("mask", "src.mask"),
        ] {
            let t = plan
                .input_tensor(input)
                .ok_or_else(|| Error::invalid(OP, format!("encoder plan lacks input {input}")))?;
            b.name(name, t)?;
        }
        let hidden = plan
            .output_tensor("hidden")
            .ok_or_else(|| Error::invalid(OP, "encoder plan lacks output hidden"))?
            .clone();
        b.init().extend(plan.recorder().clone());
        // Cross-attention keys and values, once per run: [B, S, E], expanded to [R, S, E].
        let expand = if beams > 1 {
            let ids: Vec<u32> = (0..rows).map(|r| (r / beams) as u32).collect();
            Some(b.constant_u32(&ids, &[rows])?)
        } else {
            None
        };
        let proj = b.buffer(&[batch, src_len, e], DType::F32)?;
        let (mut cross_k, mut cross_v) = (Vec::new(), Vec::new());
        for l in &self.layers {
            for (lin, dst) in [
                (&l.cross_attn.k, &mut cross_k),
                (&l.cross_attn.v, &mut cross_v),
            ] {
                let out = b.buffer(&[rows, src_len, e], DType::F32)?;
                let init = b.init();
                match &expand {
                    None => linear(init, &hidden, lin, &out)?,
                    Some(ids) => {
                        linear(init, &hidden, lin, &proj)?;
                        let table = proj.reshape(&[batch, src_len * e])?;
                        let o2 = out.reshape(&[rows, src_len * e])?;
                        record_embedding(init, ids, &table, &o2)?;
                    }
                }
                dst.push(out);
            }
        }
        let cross_mask = b.named("cross.mask", &[rows, src_len], DType::U32)?;
        let f = c.decoder_ffn_dim;
        let buf = |b: &mut LoopBuilder, n: usize| b.buffer(&[rows, n], DType::F32);
        let scratch = Scratch {
            x: buf(b, e)?,
            qkv: buf(b, 3 * e)?,
            q: buf(b, e)?,
            ctx: buf(b, e)?,
            o: buf(b, e)?,
            h: buf(b, e)?,
            f1: buf(b, f)?,
            lse: b.buffer(&[rows * heads], DType::F32)?,
        };
        let logits = b.buffer(&[rows, vd], DType::F32)?;
        let cross_attention = match keep_attention {
            Some(l) => Some((l, b.buffer(&[rows, heads, src_len], DType::F32)?)),
            None => None,
        };
        Ok(DecoderState {
            batch,
            src_len,
            beams,
            step,
            logits,
            cross_attention,
            layout,
            kv,
            cross_k,
            cross_v,
            cross_mask,
            scratch,
            _encoder: plan,
        })
    }

    /// The host writes of one run: the encoder inputs of `sources` (padded to the plan's S) and
    /// the cross-attention mask of every beam row.
    pub fn decoder_writes(&self, st: &DecoderState, sources: &[Vec<u32>]) -> Result<Writes> {
        let (b, s) = (st.batch, st.src_len);
        if sources.len() != b || sources.iter().any(|x| x.is_empty() || x.len() > s) {
            return Err(Error::invalid(
                OP,
                format!(
                    "{} sources for a plan of {b} sources of 1..={s} tokens",
                    sources.len()
                ),
            ));
        }
        let v = self.cfg.vocab_size;
        for (i, src) in sources.iter().enumerate() {
            if let Some((j, id)) = src.iter().enumerate().find(|(_, &id)| id as usize >= v) {
                return Err(Error::invalid(
                    OP,
                    format!(
                        "source {i}, token {j}: id {id} is outside the source vocabulary ({v} ids)"
                    ),
                ));
            }
        }
        let pad = self.cfg.pad_id()?;
        let mut ids = vec![pad; b * s];
        let mut mask = vec![0u32; b * s];
        for (r, src) in sources.iter().enumerate() {
            ids[r * s..r * s + src.len()].copy_from_slice(src);
            mask[r * s..r * s + src.len()].fill(1);
        }
        let positions: Vec<u32> = (0..b * s).map(|i| (i % s) as u32).collect();
        let cross: Vec<u32> = (0..b * st.beams)
            .flat_map(|r| mask[(r / st.beams) * s..(r / st.beams + 1) * s].to_vec())
            .collect();
        let mut w = Writes::new();
        w.u32s("src.ids", &ids)
            .u32s("src.positions", &positions)
            .u32s("src.mask", &mask)
            .u32s("cross.mask", &cross);
        Ok(w)
    }

    /// Records one decoder step into recording `phase` (see the module docs): reads `tokens`
    /// `[R]` u32 (and, for beams, `parents` `[R]` u32), writes `st.logits`.
    pub fn record_decoder_step(
        &self,
        b: &mut LoopBuilder,
        st: &DecoderState,
        phase: usize,
        tokens: &Tensor,
        parents: Option<&Tensor>,
    ) -> Result<()> {
        let c = &self.cfg;
        let (e, heads, rows) = (c.d_model, c.decoder_attention_heads, st.layout.rows);
        let d = e / heads;
        let sc = &st.scratch;
        let cur = &st.kv[phase % st.kv.len()];
        let rec = b.step(phase);
        if let (Some(p), true) = (parents, st.kv.len() > 1) {
            let prev = &st.kv[(phase + 1) % 2];
            record_kv_gather(rec, &st.layout, prev, p, &st.step, cur)?;
        }
        // Scaled token embedding plus the position row of the GPU step, one lookup.
        let pos = Positions {
            ids: &st.step,
            table: &self.w.dec_pos,
        };
        record_embedding_positioned(rec, tokens, &self.w.dec_embed, c.embed_scale(), pos, &sc.x)?;
        // The hidden state alternates between x and h: each post-LN block writes LayerNorm(o + hid)
        // into the other one (its output may not alias an input of the same dispatch).
        let (mut hid, mut spare) = (&sc.x, &sc.h);
        for (l, lw) in self.layers.iter().enumerate() {
            // q, k, v in one projection `[R, 3E]`; the cache attention reads the q third and
            // appends the k and v thirds to the cache at the step's position itself.
            linear(rec, hid, &lw.self_qkv, &sc.qkv)?;
            let q = Rows {
                tensor: &sc.qkv,
                col: 0,
            };
            record_cache_attention_appending(
                rec,
                &st.layout,
                l,
                q,
                e,
                2 * e,
                cur,
                &st.step,
                &sc.ctx,
            )?;
            residual_norm(rec, &sc.ctx, &lw.self_o, &sc.o, &lw.self_norm, hid, spare)?;
            std::mem::swap(&mut hid, &mut spare);
            // Cross-attention: one query per row over the row's source positions.
            let a = &lw.cross_attn;
            linear(rec, hid, &a.q, &sc.q)?;
            let dims = AttnDims {
                b: rows,
                h: heads,
                tq: 1,
                tk: st.src_len,
                d,
                dv: d,
            };
            let mask = MaskView::per_key(OP, &st.cross_mask, MaskKind::Keep, rows, st.src_len)?;
            let args = SdpaArgs {
                mask: Some(mask),
                ..Default::default()
            };
            let keep = st.cross_attention.as_ref().filter(|(k, _)| *k == l);
            let (kt, vt) = (&st.cross_k[l], &st.cross_v[l]);
            let qh = Heads::interleaved(&sc.q, 1, e, 0, d);
            let kh = Heads::interleaved(kt, st.src_len, e, 0, d);
            record_sdpa(
                rec,
                &dims,
                qh,
                kh,
                Heads::interleaved(vt, st.src_len, e, 0, d),
                Heads::interleaved(&sc.ctx, 1, e, 0, d),
                &args,
                keep.map(|_| &sc.lse),
            )?;
            if let Some((_, probs)) = keep {
                let probs = &probs.reshape(&[rows, heads, 1, st.src_len])?;
                record_attention_probs(
                    rec,
                    &dims,
                    qh,
                    kh,
                    &sc.lse,
                    Some(&mask),
                    Causal::None,
                    None,
                    probs,
                    false,
                )?;
            }
            residual_norm(rec, &sc.ctx, &a.o, &sc.o, &lw.cross_norm, hid, spare)?;
            std::mem::swap(&mut hid, &mut spare);
            // fc1 with the activation in its store, one dispatch.
            record_linear_act(rec, hid, &lw.fc1.w, Some(&lw.fc1.b), self.act, &sc.f1)?;
            residual_norm(rec, &sc.f1, &lw.fc2, &sc.o, &lw.final_norm, hid, spare)?;
            std::mem::swap(&mut hid, &mut spare);
        }
        record_linear(
            rec,
            hid,
            &self.w.lm_head,
            Some(&self.w.final_logits_bias),
            &st.logits,
        )?;
        Ok(())
    }
}

fn linear(rec: &mut Recorder, x: &Tensor, l: &Linear<Tensor>, out: &Tensor) -> Result<()> {
    record_linear(rec, x, &l.w, Some(&l.b), out)
}

/// `out = LN(lin(inp) + x)`: one dispatch where the tuning table fuses the linear, the residual
/// add and the norm (few rows), else the linear into `o` and the norm with the add fused into it.
fn residual_norm(
    rec: &mut Recorder,
    inp: &Tensor,
    lin: &Linear<Tensor>,
    o: &Tensor,
    norm: &Norm<Tensor>,
    x: &Tensor,
    out: &Tensor,
) -> Result<()> {
    let rn = ResidualNorm {
        residual: x,
        weight: &norm.w,
        bias: &norm.b,
        eps: LAYER_NORM_EPS,
    };
    record_linear_add_layer_norm(rec, inp, &lin.w, Some(&lin.b), &rn, o, out)
}
