//! The CPU reference forward of a Marian model (f64 arithmetic over the f32 weights): the oracle
//! of the GPU encoder and decoder tests, and the model behind the CPU reference of `generate`.
//!
//! Written for clarity, one sentence at a time (no padding: a padded batch on the GPU must give
//! each sentence's unpadded result). Post-LN layers as transformers' `MarianEncoderLayer` /
//! `MarianDecoderLayer`: `x = LN(x + Attn(x))`, `x = LN(x + FFN(x))`, embeddings scaled by
//! `embed_scale` plus positions, no embedding LayerNorm.
//!
//! ```no_run
//! use heedful::models::marian::reference::Reference;
//! let r = Reference::load("weights/marian".as_ref())?;
//! let enc = r.encode(&[5, 6, 0])?; // [S, E]
//! let logits = r.decoder_logits(&enc, &[r.decoder_start()?, 7])?; // [2, Vd]
//! # Ok::<(), heedful::Error>(())
//! ```

use std::path::Path;

use crate::error::{Error, Result};
use crate::ops::Activation;

use super::config::{MarianConfig, LAYER_NORM_EPS};
use super::weights::{open_weights, Attention, HostArray, Linear, MarianWeights, Norm};

const OP: &str = "marian reference";

/// A Marian model on the CPU.
pub struct Reference {
    /// The model's config.
    pub cfg: MarianConfig,
    w: MarianWeights<HostArray>,
}

/// One sentence's encoder output `[S, E]` (row-major f64).
#[derive(Clone, Debug)]
pub struct Encoded {
    /// Source positions S.
    pub len: usize,
    /// `[S, E]` values.
    pub data: Vec<f64>,
}

fn linear(x: &[f64], rows: usize, l: &Linear<HostArray>) -> Vec<f64> {
    let (out, inp) = (l.w.shape[0], l.w.shape[1]);
    let mut y = vec![0f64; rows * out];
    for r in 0..rows {
        let xr = &x[r * inp..(r + 1) * inp];
        for o in 0..out {
            let wr = &l.w.data[o * inp..(o + 1) * inp];
            let mut acc = l.b.data[o] as f64;
            for (a, b) in xr.iter().zip(wr) {
                acc += a * *b as f64;
            }
            y[r * out + o] = acc;
        }
    }
    y
}

fn layer_norm(x: &mut [f64], e: usize, n: &Norm<HostArray>) {
    for row in x.chunks_mut(e) {
        let mean = row.iter().sum::<f64>() / e as f64;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / e as f64;
        let inv = 1.0 / (var + LAYER_NORM_EPS as f64).sqrt();
        for (i, v) in row.iter_mut().enumerate() {
            *v = (*v - mean) * inv * n.w.data[i] as f64 + n.b.data[i] as f64;
        }
    }
}

fn activate(x: f64, f: Activation) -> f64 {
    match f {
        Activation::Relu => x.max(0.0),
        Activation::Tanh => x.tanh(),
        Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        Activation::Silu => x / (1.0 + (-x).exp()),
        Activation::Gelu => 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
        Activation::GeluTanh => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
        }
    }
}

