//! Fused LSTM / GRU / RNN encoder layers (`shaders/encoder_loop.wgsl`): one dispatch per layer, one
//! workgroup per (sequence, direction) running all of its timesteps, the embedding lookup of layer
//! 0 included. Replaces, per layer, the input-projection GEMM and the recurrence kernel (one
//! dispatch per timestep, or one workgroup for the whole batch) of [`crate::ops::RecurrentLayer`]
//! for encoders whose step fits one workgroup, with the same results (PyTorch semantics, variable
//! lengths as `pack_padded_sequence`, zero initial state).
//!
//! Shapes: ids `[R, T]` u32, lengths `[R]` u32 (1..=T), each layer's output `[R, T, D*H]`, final
//! states `[L*D, R, H]` (as `nn.LSTM`'s `h_n`, `c_n`).
//!
//! Here: the blob layout the WGSL reads (`EncoderLayout`), the checks and the dispatches. The
//! weights are packed into an [`EncoderBlob`] by [`crate::weights::pack::EncoderWeights::pack`].

use crate::error::{Error, Result};
use crate::gpu::spec::{Bind, Bindings, UniformParams};
use crate::gpu::{compose, Gpu, Recorder};
use crate::kernels::recurrent::{CellKind, RecurrentSpec};
use crate::kernels::rnn_fused::{fold_pays, p8, wg, BlobLayout, Part, RNN_FUSED_SRC};
use crate::tensor::{DType, Tensor};

const SRC: &str = include_str!("../../shaders/encoder_loop.wgsl");
const OP: &str = "encoder_loop";

/// Where an encoder's weights lie in its blob: the slots the packer fills and each layer's WGSL
/// constants (offsets and widths).
#[derive(Clone, Debug)]
pub(crate) struct EncoderLayout {
    /// The blob's slots.
    pub(crate) blob: BlobLayout,
    spec: RecurrentSpec,
    vocab: usize,
    /// Per layer: the kernel's constants.
    layers: Vec<Vec<(&'static str, u32)>>,
}

/// An encoder's embedding and recurrent weights packed for the fused kernel (f16), with each
/// layer's offsets. Built by [`crate::weights::pack::EncoderWeights::pack`].
#[derive(Debug)]
pub struct EncoderBlob {
    blob: Tensor,
    layout: EncoderLayout,
}

crate::wgsl_params! {
    struct Params {
        r: u32,
        t: u32,
        layer: u32,
        gates: u32,
    }
}

crate::wgsl_bindings! {
    /// The storage bindings of `shaders/encoder_loop.wgsl` in binding order (shapes there): the
    /// packed f16 weight blob, ids, lengths, the layer's input x, out, h_n, c_n.
    struct EncoderLoopBindings { blob, ids, lengths, x, out, h_n, c_n }
}

/// Buffers of one encoder run over `R` sequences of up to `T` ids.
#[derive(Clone, Copy, Debug)]
pub struct EncoderBuffers<'a> {
    /// `[R, T]` u32 input ids (below the vocabulary size; positions past a length are not read).
    pub ids: &'a Tensor,
    /// `[R]` u32 valid positions per sequence, 1..=T.
    pub lengths: &'a Tensor,
    /// Per layer `[R, T, D*H]` f32: each layer's output (the last one is the encoder's).
    pub outputs: &'a [Tensor],
    /// `[L*D, R, H]` f32 final hidden states.
    pub h_n: &'a Tensor,
    /// `[L*D, R, H]` f32 final cell states (LSTM only).
    pub c_n: Option<&'a Tensor>,
}

impl EncoderLayout {
    /// Whether the encoder of `spec` over `vocab` ids folds its embedding into layer 0's input
    /// projection by default: where the f32 table costs at most 4x the weights it replaces.
    pub(crate) fn folds(spec: &RecurrentSpec, vocab: usize) -> bool {
        fold_pays(vocab, spec.input_size)
    }

