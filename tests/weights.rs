//! Weight loading on the GPU: uploads of every float dtype held as f16 or f32 (values equal after
//! f16 rounding), chunk boundaries, unaligned data, splitting and refusing tensors over the binding
//! limit, the PyTorch export round trip (a committed fixture made by weights/make_fixtures.py), and
//! `convert` -> load.

mod common;

use std::path::PathBuf;

use half::{bf16, f16};
use heedful::weights::{convert, Hold, UploadOptions, WeightFile, WeightsErrorKind as K};
use heedful::{DType, Error};

/// A safetensors file from (name, dtype, shape, bytes); `pad_to` aligns the header length to
/// `pad_to` bytes (1 leaves the data unaligned).
fn build(tensors: &[(&str, &str, Vec<usize>, Vec<u8>)], meta: &str, pad_to: usize) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        let b = data.len();
        data.extend_from_slice(bytes);
        entries.push(format!(
            "{name:?}:{{\"dtype\":{dtype:?},\"shape\":{shape:?},\"data_offsets\":[{b},{}]}}",
            data.len()
        ));
    }
    if !meta.is_empty() {
        entries.insert(0, format!("\"__metadata__\":{meta}"));
    }
    let mut h = format!("{{{}}}", entries.join(",")).into_bytes();
    while h.len() % pad_to != 0 {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&data);
    out
}

/// `v` with magnitudes above 65280 (the largest BF16 value not above f16's 65504) clamped to
/// it: `values` holds 65504, which BF16 rounds to 65536, outside f16's range, and the upload
/// refuses that (tested in `non_finite_and_f16_overflow_are_refused_on_upload`).
fn bf16_safe(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| x.clamp(-65_280.0, 65_280.0)).collect()
}

fn bytes_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn bytes_f16(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|&x| f16::from_f32(x).to_le_bytes())
        .collect()
}
fn bytes_bf16(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|&x| bf16::from_f32(x).to_le_bytes())
        .collect()
}
fn bytes_f64(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|&x| (x as f64).to_le_bytes()).collect()
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("heedful-wt-{}-{name}", std::process::id()))
}

/// Values spanning f16's range: small, large (65504 overflows nothing), subnormal, negative zero.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut r = common::Rng::new(seed);
    let mut v = r.vec(n, -3.0, 3.0);
    let special = [
        0.0,
        -0.0,
        1e-6,
        -6.1e-5,
        65504.0,
        -1000.5,
        0.333_333_34,
        2.0e-8,
    ];
    for (i, s) in special.iter().enumerate().take(n) {
        v[i * 7 % n] = *s;
    }
    v
}

#[test]
fn every_float_dtype_uploads_as_f16_and_f32() {
    let gpu = common::gpu();
    // 7 * 13 * 11 = 1001 elements: odd, so the f16 tail is half a word.
    let shape = vec![7, 13, 11];
    let v = values(1001, 1);
    let vb = bf16_safe(&v);
    let bf = bf16_round(&vb);
    let cases: Vec<(&str, &str, Vec<u8>, Vec<f32>)> = vec![
        ("f32", "F32", bytes_f32(&v), v.clone()),
        ("f16", "F16", bytes_f16(&v), common::f16_round(&v)),
        ("bf16", "BF16", bytes_bf16(&vb), bf.clone()),
        ("f64", "F64", bytes_f64(&v), v.clone()),
    ];
    let tensors: Vec<_> = cases
        .iter()
        .map(|(n, d, b, _)| (*n, *d, shape.clone(), b.clone()))
        .collect();
    // Header padded to 1 byte: every tensor's data starts unaligned in the mapping.
    for pad in [8, 1] {
        let bytes = build(&tensors, "", pad);
        let path = temp(&format!("dtypes-{pad}.safetensors"));
        std::fs::write(&path, &bytes).unwrap();
        let f = WeightFile::open(&path).unwrap();
        for (name, _, _, exact) in &cases {
            // Small chunks: many chunk boundaries, including the conversion's block boundaries.
            for chunk in [64 << 10, 1 << 30] {
                for hold in [Hold::F16, Hold::F32] {
                    let mut opts = UploadOptions::new(hold);
                    opts.chunk_bytes = chunk;
                    let t = f.upload_with(&gpu, name, &opts).unwrap();
                    assert_eq!(t.shape(), &shape[..]);
                    assert_eq!(t.dtype(), hold.dtype());
                    let got = t.to_vec_f32(&gpu).unwrap();
                    let want = match hold {
                        Hold::F16 => common::f16_round(exact),
                        Hold::F32 => exact.clone(),
                    };
                    let what = format!("{name} as {hold:?}, chunk {chunk}, pad {pad}");
                    assert_bits_eq(&what, &got, &want);
                }
            }
        }
        std::fs::remove_file(&path).unwrap();
    }
}

