//! Concatenation along the last dim (`shaders/concat.wgsl`): `out [R, DA + DB] = [a; b]` for
//! `a [R, DA]`, `b [R, DB]`, all f32 (a decoder's `[emb; context]` input, `[context; h]`).

use crate::error::{Error, Result};
use crate::gpu::spec::{Bind, Bindings, UniformParams};
use crate::gpu::{compose, Recorder};
use crate::kernels::{check_dtype, grid_1d};
use crate::tensor::{DType, Tensor};

const SRC: &str = include_str!("../../shaders/concat.wgsl");
const WG: u32 = 256;

crate::wgsl_params! {
    struct Params {
        n: u32,
        da: u32,
        db: u32,
        _pad: u32,
    }
}

crate::wgsl_bindings! {
    /// a `[N, Da]`, b `[N, Db]`, out `[N, Da + Db]`, all f32.
    struct ConcatBindings { a, b, out }
}

/// Records `out = cat([a, b], -1)` for `a [R, DA]`, `b [R, DB]`, `out [R, DA + DB]` (f32).
pub fn record_concat(rec: &mut Recorder, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    const OP: &str = "concat";
    for (n, t) in [("a", a), ("b", b), ("out", out)] {
        check_dtype(OP, n, t, &[DType::F32])?;
    }
    let (&[r, da], &[rb, db]) = (a.shape(), b.shape()) else {
        return Err(Error::shape(
            OP,
            format!("a {:?} and b {:?} must be 2-D", a.shape(), b.shape()),
        ));
    };
    if rb != r || out.shape() != [r, da + db] {
        return Err(Error::shape(
            OP,
            format!(
                "a {:?}, b {:?}, out {:?}: expected [R, DA], [R, DB], [R, DA + DB]",
                a.shape(),
                b.shape(),
                out.shape()
            ),
        ));
    }
    let n = out.numel();
    if n == 0 {
        return Ok(());
    }
    let gpu = rec.gpu().clone();
    let binds = ConcatBindings {
        a: Bind::read(a, "f32"),
        b: Bind::read(b, "f32"),
        out: Bind::read_write(out, "f32"),
    };
    let pipeline = gpu.pipeline(OP, &(), || {
        compose(
            SRC,
            false,
            &[("WG", WG)],
            &[vec![Params::wgsl()], binds.wgsl()].concat(),
        )
    })?;
    let params = Params {
        n: n as u32,
        da: da as u32,
        db: db as u32,
        _pad: 0,
    };
    rec.push(gpu.dispatch(
        OP,
        &pipeline,
        bytemuck::bytes_of(&params),
        &binds.buffers(),
        grid_1d(&gpu, n, WG)?,
    )?);
    Ok(())
}