    /// The layout of an encoder's blob: the embedding `[vocab, spec.input_size]` (unless folded),
    /// then per layer and direction `W_ih` (or, with `fold`, for layer 0 the f32 table `[vocab,
    /// G*H]` of `W_ih emb[v] + b_ih`: one row read per step instead of the embedding lookup and a
    /// `G*H x E` product), `W_hh`, `b_ih` (not with the table, which holds it) and `b_hh`.
    pub(crate) fn new(spec: RecurrentSpec, vocab: usize, fold: bool) -> Result<EncoderLayout> {
        let (e, h, dirs, g) = (
            spec.input_size,
            spec.hidden_size,
            spec.directions(),
            spec.kind.gates(),
        );
        if vocab == 0 || e == 0 || h == 0 || spec.num_layers == 0 {
            return Err(Error::invalid(
                OP,
                format!("vocab {vocab} and {spec:?} must have non-zero sizes"),
            ));
        }
        let mut p = BlobLayout::new(OP);
        let (o_emb, ld_emb) = if fold {
            (0, 0)
        } else {
            p.matrix(Part::Embedding, vocab, e)?
        };
        let mut layers = Vec::new();
        for l in 0..spec.num_layers {
            let n_in = if l == 0 { e } else { dirs * h };
            let table = fold && l == 0;
            // Per direction: W_ih (or the folded table), W_hh, b_ih, b_hh.
            let mut offs = Vec::new();
            let mut ld_tab = 0;
            for d in 0..dirs {
                let first = if table {
                    let (o, ld) = p.table_f32(Part::FoldedTable { l, d }, vocab, g * h)?;
                    ld_tab = ld;
                    o
                } else {
                    p.matrix(Part::WeightIh { l, d }, g * h, n_in)?.0
                };
                let w_hh = p.matrix(Part::WeightHh { l, d }, g * h, h)?;
                // A folded table holds b_ih already.
                let b_ih = if table {
                    (0, 0)
                } else {
                    p.matrix(Part::BiasIh { l, d }, 1, g * h)?
                };
                let b_hh = p.matrix(Part::BiasHh { l, d }, 1, g * h)?;
                offs.push([first, w_hh.0, b_ih.0, b_hh.0]);
            }
            // Both directions' blocks have the same size: direction 1 is at direction 0 + S_DIR.
            let s_dir = if dirs == 2 {
                offs[1][1] - offs[0][1]
            } else {
                0
            };
            let n8 = p8(n_in) as u32;
            let h8 = p8(h) as u32;
            layers.push(vec![
                ("D", dirs as u32),
                ("IN", n_in as u32),
                ("IN8", n8),
                ("FIRST", u32::from(l == 0)),
                ("TABLE", u32::from(table)),
                ("O_EMB", o_emb),
                ("LD_EMB", ld_emb),
                ("O_WIH", offs[0][0]),
                ("O_TAB", offs[0][0]),
                ("LD_TAB", ld_tab),
                ("O_WHH", offs[0][1]),
                ("O_BIH", offs[0][2]),
                ("O_BHH", offs[0][3]),
                ("S_DIR", s_dir),
                ("SV_X", 0),
                ("SV_H", n8),
                ("SV_C", n8 + h8),
                ("SV_GATES", n8 + 2 * h8),
                ("NV4", (n8 + 2 * h8 + 2 * g as u32 * h8) / 4),
            ]);
        }
        Ok(EncoderLayout {
            blob: p,
            spec,
            vocab,
            layers,
        })
    }

    /// Checks that a sequence's layer state fits the device's workgroup memory (the kernel cannot
    /// run this encoder on `gpu` otherwise).
    pub(crate) fn check(&self, gpu: &Gpu) -> Result<()> {
        let widest = self
            .layers
            .iter()
            .map(|c| c.iter().find(|x| x.0 == "NV4").map_or(0, |x| x.1))
            .max()
            .unwrap_or(0) as u64
            * 16
            + 4;
        let limit = gpu.caps().max_workgroup_storage as u64;
        if widest > limit {
            return Err(Error::Limit {
                what: format!(
                    "{OP}: one sequence's layer state in workgroup memory ({:?})",
                    self.spec
                ),
                needed: widest,
                limit_name: "max_compute_workgroup_storage_size",
                limit,
            });
        }
        Ok(())
    }
}

impl EncoderBlob {
    /// The blob `blob` (`[layout.blob.len()]` f16) packed by `layout`.
    pub(crate) fn from_packed(layout: EncoderLayout, blob: Tensor) -> Result<EncoderBlob> {
        crate::kernels::rnn_fused::check_packed(OP, &blob, layout.blob.len())?;
        Ok(EncoderBlob { blob, layout })
    }

    /// The encoder's hyper-parameters.
    pub fn spec(&self) -> &RecurrentSpec {
        &self.layout.spec
    }