fn bf16_round(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| bf16::from_f32(x).to_f32()).collect()
}

/// Exact equality (f16 rounding is deterministic: round to nearest even), -0 vs 0 included.
#[track_caller]
fn assert_bits_eq(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let bad: Vec<_> = got
        .iter()
        .zip(want)
        .enumerate()
        .filter(|(_, (g, w))| g.to_bits() != w.to_bits())
        .take(5)
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: first mismatches (index, (got, want)): {bad:?}"
    );
}

#[test]
fn large_tensor_crosses_many_chunks() {
    let gpu = common::gpu();
    // 3 MiB of f32 in 64 KiB chunks: 48 chunks (f16: 24), both waits and the pipelining exercised.
    let n = 3 * 256 * 1024 + 5;
    let v = values(n, 7);
    let bytes = build(&[("big", "F32", vec![n], bytes_f32(&v))], "", 8);
    let f = WeightFile::from_bytes(bytes, "big.safetensors").unwrap();
    let mut opts = UploadOptions::new(Hold::F16);
    opts.chunk_bytes = 64 << 10;
    let t = f.upload_with(&gpu, "big", &opts).unwrap();
    assert_bits_eq(
        "big f16",
        &t.to_vec_f32(&gpu).unwrap(),
        &common::f16_round(&v),
    );
    // Default 32 MiB chunks: one chunk of many conversion blocks.
    for hold in [Hold::F16, Hold::F32] {
        let t = f.upload(&gpu, "big", hold).unwrap();
        let want = match hold {
            Hold::F16 => common::f16_round(&v),
            Hold::F32 => v.clone(),
        };
        assert_bits_eq("big default chunks", &t.to_vec_f32(&gpu).unwrap(), &want);
    }
    // Staging is bounded: a private device counts exactly the tensor and two staging buffers,
    // however many chunks (48 here) go through them.
    let own = heedful::Gpu::new(&heedful::GpuOptions::from_env()).unwrap();
    let count = |g: &heedful::Gpu| {
        g.counters()
            .buffers
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = count(&own);
    let t = f.upload_with(&own, "big", &opts).unwrap();
    assert_eq!(count(&own) - before, 3, "one tensor + two staging buffers");
    assert_bits_eq(
        "big private",
        &t.to_vec_f32(&own).unwrap(),
        &common::f16_round(&v),
    );
    let all = f.upload_all(&gpu, &opts).unwrap();
    assert_eq!(all["big"].numel(), n);
}

#[test]
fn integer_tensors_and_unsupported_dtypes() {
    let gpu = common::gpu();
    let ids: Vec<u8> = [5i64, -2, 1 << 30]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let too_big: Vec<u8> = [1i64 << 40].iter().flat_map(|x| x.to_le_bytes()).collect();
    let i32s: Vec<u8> = [-1i32, 7].iter().flat_map(|x| x.to_le_bytes()).collect();
    let bytes = build(
        &[
            ("ids", "I64", vec![3], ids),
            ("big_ids", "I64", vec![1], too_big),
            ("i32", "I32", vec![2], i32s),
            ("mask", "BOOL", vec![4], vec![1, 0, 1, 1]),
        ],
        "",
        8,
    );
    let f = WeightFile::from_bytes(bytes, "ints.safetensors").unwrap();
    let t = f.upload(&gpu, "ids", Hold::F16).unwrap();
    assert_eq!(t.dtype(), DType::I32);
    assert_eq!(t.to_vec_i64(&gpu).unwrap(), vec![5, -2, 1 << 30]);
    let t = f.upload(&gpu, "i32", Hold::F16).unwrap();
    assert_eq!(t.to_vec_i64(&gpu).unwrap(), vec![-1, 7]);
    let e = f.upload(&gpu, "big_ids", Hold::F16).unwrap_err();
    assert_eq!(e.weights_kind(), Some(K::UnsupportedDtype), "{e}");
    assert!(
        e.to_string().contains("1099511627776") && e.to_string().contains("big_ids"),
        "{e}"
    );
    let e = f.upload(&gpu, "mask", Hold::F16).unwrap_err();
    assert_eq!(e.weights_kind(), Some(K::UnsupportedDtype), "{e}");
    assert!(
        e.to_string().contains("\"mask\"") && e.to_string().contains("BOOL"),
        "{e}"
    );
    let e = f.upload(&gpu, "maks", Hold::F16).unwrap_err();
    assert_eq!(e.weights_kind(), Some(K::MissingTensor), "{e}");
    assert!(e.to_string().contains("did you mean \"mask\""), "{e}");
    gpu.check_errors("after refused uploads").unwrap();
}

#[test]
fn over_the_binding_limit_is_split_or_refused() {
    let gpu = common::gpu();
    let (rows, cols) = (37, 25);
    let v = values(rows * cols, 3);
    let bytes = build(&[("embed", "F32", vec![rows, cols], bytes_f32(&v))], "", 8);
    let f = WeightFile::from_bytes(bytes, "embed.safetensors").unwrap();
    let mut opts = UploadOptions::new(Hold::F16);
    // 10 rows of f16 = 500 bytes: 37 rows need 4 blocks (10, 10, 10, 7).
    opts.max_binding = Some(512);
    let e = f.upload_with(&gpu, "embed", &opts).unwrap_err();
    match &e {
        Error::Limit {
            needed,
            limit,
            what,
            ..
        } => {
            assert_eq!((*needed, *limit), ((rows * cols * 2) as u64, 512));
            assert!(
                what.contains("\"embed\"") && what.contains("embed.safetensors"),
                "{e}"
            );
        }
        other => panic!("expected a limit error, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("1850") && msg.contains("512"),
        "size and limit named: {msg}"
    );
    let parts = f.upload_split(&gpu, "embed", &opts).unwrap();
    let shapes: Vec<_> = parts.iter().map(|t| t.shape().to_vec()).collect();
    assert_eq!(
        shapes,
        vec![
            vec![10, cols],
            vec![10, cols],
            vec![10, cols],
            vec![7, cols]
        ]
    );
    let mut got = Vec::new();
    for p in &parts {
        got.extend(p.to_vec_f32(&gpu).unwrap());
    }
    assert_bits_eq("split", &got, &common::f16_round(&v));
    // A single row over the limit cannot be split.
    opts.max_binding = Some(40);
    let e = f.upload_split(&gpu, "embed", &opts).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Limit {
                needed: 50,
                limit: 40,
                ..
            }
        ),
        "{e}"
    );
    // The device's own limit is what applies by default.
    let dev = gpu.caps().max_storage_binding;
    opts.max_binding = Some(u64::MAX);
    assert_eq!(
        f.upload_split(&gpu, "embed", &opts).unwrap().len(),
        1,
        "fits under {dev}"
    );
}

