//! The GPU context: its mapped readback ([`heedful::Gpu::read_mapped`], shared by the tensor
//! readback, the timer, the graph profiler and the seq2seq decoder) and its binding-size check.

mod common;
use common::gpu;
use heedful::gpu::Recorder;
use heedful::{DType, Tensor};

#[test]
fn read_mapped_returns_the_copied_bytes_and_refuses_overlong_reads() {
    let gpu = gpu();
    let src = Tensor::from_u32(&gpu, &[7, 8, 9, 10], &[4]).expect("upload");
    let staging = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("test readback"),
        size: 16,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut rec = Recorder::new(&gpu);
    rec.copy(src.buffer(), 0, &staging, 0, 16);
    rec.submit().expect("submit");
    let bytes = gpu.read_mapped(&staging, 12, "test read").expect("read");
    assert_eq!(bytemuck::cast_slice::<u8, u32>(&bytes), &[7, 8, 9]);
    // Too many bytes: an error naming the caller's context and both sizes, nothing mapped.
    let e = gpu
        .read_mapped(&staging, 17, "test read")
        .expect_err("17 of 16 bytes");
    let msg = e.to_string();
    assert!(
        msg.contains("test read") && msg.contains("17") && msg.contains("16"),
        "{msg}"
    );
    // The buffer was left unmapped both times: it can be written and read again.
    let zero = Tensor::zeros(&gpu, &[4], DType::U32).expect("zeros");
    let mut rec = Recorder::new(&gpu);
    rec.copy(zero.buffer(), 0, &staging, 0, 16);
    rec.submit().expect("submit");
    assert_eq!(
        gpu.read_mapped(&staging, 16, "test read").expect("read"),
        vec![0u8; 16]
    );
}

#[test]
fn a_buffer_over_the_storage_binding_limit_is_an_error_naming_op_and_binding() {
    let gpu = gpu();
    let caps = gpu.caps();
    // One f32 more than a storage binding may hold, where the device can allocate it.
    let n = (caps.max_storage_binding / 4 + 1) as usize;
    if (n * 4) as u64 > caps.max_buffer_size {
        eprintln!("skipped: max_buffer_size does not exceed max_storage_buffer_binding_size");
        return;
    }
    let x = Tensor::zeros(&gpu, &[n], DType::F32).expect("allocate");
    let e = heedful::ops::activation(&gpu, &x, heedful::ops::Activation::Gelu)
        .expect_err("too large to bind");
    let msg = e.to_string();
    assert!(
        msg.starts_with("elementwise: the buffer at storage binding 1: needs ")
            && msg.contains(&format!(
                "max_storage_buffer_binding_size) is {}",
                caps.max_storage_binding
            )),
        "{msg}"
    );
}

/// `HEEDFUL_PROFILE`'s mode: each dispatch timed in its own pass, results unchanged, per-kernel
/// counts right; off by default.
#[test]
fn the_dispatch_profile_times_every_dispatch_and_leaves_results_unchanged() {
    use heedful::kernels::elementwise::{record_binary, Binary};
    let plain = gpu();
    assert!(plain.dispatch_profile().is_none(), "off unless asked for");
    let options = heedful::GpuOptions {
        profile_dispatches: true,
        ..heedful::GpuOptions::from_env()
    };
    let gpu = heedful::Gpu::new(&options).expect("gpu");
    let Some(profile) = gpu.dispatch_profile() else {
        assert!(!gpu.caps().timestamps, "timestamps present but no profile");
        eprintln!("skipped: the adapter has no timestamp queries");
        return;
    };
    let a: Vec<f32> = (0..1000).map(|i| i as f32).collect();
    let b: Vec<f32> = (0..1000).map(|i| 0.5 * i as f32).collect();
    let ta = Tensor::from_f32(&gpu, &a, &[1000]).expect("a");
    let tb = Tensor::from_f32(&gpu, &b, &[1000]).expect("b");
    let sum = Tensor::zeros(&gpu, &[1000], DType::F32).expect("sum");
    let prod = Tensor::zeros(&gpu, &[1000], DType::F32).expect("prod");
    let mut rec = Recorder::new(&gpu);
    record_binary(&mut rec, &ta, &tb, &sum, Binary::Add).expect("add");
    record_binary(&mut rec, &sum, &tb, &prod, Binary::Mul).expect("mul");
    rec.submit().expect("submit");
    let got = prod.to_vec_f32(&gpu).expect("read");
    let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| (x + y) * y).collect();
    assert_eq!(got, want);
    let kernels = profile.kernels();
    let dispatches: u64 = kernels.iter().map(|(_, k)| k.dispatches).sum();
    assert_eq!(dispatches, 2, "{kernels:?}");
    assert!(
        kernels
            .iter()
            .all(|(name, k)| name.starts_with("elementwise ") && k.gpu_ms >= 0.0),
        "{kernels:?}"
    );
    let report = profile.report();
    assert!(
        report.contains("elementwise") && report.contains("submissions"),
        "{report}"
    );
}
