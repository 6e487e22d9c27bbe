//! Typed Marian weights, by the names of transformers' `MarianMTModel` state dict.
//!
//! [`MarianWeights::resolve`] finds every tensor the config implies in a `model.safetensors`
//! (F32, F16 or BF16) and checks its dtype and exact shape before anything is read or uploaded;
//! the result names, per role, the tensor that fills it (tied embeddings are one tensor under one
//! of several names, whichever `save_pretrained` kept) or how it is made when the file does not
//! hold it: the sinusoidal position table, built exactly as transformers'
//! `MarianSinusoidalPositionalEmbedding` (sin half, then cos half), or a zero `final_logits_bias`.
//! [`MarianWeights::try_map`] then turns every entry into what a consumer needs: GPU tensors
//! ([`MarianWeights::upload`]) or f32 host arrays for the CPU reference ([`MarianWeights::host`]).
//!
//! Shapes (legend: E = d_model, F = ffn dim, V source vocabulary, Vd target vocabulary, P =
//! max_position_embeddings): linears `[out, in]` as `nn.Linear`, biases `[out]`, LayerNorm `[E]`,
//! embeddings `[V, E]` / `[Vd, E]`, positions `[P, E]`, output layer `[Vd, E]`, bias `[Vd]`.

use std::path::Path;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::tensor::{DType, Tensor};
use crate::weights::{Hold, UploadOptions, WeightFile, WeightsErrorKind};

use super::config::MarianConfig;

/// The converter script that writes `model.safetensors` from a `pytorch_model.bin`.
pub const BIN_CONVERTER: &str = "weights/marian_bin_to_safetensors.py";

/// Where one weight comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// The file's tensor of this name (its shape, as stored, is `shape`).
    Tensor {
        /// Name in the file.
        name: String,
        /// Shape the model uses (the file's shape; `final_logits_bias` `[1, Vd]` is used as `[Vd]`).
        shape: Vec<usize>,
    },
    /// The sinusoidal position table `[P, E]` (not in the file).
    Sinusoidal {
        /// Rows P.
        positions: usize,
        /// Width E.
        dim: usize,
    },
    /// Zeros of this shape (a `final_logits_bias` the file lacks, as transformers).
    Zeros(Vec<usize>),
}

impl Source {
    /// The shape the model uses.
    pub fn shape(&self) -> Vec<usize> {
        match self {
            Source::Tensor { shape, .. } | Source::Zeros(shape) => shape.clone(),
            Source::Sinusoidal { positions, dim } => vec![*positions, *dim],
        }
    }

    /// The file's tensor name, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            Source::Tensor { name, .. } => Some(name),
            _ => None,
        }
    }
}

/// `x @ w^T + b` (`nn.Linear`): w `[out, in]`, b `[out]`.
#[derive(Clone, Debug)]
pub struct Linear<T> {
    /// Weight `[out, in]`.
    pub w: T,
    /// Bias `[out]`.
    pub b: T,
}

/// A LayerNorm's weight and bias, `[E]` each.
#[derive(Clone, Debug)]
pub struct Norm<T> {
    /// Scale `[E]`.
    pub w: T,
    /// Shift `[E]`.
    pub b: T,
}

/// One attention block's projections (`MarianAttention`): q, k, v, out, each `[E, E]` + `[E]`.
#[derive(Clone, Debug)]
pub struct Attention<T> {
    /// Query projection.
    pub q: Linear<T>,
    /// Key projection.
    pub k: Linear<T>,
    /// Value projection.
    pub v: Linear<T>,
    /// Output projection.
    pub o: Linear<T>,
}

/// A post-LN encoder layer.
#[derive(Clone, Debug)]
pub struct EncoderLayer<T> {
    /// Self-attention.
    pub self_attn: Attention<T>,
    /// LayerNorm after self-attention + residual.
    pub self_norm: Norm<T>,
    /// FFN in `[F, E]`.
    pub fc1: Linear<T>,
    /// FFN out `[E, F]`.
    pub fc2: Linear<T>,
    /// LayerNorm after the FFN + residual.
    pub final_norm: Norm<T>,
}

