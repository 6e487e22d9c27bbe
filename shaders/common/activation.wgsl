// Activation functions shared by the elementwise kernel and the matmul epilogue: `unary(op, x)`
// with op 0 relu, 1 tanh, 2 sigmoid, 3 silu, 4 gelu (erf), 5 gelu (tanh approximation), anything
// else the identity (the codes of `Activation` in src/kernels/elementwise.rs).

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

