//! The validated form of a product shared by the matmul kernels: `Params` (mirrors the WGSL
//! uniform of matmul.wgsl, matmul_tiled.wgsl and gemv.wgsl), operand dtypes, bindings and grids.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{declare_input, Elem, Recorder};
use crate::kernels::check_dtype;
use crate::tensor::{DType, Tensor};

/// Mirrors `Params` in matmul.wgsl, matmul_tiled.wgsl and gemv.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct Params {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub batch: u32,
    pub a_bs: u32,
    pub b_bs: u32,
    pub o_bs: u32,
    pub tiles_n: u32,
    pub tiles_m: u32,
    pub alpha: f32,
    pub _pad: [u32; 2],
}

/// A validated product: `out[b] = alpha * a[b] @ B[b] + bias`.
pub(crate) struct Problem<'a> {
    pub op: &'static str,
    pub a: &'a Tensor,
    pub b: &'a Tensor,
    pub bias: Option<&'a Tensor>,
    pub out: &'a Tensor,
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// b is `[N, K]` (transposed) rather than `[K, N]`.
    pub bt: bool,
    /// b has no batch dims (shared).
    pub b_shared: bool,
    pub alpha: f32,
}

impl Problem<'_> {
    pub(crate) fn params(&self, tiles_n: usize, tiles_m: usize) -> Params {
        Params {
            m: self.m as u32,
            n: self.n as u32,
            k: self.k as u32,
            batch: self.batch as u32,
            a_bs: (self.m * self.k) as u32,
            b_bs: if self.b_shared {
                0
            } else {
                (self.n * self.k) as u32
            },
            o_bs: (self.m * self.n) as u32,
            tiles_n: tiles_n as u32,
            tiles_m: tiles_m as u32,
            alpha: self.alpha,
            _pad: [0; 2],
        }
    }

    /// How this device reads b (f32, native f16 or packed f16).
    pub(crate) fn b_elem(&self, rec: &Recorder) -> Result<Elem> {
        elem_of(rec, self.op, "b", self.b)
    }

    /// How this device reads the bias, if any.
    pub(crate) fn bias_elem(&self, rec: &Recorder) -> Result<Option<Elem>> {
        self.bias
            .map(|t| elem_of(rec, self.op, "bias", t))
            .transpose()
    }

    /// Buffers in binding order 1.. (a, b, out, bias).
    pub(crate) fn buffers(&self) -> Vec<&wgpu::Buffer> {
        let mut v = vec![self.a.buffer(), self.b.buffer(), self.out.buffer()];
        if let Some(bias) = self.bias {
            v.push(bias.buffer());
        }
        v
    }
}

fn elem_of(rec: &Recorder, op: &str, operand: &str, t: &Tensor) -> Result<Elem> {
    check_dtype(op, operand, t, &[DType::F32, DType::F16])?;
    Elem::for_dtype(rec.gpu(), t.dtype()).ok_or_else(|| Error::DType {
        op: op.into(),
        operand: operand.into(),
        got: t.dtype().to_string(),
        expected: "f32 or f16".into(),
    })
}

/// Declaration of the optional bias (binding 4) plus `fn bias_value(n) -> f32`.
pub(crate) fn bias_decl(bias: Option<Elem>) -> String {
    match bias {
        Some(e) => {
            declare_input("bias", 4, e, false)
                + "fn bias_value(i: u32) -> f32 { return bias_at(i); }\n"
        }
        None => "fn bias_value(i: u32) -> f32 { return 0.0; }\n".to_string(),
    }
}

/// A grid of `groups` workgroups split to fit the per-dimension limit.
pub(crate) fn grid(rec: &Recorder, op: &str, groups: usize) -> Result<[u32; 3]> {
    let g = u32::try_from(groups).map_err(|_| Error::Limit {
        what: format!("{op}: dispatch of {groups} workgroups"),
        needed: groups as u64,
        limit_name: "u32 workgroup count",
        limit: u32::MAX as u64,
    })?;
    Ok(rec.gpu().grid(g))
}