/// A post-LN decoder layer.
#[derive(Clone, Debug)]
pub struct DecoderLayer<T> {
    /// Causal self-attention.
    pub self_attn: Attention<T>,
    /// LayerNorm after self-attention + residual.
    pub self_norm: Norm<T>,
    /// Cross-attention over the encoder output.
    pub cross_attn: Attention<T>,
    /// LayerNorm after cross-attention + residual.
    pub cross_norm: Norm<T>,
    /// FFN in `[F, E]`.
    pub fc1: Linear<T>,
    /// FFN out `[E, F]`.
    pub fc2: Linear<T>,
    /// LayerNorm after the FFN + residual.
    pub final_norm: Norm<T>,
}

/// Every weight of a Marian model.
#[derive(Clone, Debug)]
pub struct MarianWeights<T> {
    /// Source token embeddings `[V, E]` (unscaled; the model multiplies by `embed_scale`).
    pub enc_embed: T,
    /// Target token embeddings `[Vd, E]`.
    pub dec_embed: T,
    /// Encoder positions `[P, E]`.
    pub enc_pos: T,
    /// Decoder positions `[P, E]`.
    pub dec_pos: T,
    /// Encoder layers.
    pub encoder: Vec<EncoderLayer<T>>,
    /// Decoder layers.
    pub decoder: Vec<DecoderLayer<T>>,
    /// Output layer `[Vd, E]` (the decoder embeddings when tied).
    pub lm_head: T,
    /// `final_logits_bias` `[Vd]`.
    pub final_logits_bias: T,
}

impl<T> Linear<T> {
    fn try_map<U>(&self, f: &mut impl FnMut(&T) -> Result<U>) -> Result<Linear<U>> {
        Ok(Linear {
            w: f(&self.w)?,
            b: f(&self.b)?,
        })
    }
}

impl<T> Norm<T> {
    fn try_map<U>(&self, f: &mut impl FnMut(&T) -> Result<U>) -> Result<Norm<U>> {
        Ok(Norm {
            w: f(&self.w)?,
            b: f(&self.b)?,
        })
    }
}

impl<T> Attention<T> {
    fn try_map<U>(&self, f: &mut impl FnMut(&T) -> Result<U>) -> Result<Attention<U>> {
        Ok(Attention {
            q: self.q.try_map(f)?,
            k: self.k.try_map(f)?,
            v: self.v.try_map(f)?,
            o: self.o.try_map(f)?,
        })
    }
}

impl<T> MarianWeights<T> {
    /// Every entry mapped through `f` (in a fixed order: embeddings, positions, encoder layers,
    /// decoder layers, output layer, bias).
    pub fn try_map<U>(&self, mut f: impl FnMut(&T) -> Result<U>) -> Result<MarianWeights<U>> {
        let f = &mut f;
        Ok(MarianWeights {
            enc_embed: f(&self.enc_embed)?,
            dec_embed: f(&self.dec_embed)?,
            enc_pos: f(&self.enc_pos)?,
            dec_pos: f(&self.dec_pos)?,
            encoder: self
                .encoder
                .iter()
                .map(|l| {
                    Ok(EncoderLayer {
                        self_attn: l.self_attn.try_map(f)?,
                        self_norm: l.self_norm.try_map(f)?,
                        fc1: l.fc1.try_map(f)?,
                        fc2: l.fc2.try_map(f)?,
                        final_norm: l.final_norm.try_map(f)?,
                    })
                })
                .collect::<Result<_>>()?,
            decoder: self
                .decoder
                .iter()
                .map(|l| {
                    Ok(DecoderLayer {
                        self_attn: l.self_attn.try_map(f)?,
                        self_norm: l.self_norm.try_map(f)?,
                        cross_attn: l.cross_attn.try_map(f)?,
                        cross_norm: l.cross_norm.try_map(f)?,
                        fc1: l.fc1.try_map(f)?,
                        fc2: l.fc2.try_map(f)?,
                        final_norm: l.final_norm.try_map(f)?,
                    })
                })
                .collect::<Result<_>>()?,
            lm_head: f(&self.lm_head)?,
            final_logits_bias: f(&self.final_logits_bias)?,
        })
    }
}

