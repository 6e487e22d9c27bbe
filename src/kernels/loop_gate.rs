//! The loop gate (`shaders/loop_gate.wgsl`): before each step of a gated loop, copies the step's
//! dispatch grids `full [D, 3]` u32 into `live [D, 3]` while the stop rule's status flags are not
//! all set, and zeroes them once they are, so indirect dispatches reading `live` do no work after
//! the loop stopped on the GPU. The runtime records it ([`crate::graph::LoopBuilder::gate_steps`]);
//! [`reference`](fn@reference) is its CPU oracle.

use crate::error::{Error, Result};
use crate::gpu::spec::{Bind, Bindings, UniformParams};
use crate::gpu::{compose, Recorder};
use crate::kernels::check_dtype;
use crate::tensor::{DType, Tensor};

const SRC: &str = include_str!("../../shaders/loop_gate.wgsl");
const OP: &str = "loop_gate";
/// Invocations of the one workgroup.
const WG: u32 = 64;

crate::wgsl_params! {
    /// Row i's flag is `status[i * stride + word]`; `n` words of grids.
    struct Params {
        stride: u32,
        word: u32,
        rows: u32,
        n: u32,
    }
}

crate::wgsl_bindings! {
    /// status `[..]` u32, full `[D, 3]` u32, live `[D, 3]` u32.
    struct LoopGateBindings { status, full, live }
}

/// Where the stop flags are: row `i`'s flag is word `i * stride + word` of the status tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flags {
    /// Words per row.
    pub stride: usize,
    /// The flag's word in a row.
    pub word: usize,
    /// Rows checked (all must be set).
    pub rows: usize,
}

/// Records the gate: `live = full` unless every flag of `status` is non-zero, else `live = 0`.
pub fn record_loop_gate(
    rec: &mut Recorder,
    status: &Tensor,
    flags: Flags,
    full: &Tensor,
    live: &Tensor,
) -> Result<()> {
    check_dtype(OP, "status", status, &[DType::U32])?;
    check_dtype(OP, "full", full, &[DType::U32])?;
    check_dtype(OP, "live", live, &[DType::U32])?;
    let last = flags
        .rows
        .checked_sub(1)
        .and_then(|r| r.checked_mul(flags.stride))
        .and_then(|x| x.checked_add(flags.word));
    if flags.rows == 0 || last.is_none_or(|l| l >= status.numel()) {
        return Err(Error::shape(
            OP,
            format!(
                "flags {flags:?} outside status {:?} ({} words)",
                status.shape(),
                status.numel()
            ),
        ));
    }
    if full.shape() != live.shape() || full.shape().len() != 2 || full.shape()[1] != 3 {
        return Err(Error::shape(
            OP,
            format!(
                "full {:?} and live {:?} must both be [D, 3]",
                full.shape(),
                live.shape()
            ),
        ));
    }
    let fits = |x: usize| u32::try_from(x).map_err(|_| Error::shape(OP, "sizes must fit u32"));
    let params = Params {
        stride: fits(flags.stride)?,
        word: fits(flags.word)?,
        rows: fits(flags.rows)?,
        n: fits(full.numel())?,
    };
    let binds = LoopGateBindings {
        status: Bind::read(status, "u32"),
        full: Bind::read(full, "u32"),
        live: Bind::read_write(live, "u32"),
    };
    let gpu = rec.gpu().clone();
    let pipe = gpu.pipeline(OP, &(), || {
        compose(
            SRC,
            false,
            &[("WG", WG)],
            &[vec![Params::wgsl()], binds.wgsl()].concat(),
        )
    })?;
    rec.push(gpu.dispatch(
        OP,
        &pipe,
        bytemuck::bytes_of(&params),
        &binds.buffers(),
        [1, 1, 1],
    )?);
    Ok(())
}

/// The CPU oracle: `full` when some flag is 0, else zeros.
pub fn reference(status: &[u32], flags: Flags, full: &[u32]) -> Vec<u32> {
    let done = (0..flags.rows).all(|i| status[i * flags.stride + flags.word] != 0);
    full.iter().map(|&g| if done { 0 } else { g }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::gpu;

    /// The gate against its reference: flags none, some and all set, strided rows, one row, a
    /// grid list longer than the workgroup (several words per invocation).
    #[test]
    fn gate_passes_grids_until_every_flag_is_set() {
        let gpu = gpu();
        for (stride, word, rows, dispatches) in [(1, 0, 1, 1), (3, 2, 5, 30), (1, 4, 40, 7)] {
            let flags = Flags { stride, word, rows };
            let len = rows * stride + word;
            let full_v: Vec<u32> = (0..dispatches * 3).map(|i| 1 + i as u32 % 5).collect();
            let full = Tensor::from_u32(&gpu, &full_v, &[dispatches, 3]).unwrap();
            let live = Tensor::indirect_args(&gpu, dispatches).unwrap();
            for set in [0, rows / 2, rows] {
                let mut status_v = vec![0u32; len];
                for i in 0..set {
                    status_v[i * stride + word] = 7;
                }
                let status = Tensor::from_u32(&gpu, &status_v, &[len]).unwrap();
                let mut rec = Recorder::new(&gpu);
                record_loop_gate(&mut rec, &status, flags, &full, &live).unwrap();
                rec.submit().unwrap();
                let got: Vec<u32> = live
                    .to_vec_i64(&gpu)
                    .unwrap()
                    .into_iter()
                    .map(|g| g as u32)
                    .collect();
                assert_eq!(
                    got,
                    reference(&status_v, flags, &full_v),
                    "{flags:?} set {set}"
                );
                assert_eq!(got.iter().all(|&g| g == 0), set == rows);
            }
        }
    }

    #[test]
    fn flags_outside_the_status_are_refused() {
        let gpu = gpu();
        let status = Tensor::from_u32(&gpu, &[0; 4], &[4]).unwrap();
        let full = Tensor::from_u32(&gpu, &[1; 3], &[1, 3]).unwrap();
        let live = Tensor::indirect_args(&gpu, 1).unwrap();
        let mut rec = Recorder::new(&gpu);
        for flags in [
            Flags {
                stride: 2,
                word: 1,
                rows: 3,
            },
            Flags {
                stride: 1,
                word: 0,
                rows: 0,
            },
        ] {
            let err = record_loop_gate(&mut rec, &status, flags, &full, &live).unwrap_err();
            assert!(err.to_string().contains("loop_gate"), "{err}");
        }
    }
}