    /// Checks that a sequence's layer state fits the device's workgroup memory.
    pub fn check(&self, gpu: &Gpu) -> Result<()> {
        self.layout.check(gpu)
    }
}

/// Records the encoder: one dispatch per layer.
pub fn record(rec: &mut Recorder, blob: &EncoderBlob, bufs: &EncoderBuffers) -> Result<()> {
    let gpu = rec.gpu().clone();
    blob.check(&gpu)?;
    let spec = blob.spec();
    let (dirs, h, layers) = (spec.directions(), spec.hidden_size, spec.num_layers);
    let (r, t) = match bufs.ids.shape() {
        &[r, t] if r > 0 && t > 0 && bufs.ids.dtype() == DType::U32 => (r, t),
        s => {
            return Err(Error::shape(
                OP,
                format!(
                    "ids {s:?} {} must be [R, T] u32 with R, T >= 1",
                    bufs.ids.dtype()
                ),
            ))
        }
    };
    let want = |what: &str, x: &Tensor, shape: &[usize], dtype: DType| -> Result<()> {
        if x.shape() != shape || x.dtype() != dtype {
            return Err(Error::shape(
                OP,
                format!(
                    "{what} {:?} {} must be {shape:?} {dtype}",
                    x.shape(),
                    x.dtype()
                ),
            ));
        }
        Ok(())
    };
    want("lengths", bufs.lengths, &[r], DType::U32)?;
    want("h_n", bufs.h_n, &[layers * dirs, r, h], DType::F32)?;
    let lstm = spec.kind == CellKind::Lstm;
    match (lstm, bufs.c_n) {
        (true, Some(c)) => want("c_n", c, &[layers * dirs, r, h], DType::F32)?,
        (true, None) => return Err(Error::invalid(OP, "the LSTM needs c_n")),
        (false, Some(_)) => return Err(Error::invalid(OP, "c_n is only for the LSTM")),
        (false, None) => {}
    }
    if bufs.outputs.len() != layers {
        return Err(Error::invalid(
            OP,
            format!("{} layer outputs for {layers} layers", bufs.outputs.len()),
        ));
    }
    for (l, o) in bufs.outputs.iter().enumerate() {
        want(
            &format!("output of layer {l}"),
            o,
            &[r, t, dirs * h],
            DType::F32,
        )?;
    }
    // Stand-ins for unused bindings: read-only ones may share a buffer, the read-write one not.
    let no_input = Tensor::zeros(&gpu, &[4], DType::U32)?;
    let no_c = Tensor::zeros(&gpu, &[1], DType::F32)?;
    let wg = wg(&gpu);
    for (l, layer_consts) in blob.layout.layers.iter().enumerate() {
        let mut consts: Vec<(&str, u32)> = vec![
            ("CELL", spec.kind.code()),
            ("G", spec.kind.gates() as u32),
            ("H", h as u32),
            ("H8", p8(h) as u32),
            ("WG", wg),
        ];
        consts.extend(layer_consts.iter().copied());
        let key = (*spec, blob.layout.vocab, l, wg, layer_consts.clone());
        let input = if l == 0 {
            &no_input
        } else {
            &bufs.outputs[l - 1]
        };
        let binds = EncoderLoopBindings {
            blob: Bind::read(&blob.blob, "vec4<u32>"),
            ids: Bind::read(bufs.ids, "u32"),
            lengths: Bind::read(bufs.lengths, "u32"),
            x: Bind::read(input, "f32"),
            out: Bind::read_write(&bufs.outputs[l], "f32"),
            h_n: Bind::read_write(bufs.h_n, "f32"),
            c_n: Bind::read_write(bufs.c_n.unwrap_or(&no_c), "f32"),
        };
        let pipeline = gpu.pipeline(OP, &key, || {
            compose(
                &format!("{RNN_FUSED_SRC}\n{SRC}"),
                false,
                &consts,
                &[vec![Params::wgsl()], binds.wgsl()].concat(),
            )
        })?;
        let params = Params {
            r: r as u32,
            t: t as u32,
            layer: l as u32,
            gates: spec.kind.gates() as u32,
        };
        let d = gpu.dispatch(
            OP,
            &pipeline,
            bytemuck::bytes_of(&params),
            &binds.buffers(),
            gpu.grid((r * dirs) as u32),
        )?;
        rec.push(d);
    }
    Ok(())
}
