//! Reference activations and broadcast add/mul.

use crate::ops::Activation;

/// erf via its Maclaurin series for small |x| and a continued fraction of erfc for large |x|, in f64.
pub fn erf(x: f64) -> f64 {
    let ax = x.abs();
    if ax < 2.5 {
        // erf(x) = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1))
        let mut term = x;
        let mut sum = x;
        let x2 = x * x;
        for n in 1..200 {
            term *= -x2 / n as f64;
            let add = term / (2 * n + 1) as f64;
            sum += add;
            if add.abs() < 1e-17 * sum.abs() {
                break;
            }
        }
        sum * std::f64::consts::FRAC_2_SQRT_PI
    } else {
        // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...)))) (Lentz-free backward form)
        let mut f = 0.0;
        for k in (1..60).rev() {
            f = (k as f64 / 2.0) / (ax + f);
        }
        let erfc = (-ax * ax).exp() / std::f64::consts::PI.sqrt() / (ax + f);
        (1.0 - erfc).copysign(x)
    }
}

/// `f(x)` in f64.
pub fn activation(x: f64, f: Activation) -> f64 {
    let sigmoid = |v: f64| 1.0 / (1.0 + (-v).exp());
    match f {
        Activation::Relu => x.max(0.0),
        Activation::Tanh => x.tanh(),
        Activation::Sigmoid => sigmoid(x),
        Activation::Silu => x * sigmoid(x),
        Activation::Gelu => 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
        Activation::GeluTanh => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
        }
    }
}

/// Applies `f` to every element.
pub fn activation_all(x: &[f32], f: Activation) -> Vec<f32> {
    x.iter().map(|&v| activation(v as f64, f) as f32).collect()
}

/// `a + b` with b repeating over a's leading dims (b.len() divides a.len()).
pub fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter()
        .enumerate()
        .map(|(i, &x)| (x as f64 + b[i % b.len()] as f64) as f32)
        .collect()
}

/// `a * b` with b repeating over a's leading dims.
pub fn mul(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter()
        .enumerate()
        .map(|(i, &x)| (x as f64 * b[i % b.len()] as f64) as f32)
        .collect()
}