/// The sinusoidal position table `[n_pos, dim]` exactly as transformers'
/// `MarianSinusoidalPositionalEmbedding.create_weight`: angle `pos / 10000^(2*(j//2)/dim)`
/// (computed in f64 as numpy does), the sines of the even columns in the first
/// `ceil(dim/2)` columns, the cosines of the odd columns after them, rounded to f32.
pub fn sinusoidal_positions(n_pos: usize, dim: usize) -> Vec<f32> {
    let sentinel = dim.div_ceil(2);
    let mut out = vec![0f32; n_pos * dim];
    for pos in 0..n_pos {
        let row = &mut out[pos * dim..(pos + 1) * dim];
        let angle = |j: usize| pos as f64 / 10000f64.powf((2 * (j / 2)) as f64 / dim as f64);
        for (c, j) in (0..dim).step_by(2).enumerate() {
            row[c] = angle(j).sin() as f32;
        }
        for (c, j) in (1..dim).step_by(2).enumerate() {
            row[sentinel + c] = angle(j).cos() as f32;
        }
    }
    out
}

/// An f32 host array (the CPU reference's weights).
#[derive(Clone, Debug)]
pub struct HostArray {
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// The file's first name among `names` that it holds.
fn first_present<'a>(file: &WeightFile, names: &[&'a str]) -> Option<&'a str> {
    names.iter().copied().find(|n| file.contains(n))
}