/// The PyTorch export round trip: weights/make_fixtures.py exported a seeded nn.Module with
/// weights/export.py (fp16) and wrote the exact f32 values next to it; loading gives those values
/// after f16 rounding, and the metadata carries the format, architecture and config.
#[test]
fn pytorch_export_fixture_round_trips() {
    let gpu = common::gpu();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("weights/fixtures");
    let f = WeightFile::open(dir.join("tiny_export_f16.safetensors")).unwrap();
    let want = WeightFile::open(dir.join("tiny_export_expected_f32.safetensors")).unwrap();
    assert_eq!(f.format_version(), Some(heedful::weights::FORMAT_VERSION));
    assert_eq!(f.architecture(), Some("tiny-gru-classifier"));
    let cfg = f.config_json().expect("config");
    let (vocab, hidden) = (
        cfg["vocab"].as_u64().unwrap() as usize,
        cfg["hidden"].as_u64().unwrap() as usize,
    );
    f.expect_shape("embed.weight", &[vocab, hidden]).unwrap();
    f.expect_shape("gru.weight_ih_l0", &[3 * hidden, hidden])
        .unwrap();
    assert_eq!(f.len(), want.len());
    for w in want.tensors() {
        let t = f.tensor(w.name).unwrap();
        assert_eq!(t.dtype, heedful::weights::FileDType::F16, "{}", w.name);
        assert_eq!(t.shape, w.shape, "{}", w.name);
        let exact = w.to_f32_vec().unwrap();
        for hold in [Hold::F16, Hold::F32] {
            let got = f
                .upload(&gpu, w.name, hold)
                .unwrap()
                .to_vec_f32(&gpu)
                .unwrap();
            assert_bits_eq(w.name, &got, &common::f16_round(&exact));
        }
    }
    // The same module exported as fp32 loads to the exact values, or their f16 rounding.
    let f32f = WeightFile::open(dir.join("tiny_export_f32.safetensors")).unwrap();
    for w in want.tensors() {
        let exact = w.to_f32_vec().unwrap();
        let got = f32f
            .upload(&gpu, w.name, Hold::F32)
            .unwrap()
            .to_vec_f32(&gpu)
            .unwrap();
        assert_bits_eq(w.name, &got, &exact);
        let got = f32f
            .upload(&gpu, w.name, Hold::F16)
            .unwrap()
            .to_vec_f32(&gpu)
            .unwrap();
        assert_bits_eq(w.name, &got, &common::f16_round(&exact));
    }
}

