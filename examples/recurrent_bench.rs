//! Runs the recurrent benchmark:
//! `cargo run --release --example recurrent_bench [-- H B T lstm|gru f16|f32 REPS [VARIANTS]]`
//! (no arguments: every default shape; VARIANTS: comma-separated subset of
//! persistent,per-step,unfused, default all).
use heedful::bench::recurrent::{default_shapes, report, run_variants, Shape, VARIANTS};
use heedful::ops::CellKind;
use heedful::{DType, Gpu};

fn main() -> heedful::Result<()> {
    let gpu = Gpu::shared()?;
    let a: Vec<String> = std::env::args().skip(1).collect();
    let reps = a.get(5).and_then(|s| s.parse().ok()).unwrap_or(3);
    let shapes = if a.len() >= 3 {
        vec![Shape {
            hidden: a[0].parse().unwrap_or(128),
            batch: a[1].parse().unwrap_or(1),
            steps: a[2].parse().unwrap_or(256),
            kind: if a.get(3).map(String::as_str) == Some("gru") {
                CellKind::Gru
            } else {
                CellKind::Lstm
            },
            dtype: if a.get(4).map(String::as_str) == Some("f32") {
                DType::F32
            } else {
                DType::F16
            },
        }]
    } else {
        default_shapes()
    };
    println!(
        "adapter: {} ({:?})",
        gpu.caps().adapter_name,
        gpu.caps().backend
    );
    let variants: Vec<&str> = match a.get(6) {
        Some(v) => v.split(',').collect(),
        None => VARIANTS.to_vec(),
    };
    print!("{}", report(&run_variants(&gpu, &shapes, reps, &variants)?));
    Ok(())
}