impl MarianWeights<Source> {
    /// Finds every weight `cfg` implies in `file`, checking dtypes (floats) and exact shapes; a
    /// missing tensor, a wrong shape (the error names the tensor and both shapes), or layers the
    /// file holds beyond the config's counts are errors.
    pub fn resolve(cfg: &MarianConfig, file: &WeightFile) -> Result<MarianWeights<Source>> {
        cfg.check()?;
        let (e, v, vd, p) = (
            cfg.d_model,
            cfg.vocab_size,
            cfg.decoder_vocab(),
            cfg.max_position_embeddings,
        );
        // A config whose layer count dwarfs the file cannot be right: say so before building a
        // long list of names.
        let per_layer = 16;
        if cfg.encoder_layers.saturating_add(cfg.decoder_layers) > file.len() / per_layer + 1 {
            return Err(file.config_error(
                "model.encoder.layers.0.self_attn.q_proj.weight",
                WeightsErrorKind::MissingTensor,
                format!(
                    "config.json asks for {} encoder + {} decoder layers, but the file holds only \
                     {} tensors",
                    cfg.encoder_layers,
                    cfg.decoder_layers,
                    file.len()
                ),
            ));
        }
        let t = |name: &str, shape: &[usize]| -> Result<Source> {
            file.expect_float(name, shape)?;
            Ok(Source::Tensor {
                name: name.to_string(),
                shape: shape.to_vec(),
            })
        };
        let missing = |names: &[&str], why: &str| -> Error {
            file.config_error(
                names[0],
                WeightsErrorKind::MissingTensor,
                format!("is missing (also looked for {:?}); {why}", &names[1..]),
            )
        };
        let shared = ["model.shared.weight"];
        let (enc_names, dec_names): (Vec<&str>, Vec<&str>) = if cfg.share_encoder_decoder_embeddings
        {
            let all = vec![
                "model.shared.weight",
                "model.encoder.embed_tokens.weight",
                "model.decoder.embed_tokens.weight",
                "lm_head.weight",
            ];
            (all.clone(), all)
        } else {
            (
                vec!["model.encoder.embed_tokens.weight", shared[0]],
                vec!["model.decoder.embed_tokens.weight"],
            )
        };
        let enc_embed = first_present(file, &enc_names)
            .ok_or_else(|| missing(&enc_names, "the source embeddings are required"))?;
        let enc_embed = t(enc_embed, &[v, e])?;
        let mut dec_cands = dec_names.clone();
        if cfg.tie_word_embeddings && !cfg.share_encoder_decoder_embeddings {
            dec_cands.push("lm_head.weight");
        }
        let dec_embed = first_present(file, &dec_cands)
            .ok_or_else(|| missing(&dec_cands, "the target embeddings are required"))?;
        let dec_embed = t(dec_embed, &[vd, e])?;
        let lm_head = if cfg.tie_word_embeddings {
            dec_embed.clone()
        } else {
            let n = ["lm_head.weight"];
            if !file.contains(n[0]) {
                return Err(missing(
                    &n,
                    "config.json has tie_word_embeddings = false, so the output layer is its own \
                     tensor",
                ));
            }
            t(n[0], &[vd, e])?
        };
        let final_logits_bias = match file.get("final_logits_bias") {
            Some(view) => {
                let shape = if view.shape.len() == 2 {
                    vec![1, vd]
                } else {
                    vec![vd]
                };
                file.expect_float("final_logits_bias", &shape)?;
                Source::Tensor {
                    name: "final_logits_bias".into(),
                    shape: vec![vd],
                }
            }
            None => Source::Zeros(vec![vd]),
        };
        let pos = |side: &str| -> Result<Source> {
            let name = format!("model.{side}.embed_positions.weight");
            if file.contains(&name) {
                t(&name, &[p, e])
            } else {
                Ok(Source::Sinusoidal {
                    positions: p,
                    dim: e,
                })
            }
        };
        let lin = |pre: &str, out: usize, inp: usize| -> Result<Linear<Source>> {
            Ok(Linear {
                w: t(&format!("{pre}.weight"), &[out, inp])?,
                b: t(&format!("{pre}.bias"), &[out])?,
            })
        };
        let norm = |pre: &str| -> Result<Norm<Source>> {
            Ok(Norm {
                w: t(&format!("{pre}.weight"), &[e])?,
                b: t(&format!("{pre}.bias"), &[e])?,
            })
        };
        let attn = |pre: &str| -> Result<Attention<Source>> {
            Ok(Attention {
                q: lin(&format!("{pre}.q_proj"), e, e)?,
                k: lin(&format!("{pre}.k_proj"), e, e)?,
                v: lin(&format!("{pre}.v_proj"), e, e)?,
                o: lin(&format!("{pre}.out_proj"), e, e)?,
            })
        };
        let mut encoder = Vec::with_capacity(cfg.encoder_layers);
        for l in 0..cfg.encoder_layers {
            let pre = format!("model.encoder.layers.{l}");
            let f = cfg.encoder_ffn_dim;
            encoder.push(EncoderLayer {
                self_attn: attn(&format!("{pre}.self_attn"))?,
                self_norm: norm(&format!("{pre}.self_attn_layer_norm"))?,
                fc1: lin(&format!("{pre}.fc1"), f, e)?,
                fc2: lin(&format!("{pre}.fc2"), e, f)?,
                final_norm: norm(&format!("{pre}.final_layer_norm"))?,
            });
        }
        let mut decoder = Vec::with_capacity(cfg.decoder_layers);
        for l in 0..cfg.decoder_layers {
            let pre = format!("model.decoder.layers.{l}");
            let f = cfg.decoder_ffn_dim;
            decoder.push(DecoderLayer {
                self_attn: attn(&format!("{pre}.self_attn"))?,
                self_norm: norm(&format!("{pre}.self_attn_layer_norm"))?,
                cross_attn: attn(&format!("{pre}.encoder_attn"))?,
                cross_norm: norm(&format!("{pre}.encoder_attn_layer_norm"))?,
                fc1: lin(&format!("{pre}.fc1"), f, e)?,
                fc2: lin(&format!("{pre}.fc2"), e, f)?,
                final_norm: norm(&format!("{pre}.final_layer_norm"))?,
            });
        }
        // Layers beyond the config's counts: running fewer than the file holds is silently wrong.
        for (side, n) in [
            ("encoder", cfg.encoder_layers),
            ("decoder", cfg.decoder_layers),
        ] {
            let pre = format!("model.{side}.layers.");
            for name in file.names() {
                let idx = name
                    .strip_prefix(&pre)
                    .and_then(|r| r.split('.').next())
                    .and_then(|d| d.parse::<usize>().ok());
                if idx.is_some_and(|i| i >= n) {
                    return Err(file.config_error(
                        name,
                        WeightsErrorKind::ShapeMismatch,
                        format!(
                            "is in the file but config.json has {side}_layers = {n}; running \
                             fewer layers than the file holds would give wrong outputs"
                        ),
                    ));
                }
            }
        }
        Ok(MarianWeights {
            enc_embed,
            dec_embed,
            enc_pos: pos("encoder")?,
            dec_pos: pos("decoder")?,
            encoder,
            decoder,
            lm_head,
            final_logits_bias,
        })
    }