#[test]
fn convert_then_load_round_trips() {
    let gpu = common::gpu();
    let v = values(4099, 11);
    let w = bf16_safe(&values(64, 12));
    let ids: Vec<u8> = [3i64, 4].iter().flat_map(|x| x.to_le_bytes()).collect();
    let meta = "{\"heedful.arch\":\"toy\",\"note\":\"kept\"}";
    let src = build(
        &[
            ("a.weight", "F32", vec![4099], bytes_f32(&v)),
            ("b.weight", "BF16", vec![8, 8], bytes_bf16(&w)),
            ("ids", "I64", vec![2], ids.clone()),
        ],
        meta,
        1,
    );
    let (inp, out) = (temp("conv-in.safetensors"), temp("conv-out.safetensors"));
    std::fs::write(&inp, &src).unwrap();
    let stats = convert::convert(&inp, &out, convert::Target::F16, false).unwrap();
    assert_eq!(stats.tensors, 3);
    assert_eq!(stats.converted, 2);
    let f = WeightFile::open(&out).unwrap();
    let names: Vec<_> = f.names().collect();
    assert_eq!(
        names,
        vec!["a.weight", "b.weight", "ids"],
        "names and order kept"
    );
    assert_eq!(f.metadata().get("note").map(String::as_str), Some("kept"));
    assert_eq!(f.architecture(), Some("toy"));
    assert_eq!(
        f.tensor("a.weight").unwrap().dtype,
        heedful::weights::FileDType::F16
    );
    assert_eq!(
        f.tensor("ids").unwrap().data,
        &ids[..],
        "non-float tensors copied as they are"
    );
    let a = f
        .upload(&gpu, "a.weight", Hold::F32)
        .unwrap()
        .to_vec_f32(&gpu)
        .unwrap();
    assert_bits_eq("a", &a, &common::f16_round(&v));
    let b = f
        .upload(&gpu, "b.weight", Hold::F32)
        .unwrap()
        .to_vec_f32(&gpu)
        .unwrap();
    assert_bits_eq("b", &b, &common::f16_round(&bf16_round(&w)));
    // The safetensors crate reads the converted file too.
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("b.weight").unwrap().shape(), &[8, 8]);
    // Converting to the same file is refused; a broken input gives its own error.
    let e = convert::convert(&inp, &inp, convert::Target::F16, false).unwrap_err();
    assert!(e.to_string().contains("same file"), "{e}");
    std::fs::write(&inp, &src[..src.len() - 1]).unwrap();
    let e = convert::convert(&inp, &out, convert::Target::F16, false).unwrap_err();
    assert_eq!(e.weights_kind(), Some(K::Truncated), "{e}");
    let _ = std::fs::remove_file(&inp);
    let _ = std::fs::remove_file(&out);
}

