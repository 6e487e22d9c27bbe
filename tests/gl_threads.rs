//! Several threads sharing one GL device (wgpu's GL back end, Mesa llvmpipe here).
//!
//! wgpu-hal's GL device has one GL context behind a lock that panics after 6 s ("Could not lock
//! adapter context. This is most-likely a deadlock."). Before heedful serialized its calls into a
//! GL device (`gpu::serial`), a thread compiling a kernel held that context for as long as
//! llvmpipe compiled, and another thread's buffer creation or drop panicked (the second panic, in
//! `destroy_buffer`, aborted the test binary). This test compiles different kernels on several
//! threads at once while other threads allocate, upload, read back and drop, and checks every
//! result against the CPU reference.
//!
//! Skipped with a note where the machine has no GL adapter, unless `HEEDFUL_REQUIRE_GL=1` (CI
//! sets it), which makes a missing adapter a failure.

mod common;
use common::*;
use heedful::kernels::matmul::MatmulKernel;
use heedful::{ops, reference, DType, Error, Gpu, GpuOptions, Tensor};

fn gl_gpu() -> Option<Gpu> {
    // Every compile is a real one, as on a fresh machine: with Mesa's on-disk shader cache warm,
    // compiles return at once and the threads never contend for long.
    std::env::set_var("MESA_SHADER_CACHE_DISABLE", "true");
    let options = GpuOptions {
        backends: Some("gl".into()),
        ..GpuOptions::default()
    };
    match Gpu::new(&options) {
        Ok(gpu) => Some(gpu),
        Err(e @ Error::NoAdapterForced { .. })
            if std::env::var("HEEDFUL_REQUIRE_GL").as_deref() != Ok("1") =>
        {
            eprintln!("gl_threads: skipped, no GL adapter ({e})");
            None
        }
        Err(e) => panic!("creating a GL device: {e}"),
    }
}

/// One thread's work: kernels of its own (so compiles overlap), checked against the reference.
fn work(gpu: &Gpu, which: usize) {
    let mut rng = Rng::new(100 + which as u64);
    match which {
        // Three matmul kernels: each compiles its own pipelines.
        0..=2 => {
            let kernel = [
                MatmulKernel::Blocked,
                MatmulKernel::Tiled,
                MatmulKernel::BlockedTile { tm: 3, tn: 5 },
            ][which];
            let (m, k, n) = (37, 70, 45);
            let a = rng.vec(m * k, -1.0, 1.0);
            let b = rng.vec(k * n, -1.0, 1.0);
            let ta = Tensor::from_f32(gpu, &a, &[m, k]).unwrap();
            let tb = Tensor::from_f32(gpu, &b, &[k, n]).unwrap();
            let got = ops::matmul_with(gpu, &ta, &tb, kernel).unwrap();
            let want = reference::matmul::matmul(&a, &b, 1, m, k, n, false);
            assert_close(
                &format!("matmul {kernel:?} on GL"),
                &got.to_vec_f32(gpu).unwrap(),
                &want,
                1e-4,
                1e-4,
            );
        }
        3 => {
            let (rows, d) = (9, 97);
            let x = rng.vec(rows * d, -3.0, 3.0);
            let w = rng.vec(d, 0.5, 1.5);
            let b = rng.vec(d, -0.5, 0.5);
            let tx = Tensor::from_f32(gpu, &x, &[rows, d]).unwrap();
            let tw = Tensor::from_f32(gpu, &w, &[d]).unwrap();
            let tb = Tensor::from_f32(gpu, &b, &[d]).unwrap();
            let got = ops::layer_norm(gpu, &tx, &tw, &tb, 1e-5).unwrap();
            let want = heedful::kernels::layer_norm::reference::layer_norm(&x, &w, &b, 1e-5);
            assert_close(
                "layer_norm on GL",
                &got.to_vec_f32(gpu).unwrap(),
                &want,
                1e-4,
                1e-4,
            );
        }
        4 => {
            let (rows, n) = (5, 300);
            let x = rng.vec(rows * n, -8.0, 8.0);
            let tx = Tensor::from_f32(gpu, &x, &[rows, n]).unwrap();
            let got = ops::softmax(gpu, &tx).unwrap();
            assert_close(
                "softmax on GL",
                &got.to_vec_f32(gpu).unwrap(),
                &reference::softmax::softmax(&x, n),
                1e-5,
                1e-4,
            );
        }
        // One long submission: llvmpipe runs a GL dispatch on the submitting thread, holding
        // wgpu's GL context, so a submission longer than its 6-s lock time-out starved every
        // other thread. The chain of matmuls doubles until one run takes over 8 s (or 1024
        // dispatches): the length this needs depends on the machine, not what is checked.
        6 => {
            let n = 256;
            let a = rng.vec(n * n, -1.0, 1.0);
            let ta = Tensor::from_f32(gpu, &a, &[n, n]).unwrap();
            let mut prev = ta.clone();
            let mut outs = Vec::new();
            let mut rec = heedful::gpu::Recorder::new(gpu);
            let mut dispatches = 0;
            let mut count = 8;
            loop {
                while dispatches < count {
                    let out = Tensor::zeros(gpu, &[n, n], DType::F32).unwrap();
                    heedful::kernels::matmul::record_matmul_with(
                        &mut rec,
                        &prev,
                        &ta,
                        &out,
                        MatmulKernel::Blocked,
                    )
                    .unwrap();
                    outs.push(out.clone());
                    prev = out;
                    dispatches += 1;
                }
                let t0 = std::time::Instant::now();
                let idx = rec.submit().unwrap();
                gpu.wait_for(&idx).unwrap();
                if t0.elapsed().as_secs_f64() > 8.0 || count >= 1024 {
                    break;
                }
                count *= 2;
            }
            // The first product against the reference (later ones grow without bound).
            let want = reference::matmul::matmul(&a, &a, 1, n, n, n, false);
            assert_close(
                "first matmul of the long submission on GL",
                &outs[0].to_vec_f32(gpu).unwrap(),
                &want,
                1e-3,
                1e-4,
            );
        }
        // Allocation churn: buffers created, written, read back and dropped while others compile
        // and submit (the calls that used to time out on the GL context lock).
        _ => {
            for i in 0..200 {
                let n = 1 + rng.below(5000);
                let v = rng.vec(n, -1.0, 1.0);
                let dtype = if i % 2 == 0 { DType::F32 } else { DType::F16 };
                let t = Tensor::from_f32_as(gpu, &v, &[n], dtype).unwrap();
                let want = if dtype == DType::F16 {
                    f16_round(&v)
                } else {
                    v
                };
                assert_eq!(
                    t.to_vec_f32(gpu).unwrap(),
                    want,
                    "round trip {i} of {n} {dtype}"
                );
            }
        }
    }
}

#[test]
fn threads_sharing_a_gl_device_compile_run_and_drop_concurrently() {
    let Some(gpu) = gl_gpu() else { return };
    assert_eq!(gpu.caps().backend, wgpu::Backend::Gl);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|which| {
                let gpu = gpu.clone();
                s.spawn(move || work(&gpu, which))
            })
            .collect();
        for (which, h) in handles.into_iter().enumerate() {
            if let Err(p) = h.join() {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("thread {which} panicked: {msg}");
            }
        }
    });
    gpu.check_errors("after the threads").unwrap();
}
