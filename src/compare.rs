//! Element-by-element comparison with the tolerance rule `|got - want| <= atol + rtol * |want|`.
//!
//! Used by the tests and by the conformance runner; a failed comparison prints the max abs and rel
//! errors and the first mismatching indices.

use std::fmt;

/// The outcome of comparing two arrays.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// Largest `|got - want|`.
    pub max_abs: f64,
    /// Largest `|got - want| / |want|` over elements with `want != 0`.
    pub max_rel: f64,
    /// Number of elements outside tolerance (NaN where a finite value was wanted counts).
    pub bad: usize,
    /// The first few mismatches: (flat index, got, want).
    pub first_bad: Vec<(usize, f32, f32)>,
    /// Set when the lengths differ.
    pub len_mismatch: Option<(usize, usize)>,
}

impl Comparison {
    /// True when every element is within tolerance and the lengths agree.
    pub fn passed(&self) -> bool {
        self.bad == 0 && self.len_mismatch.is_none()
    }
}

/// Compares `got` with `want` under `abs(got - want) <= atol + rtol * abs(want)`.
///
/// Infinities must match exactly; NaN matches only NaN.
pub fn compare(got: &[f32], want: &[f32], atol: f64, rtol: f64) -> Comparison {
    let mut c = Comparison {
        max_abs: 0.0,
        max_rel: 0.0,
        bad: 0,
        first_bad: Vec::new(),
        len_mismatch: (got.len() != want.len()).then_some((got.len(), want.len())),
    };
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g64, w64) = (g as f64, w as f64);
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            let d = (g64 - w64).abs();
            if d.is_finite() {
                c.max_abs = c.max_abs.max(d);
                if w != 0.0 {
                    c.max_rel = c.max_rel.max(d / w64.abs());
                }
            } else {
                c.max_abs = f64::INFINITY;
            }
            d <= atol + rtol * w64.abs()
        };
        if !ok {
            c.bad += 1;
            if c.first_bad.len() < 8 {
                c.first_bad.push((i, g, w));
            }
        }
    }
    c
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((g, w)) = self.len_mismatch {
            write!(f, "length {g} != expected {w}; ")?;
        }
        write!(
            f,
            "max abs {:.3e}, max rel {:.3e}",
            self.max_abs, self.max_rel
        )?;
        if self.bad > 0 {
            write!(f, ", {} outside tolerance; first at", self.bad)?;
            for (i, g, w) in &self.first_bad {
                write!(f, " [{i}] got {g} want {w};")?;
            }
        }
        Ok(())
    }
}
