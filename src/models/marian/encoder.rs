//! The Marian encoder as a [`Graph`] on the graph runtime: token embeddings times `embed_scale`,
//! plus positions (no embedding LayerNorm), then per post-LN layer a fused QKV projection, flash
//! self-attention with a key padding mask (BERT's packed attention kernel), output projection,
//! residual + LayerNorm, FFN with the config's activation, residual + LayerNorm.
//!
//! Inputs (each `[B, S]`, S the longest source of the batch): `ids` u32 (padding = any id below
//! V, conventionally pad), `positions` u32 (`0..S` per row), `mask` u32 (1 = real token). Output
//! `hidden` `[B, S, E]` f32; rows past a sentence's length hold values no consumer reads (the
//! cross-attention masks them). Batches of different lengths run as one padded batch, never
//! per row.
//!
//! The translator does not run this graph on its own: it records the graph's plan into its
//! decode loop's init phase (one submission per chunk, the encoder's output never leaves the
//! GPU). [`Encoder::encode`] runs it alone (tests).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::{Dim, Graph, HostInput, Plan, Session};
use crate::tensor::{DType, Tensor};

use super::config::{MarianConfig, LAYER_NORM_EPS};
use super::weights::MarianWeights;

/// The encoder graph and a session that plans it per batch shape.
pub struct Encoder {
    gpu: Gpu,
    graph: Arc<Graph>,
    session: Session,
    width: usize,
}

impl Encoder {
    /// Builds the encoder graph from uploaded weights.
    pub fn build(gpu: &Gpu, cfg: &MarianConfig, w: &MarianWeights<Tensor>) -> Result<Encoder> {
        let e = cfg.d_model;
        let act = cfg.activation()?;
        let mut g = Graph::new();
        let (bd, sd) = (Dim::sym("batch"), Dim::sym("seq"));
        let ids = g.input("ids", &[bd.clone(), sd.clone()], DType::U32);
        let positions = g.input("positions", &[bd.clone(), sd.clone()], DType::U32);
        let mask = g.input("mask", &[bd, sd], DType::U32);
        let table = g.weight(w.enc_embed.clone());
        let pos = g.weight(w.enc_pos.clone());
        // Scaled token embedding plus position embedding, one lookup.
        let mut x = g.embedding_positioned(ids, table, cfg.embed_scale(), positions, pos);
        for l in &w.encoder {
            let a = &l.self_attn;
            let wqkv = g.weight(Tensor::concat_rows(
                gpu,
                &[a.q.w.clone(), a.k.w.clone(), a.v.w.clone()],
            )?);
            let bqkv = g.weight(Tensor::concat_rows(
                gpu,
                &[a.q.b.clone(), a.k.b.clone(), a.v.b.clone()],
            )?);
            let qkv = g.linear(x, wqkv, Some(bqkv));
            let ctx = g.self_attention_packed(qkv, mask, cfg.encoder_attention_heads);
            let (wo, bo) = (g.weight(a.o.w.clone()), g.weight(a.o.b.clone()));
            let h = g.linear(ctx, wo, Some(bo));
            let (nw, nb) = (
                g.weight(l.self_norm.w.clone()),
                g.weight(l.self_norm.b.clone()),
            );
            // Post-LN: LayerNorm(h + x) in one dispatch.
            x = g.add_layer_norm(h, x, nw, nb, LAYER_NORM_EPS);
            let (w1, b1) = (g.weight(l.fc1.w.clone()), g.weight(l.fc1.b.clone()));
            let (w2, b2) = (g.weight(l.fc2.w.clone()), g.weight(l.fc2.b.clone()));
            let h = g.linear_act(x, w1, Some(b1), act);
            let h = g.linear(h, w2, Some(b2));
            let (nw, nb) = (
                g.weight(l.final_norm.w.clone()),
                g.weight(l.final_norm.b.clone()),
            );
            x = g.add_layer_norm(h, x, nw, nb, LAYER_NORM_EPS);
        }
        g.output("hidden", x);
        let graph = Arc::new(g);
        Ok(Encoder {
            gpu: gpu.clone(),
            session: Session::new(gpu, graph.clone()),
            graph,
            width: e,
        })
    }

    /// The GPU-resident constants of the encoder graph: the model's encoder weights it uses as
    /// they are, plus the tensors made for it (each layer's fused QKV weight `[3E, E]` and bias
    /// `[3E]`, the `[E]` embedding scale).
    pub(crate) fn weight_tensors(&self) -> impl Iterator<Item = &Tensor> {
        self.graph.values.iter().filter_map(|v| match v {
            crate::graph::Source::Weight(t) => Some(t),
            _ => None,
        })
    }

    /// The graph inputs of a padded batch of sources (`pad` fills the rows past each length).
    pub fn batch_inputs(sources: &[Vec<u32>], pad: u32) -> Result<Vec<(&'static str, HostInput)>> {
        let b = sources.len();
        let s = sources.iter().map(Vec::len).max().unwrap_or(0);
        if b == 0 || sources.iter().any(Vec::is_empty) {
            return Err(Error::invalid(
                "marian encoder",
                "every source needs at least one token (the tokenizer appends </s>)",
            ));
        }
        let mut ids = vec![pad; b * s];
        let mut mask = vec![0u32; b * s];
        for (r, src) in sources.iter().enumerate() {
            ids[r * s..r * s + src.len()].copy_from_slice(src);
            mask[r * s..r * s + src.len()].fill(1);
        }
        let positions: Vec<u32> = (0..b * s).map(|i| (i % s) as u32).collect();
        Ok(vec![
            ("ids", HostInput::u32(ids, &[b, s])),
            ("positions", HostInput::u32(positions, &[b, s])),
            ("mask", HostInput::u32(mask, &[b, s])),
        ])
    }

    /// A new plan of the graph for a `[batch, seq]` batch, owned by the caller: a decode loop
    /// replays its recording and writes its input tensors, so loops must not share one (two
    /// threads running two loops would write each other's inputs between write and submit).
    pub fn new_plan(&self, batch: usize, seq: usize) -> Result<Plan> {
        let shapes: BTreeMap<String, Vec<usize>> = ["ids", "positions", "mask"]
            .iter()
            .map(|n| (n.to_string(), vec![batch, seq]))
            .collect();
        Plan::build(&self.gpu, &self.graph, &shapes)
    }

    /// Runs the encoder alone on a padded batch: `[B, S, E]` f32, S the longest source.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn encode(&self, sources: &[Vec<u32>], pad: u32) -> Result<Vec<f32>> {
        pollster::block_on(self.encode_async(sources, pad))
    }

    /// [`Encoder::encode`] without blocking on the readback.
    pub async fn encode_async(&self, sources: &[Vec<u32>], pad: u32) -> Result<Vec<f32>> {
        let inputs = Encoder::batch_inputs(sources, pad)?;
        let out = self.session.run_async(&inputs).await?;
        let h = out
            .get("hidden")
            .ok_or_else(|| Error::invalid("marian encoder", "no hidden output"))?;
        debug_assert_eq!(h.shape.last(), Some(&self.width));
        Ok(h.data.clone())
    }
}