    /// Reads every weight as an f32 host array (the CPU reference).
    pub fn host(&self, file: &WeightFile) -> Result<MarianWeights<HostArray>> {
        self.try_map(|s| {
            Ok(HostArray {
                shape: s.shape(),
                data: read_source(file, s)?,
            })
        })
    }

    /// Uploads every weight: linears, norms and embeddings held as `hold` (f16 by default,
    /// converted on upload), position tables and `final_logits_bias` in f32 (they are added to
    /// activations and cost little). Tied tensors are uploaded once.
    pub fn upload(
        &self,
        gpu: &Gpu,
        file: &WeightFile,
        hold: Hold,
    ) -> Result<MarianWeights<Tensor>> {
        let up = UploadOptions::new(hold);
        let mut cache: std::collections::BTreeMap<String, Tensor> = Default::default();
        // Derived sources (the sinusoidal table the encoder and decoder both use) once each.
        let mut derived: Vec<(Source, Tensor)> = Vec::new();
        self.try_map(|s| match s {
            Source::Tensor { name, shape } if *name != "final_logits_bias" => {
                if let Some(t) = cache.get(name) {
                    return Ok(t.clone());
                }
                let t = file.upload_with(gpu, name, &up)?.reshape(shape)?;
                cache.insert(name.clone(), t.clone());
                Ok(t)
            }
            other => {
                if let Some((_, t)) = derived.iter().find(|(d, _)| d == other) {
                    return Ok(t.clone());
                }
                let data = read_source(file, other)?;
                let t = Tensor::from_f32_as(gpu, &data, &other.shape(), DType::F32)?;
                derived.push((other.clone(), t.clone()));
                Ok(t)
            }
        })
    }
}

/// The f32 values of one source.
fn read_source(file: &WeightFile, s: &Source) -> Result<Vec<f32>> {
    match s {
        Source::Tensor { name, .. } => file.tensor(name)?.to_f32_vec(),
        Source::Sinusoidal { positions, dim } => Ok(sinusoidal_positions(*positions, *dim)),
        Source::Zeros(shape) => Ok(vec![0.0; shape.iter().product()]),
    }
}

/// Opens a Marian folder's `model.safetensors`; a folder with only `pytorch_model.bin` gets an
/// error naming the converter script.
pub fn open_weights(dir: &Path) -> Result<WeightFile> {
    let st = dir.join("model.safetensors");
    if !st.exists() {
        if dir.join("pytorch_model.bin").exists() {
            return Err(Error::file(
                dir,
                format!(
                    "holds pytorch_model.bin but no model.safetensors; heedful reads safetensors \
                     only (no pickle): convert it with `python3 {BIN_CONVERTER} {}`, which writes \
                     model.safetensors beside it",
                    dir.display()
                ),
            ));
        }
        return Err(Error::file(
            &st,
            "not found: a Marian folder needs model.safetensors (as save_pretrained writes it)",
        ));
    }
    WeightFile::open(&st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinusoidal_matches_hf_layout() {
        // Values from transformers' create_weight for n_pos = 3, dim = 5 (odd: sentinel 3).
        let t = sinusoidal_positions(3, 5);
        // pos 0: sin(0) = 0 in the sine half, cos(0) = 1 in the cosine half.
        assert_eq!(&t[0..5], &[0.0, 0.0, 0.0, 1.0, 1.0]);
        // pos 2, column 1: sin(2 / 10000^(2/5)); column 3: cos(2 / 10000^(0/5)) = cos(2).
        let a = 2f64 / 10000f64.powf(2.0 / 5.0);
        assert_eq!(t[5 * 2 + 1], a.sin() as f32);
        assert_eq!(t[5 * 2 + 3], 2f64.cos() as f32);
        assert_eq!(t[5 * 2 + 4], a.cos() as f32);
    }
}
