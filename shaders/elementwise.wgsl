// Elementwise ops over flat f32 arrays: activations (unary) and add/mul with broadcasting of `b`
// over the leading dims (b's element count divides a's; b repeats every `n_b` elements).
//
// Generated prologue (src/kernels/elementwise.rs: `Params`, `ElementwiseBindings`):
//   p                 uniform { n, n_b, op }
//   a:   [N]    f32      binding 1
//   out: [N]    f32      binding 2
//   b:   [N_b]  f32|f16  binding 3, read with b_at (unary ops bind a again)
//
// Grid: 1-D over N in workgroups of WG, split into (x, y) when N/WG exceeds the per-dim limit.

const OP_RELU: u32 = 0u;
const OP_TANH: u32 = 1u;
const OP_SIGMOID: u32 = 2u;
const OP_SILU: u32 = 3u;
const OP_GELU: u32 = 4u;
const OP_GELU_TANH: u32 = 5u;
const OP_ADD: u32 = 16u;
const OP_MUL: u32 = 17u;

// Abramowitz-Stegun 7.1.26 is too coarse (1.5e-7 abs in erf, but relative error near 0 matters for
// gelu's tails); use the erfc continued-fraction-free rational approximation from W. J. Cody via
// erf(x) = 1 - erfc(x), which is accurate to ~1e-7 in f32 across the range.
fn erf_f32(x: f32) -> f32 {
    let ax = abs(x);
    if (ax < 0.5) {
        // Taylor-like odd polynomial, accurate for small |x|.
        let x2 = x * x;
        return x * (1.1283791670955126 + x2 * (-0.37612638903183754 + x2 * (0.11283791670955126
            + x2 * (-0.026866170645131252 + x2 * (0.005223977625442188 + x2 * -0.0008548327023450852)))));
    }
    // Numerical Recipes erfc (Chebyshev), fractional error < 1.2e-7.
    let t = 1.0 / (1.0 + 0.5 * ax);
    let y = t * exp(-ax * ax - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
        + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
        + t * (-0.82215223 + t * 0.17087277)))))))));
    return sign(x) * (1.0 - y);
}

fn sigmoid(x: f32) -> f32 {
    // Split by sign so exp never overflows.
    if (x >= 0.0) {
        return 1.0 / (1.0 + exp(-x));
    }
    let e = exp(x);
    return e / (1.0 + e);
}

fn tanh_safe(x: f32) -> f32 {
    // WGSL tanh may produce NaN for large |x| on some drivers; clamp where tanh is +-1 in f32.
    return tanh(clamp(x, -15.0, 15.0));
}

fn unary(op: u32, x: f32) -> f32 {
    switch op {
        case 0u: { return max(x, 0.0); }
        case 1u: { return tanh_safe(x); }
        case 2u: { return sigmoid(x); }
        case 3u: { return x * sigmoid(x); }
        case 4u: { return 0.5 * x * (1.0 + erf_f32(x * 0.7071067811865476)); }
        case 5u: {
            let inner = 0.7978845608028654 * (x + 0.044715 * x * x * x);
            return 0.5 * x * (1.0 + tanh_safe(inner));
        }
        default: { return x; }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= p.n) {
        return;
    }
    let x = a[i];
    if (p.op < 16u) {
        out[i] = unary(p.op, x);
    } else {
        let y = b_at(i % p.n_b);
        out[i] = select(x * y, x + y, p.op == OP_ADD);
    }
}
