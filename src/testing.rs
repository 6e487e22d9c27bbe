//! Test helpers shared by the kernel units' tests (`src/kernels/*/tests.rs`) and the integration
//! tests (`tests/`): GPUs for both f16 paths, deterministic random data, and a comparison that
//! panics with max abs/rel error and the first mismatches. Not part of the embedding API.
#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::sync::OnceLock;

use crate::compare::compare;
use crate::kernels::softmax::RowSchedule;
use crate::{Gpu, GpuOptions};

/// The default GPU (native f16 where the device has SHADER_F16).
pub fn gpu() -> Gpu {
    Gpu::shared().expect("a GPU adapter (install Mesa lavapipe, see README)")
}

/// A second device that reads f16 through packed u32 + unpack2x16float.
pub fn gpu_packed() -> Gpu {
    static G: OnceLock<Gpu> = OnceLock::new();
    G.get_or_init(|| {
        let mut o = GpuOptions::from_env();
        o.packed_f16 = true;
        Gpu::new(&o).expect("GPU")
    })
    .clone()
}

/// Both f16 paths, for tests that cover each.
pub fn gpus() -> Vec<(&'static str, Gpu)> {
    vec![("native-f16", gpu()), ("packed-f16", gpu_packed())]
}

/// A small deterministic generator (xorshift64*), so tests need no rand crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Rounds through f16, as weights held in f16 are.
pub fn f16_round(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
}

/// Panics with the comparison's report when `got` is not within tolerance of `want`.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f64, rtol: f64) {
    let c = compare(got, want, atol, rtol);
    assert!(c.passed(), "{what}: {c}");
}

/// Every schedule a row-wise kernel (softmax, layer norm) has, plus the automatic choice.
pub const ROW_SCHEDULES: [RowSchedule; 4] = [
    RowSchedule::Auto,
    RowSchedule::ThreadPerRow { wg: 16 },
    RowSchedule::WorkgroupPerRow { wg: 64 },
    RowSchedule::WorkgroupPerRow { wg: 256 },
];