/// erf by its series / continued fraction (|error| < 1e-13), so the reference needs no libm.
fn erf(x: f64) -> f64 {
    if x.abs() < 2.5 {
        // Maclaurin series.
        let mut sum = x;
        let mut term = x;
        let x2 = x * x;
        let mut n = 0.0;
        loop {
            n += 1.0;
            term *= -x2 / n;
            let add = term / (2.0 * n + 1.0);
            sum += add;
            if add.abs() < 1e-17 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc continued fraction (Lentz), good for |x| >= 2.5.
        let a = x.abs();
        let mut f = a;
        let (mut c, mut d) = (a, 0.0);
        for k in 1..200 {
            let an = k as f64 / 2.0;
            d = 1.0 / (a + an * d);
            c = a + an / c;
            let delta = c * d;
            f *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        let erfc = (-a * a).exp() / (f * std::f64::consts::PI.sqrt());
        (1.0 - erfc).copysign(x)
    }
}

/// Multi-head attention of `tq` queries over `tk` keys: `q` `[Tq, E]`, `k`, `v` `[Tk, E]`;
/// query i sees keys `j < visible(i)`. Returns the context `[Tq, E]` and the probabilities
/// `[H, Tq, Tk]`.
fn attend(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    (tq, tk, e, heads): (usize, usize, usize, usize),
    visible: impl Fn(usize) -> usize,
) -> (Vec<f64>, Vec<f64>) {
    let d = e / heads;
    let scale = 1.0 / (d as f64).sqrt();
    let mut ctx = vec![0f64; tq * e];
    let mut probs = vec![0f64; heads * tq * tk];
    for h in 0..heads {
        for i in 0..tq {
            let n = visible(i).min(tk);
            let qi = &q[i * e + h * d..i * e + (h + 1) * d];
            let scores: Vec<f64> = (0..n)
                .map(|j| {
                    let kj = &k[j * e + h * d..j * e + (h + 1) * d];
                    qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>() * scale
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let ex: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let z: f64 = ex.iter().sum();
            for (j, p) in ex.iter().enumerate() {
                let p = p / z;
                probs[(h * tq + i) * tk + j] = p;
                for c in 0..d {
                    ctx[i * e + h * d + c] += p * v[j * e + h * d + c];
                }
            }
        }
    }
    (ctx, probs)
}

fn mha(
    x_q: &[f64],
    x_kv: &[f64],
    (tq, tk, e, heads): (usize, usize, usize, usize),
    a: &Attention<HostArray>,
    visible: impl Fn(usize) -> usize,
) -> (Vec<f64>, Vec<f64>) {
    let q = linear(x_q, tq, &a.q);
    let k = linear(x_kv, tk, &a.k);
    let v = linear(x_kv, tk, &a.v);
    let (ctx, probs) = attend(&q, &k, &v, (tq, tk, e, heads), visible);
    (linear(&ctx, tq, &a.o), probs)
}

fn add_into(x: &mut [f64], y: &[f64]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// The decoder's outputs for a teacher-forced prefix.
#[derive(Clone, Debug)]
pub struct DecoderOutput {
    /// `[T, Vd]` logits.
    pub logits: Vec<f32>,
    /// Per decoder layer, cross-attention probabilities `[H, T, S]`.
    pub cross_attention: Vec<Vec<f64>>,
}

impl Reference {
    /// Loads a Marian folder's `config.json` and `model.safetensors`.
    pub fn load(dir: &Path) -> Result<Reference> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let cfg = MarianConfig::from_json_str(&text)?;
        let file = open_weights(dir)?;
        let w = MarianWeights::resolve(&cfg, &file)?.host(&file)?;
        Ok(Reference { cfg, w })
    }

    /// The decoder start token.
    pub fn decoder_start(&self) -> Result<u32> {
        self.cfg.decoder_start_id()
    }

    fn embed(
        &self,
        ids: &[u32],
        table: &HostArray,
        pos: &HostArray,
        offset: usize,
    ) -> Result<Vec<f64>> {
        let e = self.cfg.d_model;
        let scale = self.cfg.embed_scale() as f64;
        let (v, p) = (table.shape[0], pos.shape[0]);
        let mut x = vec![0f64; ids.len() * e];
        for (t, &id) in ids.iter().enumerate() {
            let at = t + offset;
            if id as usize >= v || at >= p {
                return Err(Error::invalid(
                    OP,
                    format!("token {id} at position {at}: the table has {v} ids and {p} positions"),
                ));
            }
            for c in 0..e {
                x[t * e + c] =
                    table.data[id as usize * e + c] as f64 * scale + pos.data[at * e + c] as f64;
            }
        }
        Ok(x)
    }

    /// The encoder output of one sentence (`ids` as the tokenizer gives them, `</s>` included).
    pub fn encode(&self, ids: &[u32]) -> Result<Encoded> {
        let c = &self.cfg;
        let (e, s) = (c.d_model, ids.len());
        let act = c.activation()?;
        let mut x = self.embed(ids, &self.w.enc_embed, &self.w.enc_pos, 0)?;
        for l in &self.w.encoder {
            let (a, _) = mha(
                &x,
                &x,
                (s, s, e, c.encoder_attention_heads),
                &l.self_attn,
                |_| s,
            );
            add_into(&mut x, &a);
            layer_norm(&mut x, e, &l.self_norm);
            let mut h = linear(&x, s, &l.fc1);
            h.iter_mut().for_each(|v| *v = activate(*v, act));
            let h = linear(&h, s, &l.fc2);
            add_into(&mut x, &h);
            layer_norm(&mut x, e, &l.final_norm);
        }
        Ok(Encoded { len: s, data: x })
    }

    /// Teacher-forced decoder logits: row t is the distribution of the token after `tokens[..=t]`
    /// (`tokens[0]` is the decoder start token).
    pub fn decoder_logits(&self, enc: &Encoded, tokens: &[u32]) -> Result<Vec<f32>> {
        Ok(self.decode(enc, tokens)?.logits)
    }

    /// [`Reference::decoder_logits`] with the cross-attention probabilities of every layer.
    pub fn decode(&self, enc: &Encoded, tokens: &[u32]) -> Result<DecoderOutput> {
        let c = &self.cfg;
        let (e, t, s) = (c.d_model, tokens.len(), enc.len);
        let act = c.activation()?;
        let heads = c.decoder_attention_heads;
        let mut x = self.embed(tokens, &self.w.dec_embed, &self.w.dec_pos, 0)?;
        let mut cross = Vec::new();
        for l in &self.w.decoder {
            let (a, _) = mha(&x, &x, (t, t, e, heads), &l.self_attn, |i| i + 1);
            add_into(&mut x, &a);
            layer_norm(&mut x, e, &l.self_norm);
            let (a, p) = mha(&x, &enc.data, (t, s, e, heads), &l.cross_attn, |_| s);
            cross.push(p);
            add_into(&mut x, &a);
            layer_norm(&mut x, e, &l.cross_norm);
            let mut h = linear(&x, t, &l.fc1);
            h.iter_mut().for_each(|v| *v = activate(*v, act));
            let h = linear(&h, t, &l.fc2);
            add_into(&mut x, &h);
            layer_norm(&mut x, e, &l.final_norm);
        }
        let head = Linear {
            w: self.w.lm_head.clone(),
            b: self.w.final_logits_bias.clone(),
        };
        let logits = linear(&x, t, &head).into_iter().map(|v| v as f32).collect();
        Ok(DecoderOutput {
            logits,
            cross_attention: cross,
        })
    }

    /// A step function for the CPU reference of `generate`: rows `r` of item `r / beams` keep
    /// their prefixes; each call appends `tokens[r]` to row `parents[r]`'s prefix (rows move
    /// with beams) and returns the `[R, Vd]` logits of the next token. Recomputes each prefix
    /// (quadratic, a reference).
    pub fn stepper<'a>(&'a self, sources: &[Vec<u32>], beams: usize) -> Result<Stepper<'a>> {
        let enc = sources
            .iter()
            .map(|s| self.encode(s))
            .collect::<Result<Vec<_>>>()?;
        Ok(Stepper {
            model: self,
            enc,
            beams: beams.max(1),
            prefixes: Vec::new(),
        })
    }
}

/// See [`Reference::stepper`].
pub struct Stepper<'a> {
    model: &'a Reference,
    enc: Vec<Encoded>,
    beams: usize,
    prefixes: Vec<Vec<u32>>,
}

impl Stepper<'_> {
    /// Feeds step `tokens` (`[R]`) after reordering rows by `parents` (`[R]`, None = unchanged);
    /// returns `[R, Vd]` logits.
    pub fn step(&mut self, tokens: &[u32], parents: Option<&[u32]>) -> Result<Vec<f32>> {
        let r = self.enc.len() * self.beams;
        if tokens.len() != r {
            return Err(Error::shape(
                OP,
                format!("{} tokens for {r} rows", tokens.len()),
            ));
        }
        if self.prefixes.is_empty() {
            self.prefixes = vec![Vec::new(); r];
        } else if let Some(p) = parents {
            let old = std::mem::take(&mut self.prefixes);
            self.prefixes = p
                .iter()
                .map(|&i| old.get(i as usize).cloned().unwrap_or_default())
                .collect();
        }
        let mut out = Vec::new();
        for (row, &tok) in tokens.iter().enumerate() {
            self.prefixes[row].push(tok);
            let l = self
                .model
                .decoder_logits(&self.enc[row / self.beams], &self.prefixes[row])?;
            let v = l.len() / self.prefixes[row].len();
            out.extend_from_slice(&l[l.len() - v..]);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::erf;

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (-2.0, -0.995_322_265_018_952_7),
            (3.0, 0.999_977_909_503_001_4),
            (-6.0, -1.0),
        ] {
            assert!((erf(x) - want).abs() < 1e-12, "erf({x}) = {}", erf(x));
        }
    }
}