/// Uploads from several threads sharing one device: a staging buffer's map callback may run in
/// another thread's poll, and every upload must still complete with the right bytes.
#[test]
fn concurrent_uploads_on_a_shared_device() {
    let gpu = common::gpu();
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/g2p_lstm_mha.safetensors");
    let file = heedful::weights::WeightFile::open(&path).unwrap();
    let names: Vec<String> = file.names().map(str::to_string).collect();
    let want: Vec<Vec<u8>> = names
        .iter()
        .map(|n| {
            file.upload(&gpu, n, heedful::weights::Hold::F16)
                .unwrap()
                .to_bytes(&gpu)
                .unwrap()
        })
        .collect();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (gpu, path, names, want) = (gpu.clone(), path.clone(), names.clone(), want.clone());
            std::thread::spawn(move || {
                let file = heedful::weights::WeightFile::open(&path).unwrap();
                for _ in 0..5 {
                    for (n, w) in names.iter().zip(&want) {
                        let t = file.upload(&gpu, n, heedful::weights::Hold::F16).unwrap();
                        assert_eq!(&t.to_bytes(&gpu).unwrap(), w, "{n}");
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// NaN, infinities and F32/BF16/F64 values outside f16's range are found by the upload conversion
/// (raw copies included) and refused with the tensor's name and the first bad flat index; a
/// tensor named in `keep_f32` is held in f32 instead, and `allow_non_finite` uploads non-finite
/// values as they are.
#[test]
fn non_finite_and_f16_overflow_are_refused_on_upload() {
    let gpu = common::gpu();
    let n = 40_000; // more than one conversion block, so the index counts across blocks
    let at = 33_000;
    let with = |x: f32| {
        let mut v = bf16_safe(&values(n, 21));
        v[at] = x;
        v
    };
    let mut big = bf16_safe(&values(n, 22));
    big[at] = 70_000.0;
    let bytes = build(
        &[
            ("nan32", "F32", vec![n], bytes_f32(&with(f32::NAN))),
            ("inf16", "F16", vec![n], bytes_f16(&with(f32::INFINITY))),
            (
                "ninf_bf16",
                "BF16",
                vec![n],
                bytes_bf16(&with(f32::NEG_INFINITY)),
            ),
            ("big32", "F32", vec![n], bytes_f32(&big)),
            ("big_bf16", "BF16", vec![200, 200], bytes_bf16(&big)),
            ("big64", "F64", vec![n], bytes_f64(&big)),
            // 65519 still rounds to f16's largest finite value: not an overflow.
            ("edge", "F32", vec![2], bytes_f32(&[65_519.0, -65_504.0])),
        ],
        "",
        8,
    );
    let f = WeightFile::from_bytes(bytes, "bad-values.safetensors").unwrap();
    for (name, hold) in [
        ("nan32", Hold::F16),
        ("nan32", Hold::F32),
        ("inf16", Hold::F16),
        ("inf16", Hold::F32),
        ("ninf_bf16", Hold::F16),
    ] {
        let e = f.upload(&gpu, name, hold).unwrap_err();
        assert_eq!(e.weights_kind(), Some(K::NonFinite), "{name}: {e}");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("{name:?}")) && msg.contains(&format!("index {at}")),
            "{msg}"
        );
    }
    for name in ["big32", "big_bf16", "big64"] {
        let e = f.upload(&gpu, name, Hold::F16).unwrap_err();
        assert_eq!(e.weights_kind(), Some(K::OutOfRange), "{name}: {e}");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("index {at}")) && msg.contains("keep_f32"),
            "{msg}"
        );
        // Held as f32 (for all tensors, or for this one by name), the value is kept.
        let kept = f
            .upload_with(
                &gpu,
                name,
                &UploadOptions::new(Hold::F16).keep_f32([name.to_string()]),
            )
            .unwrap();
        assert_eq!(kept.dtype(), DType::F32);
        let x = kept.to_vec_f32(&gpu).unwrap()[at];
        assert!((x - 70_000.0).abs() < 600.0, "{name}: {x}"); // bf16 rounds 70000 to 70144
        f.upload(&gpu, name, Hold::F32).unwrap();
    }
    // Row blocks of upload_split count the index over the whole tensor.
    let opts = UploadOptions {
        max_binding: Some(200 * 2 * 8),
        ..UploadOptions::new(Hold::F16)
    };
    let e = f.upload_split(&gpu, "big_bf16", &opts).unwrap_err();
    assert!(e.to_string().contains(&format!("index {at}")), "{e}");
    let edge = f.upload(&gpu, "edge", Hold::F16).unwrap();
    assert_eq!(edge.to_vec_f32(&gpu).unwrap(), vec![65_504.0, -65_504.0]);
    // upload_all stops at the first bad tensor, naming it.
    let e = f
        .upload_all(&gpu, &UploadOptions::new(Hold::F16))
        .unwrap_err();
    assert!(e.to_string().contains("\"nan32\""), "{e}");
    let allow = UploadOptions {
        allow_non_finite: true,
        ..UploadOptions::new(Hold::F32)
    };
    let t = f.upload_with(&gpu, "inf16", &allow).unwrap();
    assert_eq!(t.to_vec_f32(&gpu).unwrap()[at], f32::INFINITY);
    gpu.check_errors("after refused uploads").unwrap();
}

/// `convert` refuses the values the upload refuses (unless allowed), and leaves no `.partial`
/// behind when it does.
#[test]
fn convert_refuses_non_finite_and_overflow() {
    let mut big = values(300, 5);
    big[123] = -1.0e6;
    let mut nan = values(16, 6);
    nan[7] = f32::NAN;
    let (inp, out) = (
        temp("convbad-in.safetensors"),
        temp("convbad-out.safetensors"),
    );
    let partial = PathBuf::from(format!("{}.partial", out.display()));
    let run = |src: &[u8], opts: &convert::ConvertOptions| {
        std::fs::write(&inp, src).unwrap();
        let _ = std::fs::remove_file(&out);
        let r = convert::convert_with(&inp, &out, opts);
        assert!(!partial.exists(), "a .partial is left behind");
        r
    };
    let over = build(&[("w", "F32", vec![300], bytes_f32(&big))], "", 8);
    let f16 = convert::ConvertOptions::new(convert::Target::F16);
    let e = run(&over, &f16).unwrap_err();
    assert_eq!(e.weights_kind(), Some(K::OutOfRange), "{e}");
    assert!(
        e.to_string().contains("index 123") && e.to_string().contains("\"w\""),
        "{e}"
    );
    assert!(!out.exists(), "no output on error");
    // The plain entry point refuses too.
    let e = convert::convert(&inp, &out, convert::Target::F16, false).unwrap_err();
    assert_eq!(e.weights_kind(), Some(K::OutOfRange), "{e}");
    // To bf16 the value fits; with allow_overflow it becomes -inf in f16.
    run(&over, &convert::ConvertOptions::new(convert::Target::BF16)).unwrap();
    let allow = convert::ConvertOptions {
        allow_overflow: true,
        ..f16
    };
    run(&over, &allow).unwrap();
    let got = WeightFile::open(&out)
        .unwrap()
        .tensor("w")
        .unwrap()
        .to_f32_vec()
        .unwrap();
    assert_eq!(got[123], f32::NEG_INFINITY);
    let bad = build(&[("n", "F32", vec![16], bytes_f32(&nan))], "", 8);
    for t in [convert::Target::F16, convert::Target::F32] {
        let e = run(&bad, &convert::ConvertOptions::new(t)).unwrap_err();
        assert_eq!(e.weights_kind(), Some(K::NonFinite), "{e}");
        assert!(e.to_string().contains("index 7"), "{e}");
    }
    let allow = convert::ConvertOptions {
        allow_non_finite: true,
        ..f16
    };
    run(&bad, &allow).unwrap();
    let _ = std::fs::remove_file(&inp);
    let _ = std::fs::remove_file(&out);
}

/// `convert` refuses a destination that exists and is not a regular file (a FIFO, a directory,
/// a symlink to a device) without replacing it or leaving a `.partial`.
#[cfg(unix)]
#[test]
fn convert_refuses_special_destinations() {
    use std::os::unix::fs::FileTypeExt;
    let src = build(&[("w", "F32", vec![4], bytes_f32(&values(4, 1)))], "", 8);
    let inp = temp("convdst-in.safetensors");
    std::fs::write(&inp, &src).unwrap();
    let fifo = temp("convdst-fifo");
    let dir = temp("convdst-dir");
    let link = temp("convdst-null-link");
    for p in [&fifo, &link] {
        let _ = std::fs::remove_file(p);
    }
    let _ = std::fs::remove_dir(&dir);
    let ok = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::symlink("/dev/null", &link).unwrap();
    for (p, kind) in [
        (&fifo, "FIFO"),
        (&dir, "directory"),
        (&link, "character device"),
    ] {
        let e = convert::convert(&inp, p, convert::Target::F16, false).unwrap_err();
        assert!(e.to_string().contains(kind), "{}: {e}", p.display());
        assert!(
            !PathBuf::from(format!("{}.partial", p.display())).exists(),
            "{}: .partial left",
            p.display()
        );
    }
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());
    let _ = std::fs::remove_file(&fifo);
    let _ = std::fs::remove_file(&link);
    let _ = std::fs::remove_dir(&dir);
    let _ = std::fs::remove_file(&inp);
}
