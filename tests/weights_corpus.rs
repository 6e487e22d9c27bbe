//! Broken weight files: a corpus generated here, one file per failure kind, each of which must give
//! its own specific error naming the file (and the tensor, where one is at fault) with a hint; and a
//! mutation test that truncates and flips bytes of a valid file thousands of times and never panics.
//! CPU only: no GPU needed.

use std::path::{Path, PathBuf};

use heedful::weights::{WeightFile, WeightsErrorKind as K};
use heedful::Error;

/// A safetensors file built by hand, so tests control every byte of the layout.
fn build(header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.as_bytes().to_vec();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out
}

/// A valid file: tensors packed in order, given as (name, dtype, shape, bytes).
fn valid(tensors: &[(&str, &str, &[usize], Vec<u8>)], meta: &[(&str, &str)]) -> Vec<u8> {
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
        let m: Vec<String> = meta.iter().map(|(k, v)| format!("{k:?}:{v:?}")).collect();
        entries.insert(0, format!("\"__metadata__\":{{{}}}", m.join(",")));
    }
    build(&format!("{{{}}}", entries.join(",")), &data)
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn sample() -> Vec<u8> {
    valid(
        &[
            (
                "encoder.layer.0.weight",
                "F32",
                &[2, 3],
                f32_bytes(&[1., 2., 3., 4., 5., 6.]),
            ),
            (
                "encoder.layer.0.bias",
                "F32",
                &[3],
                f32_bytes(&[0.5, -0.5, 2.]),
            ),
            (
                "decoder.embed",
                "F16",
                &[2, 2],
                vec![0, 60, 0, 64, 0, 66, 0, 188],
            ),
            (
                "decoder.ids",
                "I64",
                &[2],
                [7i64, -3].iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
        ],
        &[
            ("heedful.format", "1"),
            ("heedful.arch", "toy"),
            ("heedful.config", "{\"hidden\": 3}"),
        ],
    )
}

struct Dir(PathBuf);
impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("heedful-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temp dir");
        Dir(d)
    }
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).expect("write corpus file");
        p
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Checks that `r` is the weights error `kind`, naming `path` and `tensor`, with the message
/// containing `needle`; returns the message.
#[track_caller]
fn expect<T: std::fmt::Debug>(
    r: heedful::Result<T>,
    path: &Path,
    kind: K,
    tensor: Option<&str>,
    needle: &str,
) -> String {
    let e = r.expect_err("a broken file must give an error");
    let msg = e.to_string();
    match &e {
        Error::Weights {
            path: p,
            tensor: t,
            kind: k,
            hint,
            ..
        } => {
            assert_eq!(*k, kind, "wrong kind for {}: {msg}", path.display());
            assert_eq!(p, path, "error names the wrong file: {msg}");
            assert_eq!(t.as_deref(), tensor, "error names the wrong tensor: {msg}");
            assert!(!hint.is_empty(), "no hint: {msg}");
        }
        other => panic!("expected a weights error of kind {kind:?}, got {other:?}"),
    }
    assert!(
        msg.contains(&path.display().to_string()),
        "file not named: {msg}"
    );
    assert!(msg.contains("hint:"), "no hint shown: {msg}");
    if let Some(t) = tensor {
        assert!(msg.contains(t), "tensor not named: {msg}");
    }
    assert!(msg.contains(needle), "{needle:?} not in: {msg}");
    msg
}

#[test]
fn valid_sample_opens_and_reads() {
    let dir = Dir::new("valid");
    let p = dir.write("ok.safetensors", &sample());
    let f = WeightFile::open(&p).unwrap();
    assert_eq!(f.len(), 4);
    assert_eq!(f.format_version(), Some(1));
    assert_eq!(f.architecture(), Some("toy"));
    assert_eq!(f.config_json().unwrap()["hidden"], 3);
    let w = f.expect_shape("encoder.layer.0.weight", &[2, 3]).unwrap();
    assert_eq!(w.to_f32_vec().unwrap(), vec![1., 2., 3., 4., 5., 6.]);
    let e = f.tensor("decoder.embed").unwrap();
    assert_eq!(e.to_f32_vec().unwrap(), vec![1., 2., 3., -1.]);
    let names: Vec<&str> = f.names().collect();
    assert_eq!(names[0], "encoder.layer.0.weight");
    // The safetensors crate agrees on every tensor.
    let bytes = std::fs::read(&p).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for t in f.tensors() {
        assert_eq!(st.tensor(t.name).unwrap().data(), t.data);
        assert_eq!(st.tensor(t.name).unwrap().shape(), t.shape);
    }
}

#[test]
fn each_broken_file_gives_its_own_error() {
    let dir = Dir::new("corpus");
    let ok = sample();
    let hdr = |json: &str, data: &[u8]| build(json, data);
    let t = |dtype: &str, shape: &str, b: usize, e: usize| {
        format!("{{\"dtype\":\"{dtype}\",\"shape\":{shape},\"data_offsets\":[{b},{e}]}}")
    };
    let w = Some("w");

    // Not safetensors at all.
    let p = dir.write("empty.safetensors", b"");
    expect(WeightFile::open(&p), &p, K::Truncated, None, "empty");
    let p = dir.write("short.safetensors", b"\x10\0\0");
    expect(WeightFile::open(&p), &p, K::Truncated, None, "only 3 bytes");
    let p = dir.write(
        "pytorch.bin",
        b"PK\x03\x04\x14\0\0\0\x08\0archive/data.pkl....",
    );
    expect(
        WeightFile::open(&p),
        &p,
        K::NotSafetensors,
        None,
        "zip archive",
    );
    let p = dir.write("model.gguf", b"GGUF\x03\0\0\0\0\0\0\0\0\0\0\0");
    expect(WeightFile::open(&p), &p, K::NotSafetensors, None, "GGUF");
    let p = dir.write(
        "lfs.safetensors",
        b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\n",
    );
    expect(
        WeightFile::open(&p),
        &p,
        K::NotSafetensors,
        None,
        "git lfs pull",
    );
    let p = dir.write(
        "text.safetensors",
        b"\x20\0\0\0\0\0\0\0hello, this is not a model at all",
    );
    expect(
        WeightFile::open(&p),
        &p,
        K::NotSafetensors,
        None,
        "byte 8 is 0x68",
    );
    let p = dir.0.clone();
    expect(
        WeightFile::open(&p),
        &p,
        K::NotSafetensors,
        None,
        "directory",
    );

    // Truncated data and header lengths.
    let p = dir.write("truncated.safetensors", &ok[..ok.len() - 5]);
    expect(
        WeightFile::open(&p),
        &p,
        K::Truncated,
        Some("decoder.ids"),
        "5 bytes missing",
    );
    let p = dir.write("cut-in-header.safetensors", &ok[..40]);
    expect(
        WeightFile::open(&p),
        &p,
        K::HeaderBeyondFile,
        None,
        "reaches past the end",
    );
    let mut big = ok.clone();
    big[0..8].copy_from_slice(&1_000_000u64.to_le_bytes());
    let p = dir.write("header-beyond.safetensors", &big);
    expect(
        WeightFile::open(&p),
        &p,
        K::HeaderBeyondFile,
        None,
        "1000000 bytes",
    );
    let mut huge = vec![b' '; 100_000_016];
    huge[0..8].copy_from_slice(&100_000_001u64.to_le_bytes());
    huge[8] = b'{';
    let r = WeightFile::from_bytes(huge, "huge.safetensors");
    expect(
        r,
        Path::new("huge.safetensors"),
        K::HeaderTooLarge,
        None,
        "limit",
    );

    // Bad JSON and bad header structure.
    let p = dir.write(
        "badjson.safetensors",
        &hdr("{\"w\": {\"dtype\": \"F32\",", &[]),
    );
    expect(
        WeightFile::open(&p),
        &p,
        K::BadJson,
        None,
        "not a valid safetensors JSON",
    );
    let p = dir.write("trailing.safetensors", &hdr("{} {}", &[]));
    expect(WeightFile::open(&p), &p, K::BadJson, None, "trailing");
    let mut bad_utf8 = hdr("{\"w\": 1}", &[]);
    bad_utf8[10] = 0xff;
    let p = dir.write("utf8.safetensors", &bad_utf8);
    expect(WeightFile::open(&p), &p, K::BadJson, None, "UTF-8");
    let p = dir.write("notobj.safetensors", &hdr("{\"w\": 1}", &[]));
    expect(
        WeightFile::open(&p),
        &p,
        K::BadHeader,
        w,
        "a number, not an object",
    );
    let p = dir.write(
        "nodtype.safetensors",
        &hdr(
            "{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}",
            &[0; 4],
        ),
    );
    expect(
        WeightFile::open(&p),
        &p,
        K::BadHeader,
        w,
        "no \"dtype\" field",
    );
    let p = dir.write(
        "negshape.safetensors",
        &hdr(&format!("{{\"w\":{}}}", t("F32", "[-1]", 0, 4)), &[0; 4]),
    );
    expect(
        WeightFile::open(&p),
        &p,
        K::BadHeader,
        w,
        "not a non-negative integer",
    );
    let p = dir.write(
        "3offsets.safetensors",
        &hdr(
            "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}}",
            &[0; 4],
        ),
    );
    expect(WeightFile::open(&p), &p, K::BadHeader, w, "3 numbers");
    let dup = format!(
        "{{\"w\":{},\"w\":{}}}",
        t("F32", "[1]", 0, 4),
        t("F32", "[1]", 4, 8)
    );
    let p = dir.write("dup.safetensors", &hdr(&dup, &[0; 8]));
    expect(WeightFile::open(&p), &p, K::BadHeader, w, "twice");

    // Offsets.
    let j = format!(
        "{{\"a\":{},\"w\":{}}}",
        t("F32", "[4]", 0, 16),
        t("F32", "[4]", 32, 48)
    );
    let p = dir.write("out-of-range.safetensors", &hdr(&j, &[0; 32]));
    expect(
        WeightFile::open(&p),
        &p,
        K::OffsetsOutOfRange,
        w,
        "past the data section (32 bytes)",
    );
    let j = format!("{{\"w\":{}}}", t("F32", "[0]", 8, 4));
    let p = dir.write("backwards.safetensors", &hdr(&j, &[0; 8]));
    expect(
        WeightFile::open(&p),
        &p,
        K::OffsetsOutOfRange,
        w,
        "end before they begin",
    );
    let j = format!(
        "{{\"a\":{},\"w\":{}}}",
        t("F32", "[4]", 0, 16),
        t("F32", "[4]", 8, 24)
    );
    let p = dir.write("overlap.safetensors", &hdr(&j, &[0; 24]));
    let m = expect(WeightFile::open(&p), &p, K::OffsetsOverlap, w, "overlap");
    assert!(m.contains("\"a\""), "the other tensor is named: {m}");
    let j = format!(
        "{{\"a\":{},\"w\":{}}}",
        t("F32", "[4]", 0, 16),
        t("F32", "[4]", 20, 36)
    );
    let p = dir.write("hole.safetensors", &hdr(&j, &[0; 36]));
    expect(WeightFile::open(&p), &p, K::OffsetsGap, w, "16..20");
    let mut extra = ok.clone();
    extra.extend_from_slice(&[0; 3]);
    let p = dir.write("trailing-bytes.safetensors", &extra);
    expect(
        WeightFile::open(&p),
        &p,
        K::OffsetsGap,
        None,
        "3 bytes after",
    );

    // Byte length versus shape x dtype.
    let j = format!("{{\"w\":{}}}", t("F32", "[2, 3]", 0, 20));
    let p = dir.write("bytelen.safetensors", &hdr(&j, &[0; 20]));
    expect(WeightFile::open(&p), &p, K::ByteLength, w, "needs 24 bytes");
    let j = format!("{{\"w\":{}}}", t("F32", "[4294967296, 4294967296]", 0, 4));
    let p = dir.write("overflow.safetensors", &hdr(&j, &[0; 4]));
    expect(WeightFile::open(&p), &p, K::ByteLength, w, "more than 2^64");

    // Unsupported dtype.
    let j = format!("{{\"w\":{}}}", t("Q4_K", "[8]", 0, 4));
    let p = dir.write("dtype.safetensors", &hdr(&j, &[0; 4]));
    expect(WeightFile::open(&p), &p, K::UnsupportedDtype, w, "\"Q4_K\"");
    let j = format!("{{\"w\":{}}}", t("I8", "[4]", 0, 4));
    let f = WeightFile::from_bytes(hdr(&j, &[0; 4]), "i8.safetensors").unwrap();
    let r = f.tensor("w").unwrap().to_f32_vec();
    expect(r, Path::new("i8.safetensors"), K::UnsupportedDtype, w, "I8");

    // Metadata: version, format of values, config JSON.
    let mk = |meta: &str| hdr(&format!("{{\"__metadata__\":{meta}}}"), &[]);
    let p = dir.write("newer.safetensors", &mk("{\"heedful.format\":\"2\"}"));
    expect(WeightFile::open(&p), &p, K::FormatTooNew, None, "re-export");
    let p = dir.write("badver.safetensors", &mk("{\"heedful.format\":\"one\"}"));
    expect(
        WeightFile::open(&p),
        &p,
        K::BadMetadata,
        None,
        "not a version number",
    );
    let p = dir.write("badmeta.safetensors", &mk("{\"epoch\": 3}"));
    expect(
        WeightFile::open(&p),
        &p,
        K::BadMetadata,
        None,
        "\"epoch\" holds a number",
    );
    let p = dir.write(
        "badcfg.safetensors",
        &mk("{\"heedful.config\":\"{hidden: 3\"}"),
    );
    expect(
        WeightFile::open(&p),
        &p,
        K::BadMetadata,
        None,
        "not valid JSON",
    );

    // Missing tensor, with suggestions; shape not fitting the config.
    let p = dir.write("ok.safetensors", &ok);
    let f = WeightFile::open(&p).unwrap();
    let m = expect(
        f.tensor("encoder.layer0.weight"),
        &p,
        K::MissingTensor,
        Some("encoder.layer0.weight"),
        "did you mean",
    );
    assert!(
        m.contains("\"encoder.layer.0.weight\""),
        "closest name suggested: {m}"
    );
    let m = expect(
        f.tensor("model.decoder.embed"),
        &p,
        K::MissingTensor,
        Some("model.decoder.embed"),
        "did you mean",
    );
    assert!(
        m.contains("\"decoder.embed\""),
        "prefix difference suggested: {m}"
    );
    let m = expect(
        f.tensor("zzzz"),
        &p,
        K::MissingTensor,
        Some("zzzz"),
        "include",
    );
    assert!(
        !m.contains("did you mean"),
        "no far-fetched suggestion: {m}"
    );
    let m = expect(
        f.expect_shape("encoder.layer.0.weight", &[3, 3]),
        &p,
        K::ShapeMismatch,
        Some("encoder.layer.0.weight"),
        "[2, 3]",
    );
    assert!(
        m.contains("[3, 3]") && m.contains("toy"),
        "both shapes and the arch named: {m}"
    );

    // Not there at all: an I/O error naming the path.
    let p = dir.0.join("nope.safetensors");
    let e = WeightFile::open(&p).unwrap_err();
    assert!(
        matches!(e, Error::Io { .. }) && e.to_string().contains("nope.safetensors"),
        "{e}"
    );
}

/// xorshift64*: deterministic mutations without a rand dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Reads everything a loaded file offers, as a model or the CLI would.
fn exercise(f: &WeightFile) {
    let total: usize = f.tensors().map(|t| t.data.len()).sum();
    assert_eq!(total, f.data_len(), "accepted file's tensors tile its data");
    for t in f.tensors() {
        let _ = t.to_f32_vec();
        let _ = f.expect_shape(t.name, &[2, 3]);
        assert_eq!(t.numel() * t.dtype.size(), t.data.len());
    }
    let _ = f.tensor("encoder.layer.0.weigth");
    let _ = (f.format_version(), f.architecture(), f.config_json());
    let _ = heedful::weights::inspect::Report::new(f).to_string();
}

#[test]
fn mutations_never_panic() {
    let ok = sample();
    let header_end = 8 + u64::from_le_bytes(ok[..8].try_into().unwrap()) as usize;
    let mut rng = Rng(0x5eed_cafe_f00d_1234);
    let (mut accepted, mut rejected) = (0, 0);
    let dir = Dir::new("mutate");
    let iterations = 6000;
    for i in 0..iterations {
        let mut b = ok.clone();
        let op = rng.below(4);
        if op == 0 || op == 3 {
            b.truncate(rng.below(ok.len() + 1));
        }
        if op >= 1 {
            for _ in 0..1 + rng.below(4) {
                if b.is_empty() {
                    break;
                }
                // Mostly the header (where structure lives), sometimes anywhere.
                let at = if rng.below(4) == 0 {
                    rng.below(b.len())
                } else {
                    rng.below(header_end.min(b.len()))
                };
                let v = match rng.below(3) {
                    0 => 1u8 << rng.below(8),
                    1 => rng.next() as u8,
                    _ => *b"{}[],:\"0123456789-e. ".get(rng.below(21)).unwrap(),
                };
                if rng.below(2) == 0 {
                    b[at] ^= v;
                } else {
                    b[at] = v;
                }
            }
        }
        let bytes = b.clone();
        let r = std::panic::catch_unwind(move || {
            match WeightFile::from_bytes(b, "mutant.safetensors") {
                Ok(f) => {
                    exercise(&f);
                    true
                }
                Err(e) => {
                    let msg = e.to_string();
                    assert!(
                        e.weights_kind().is_some(),
                        "not a typed weights error: {msg}"
                    );
                    assert!(
                        !msg.contains("safetensors parser rejects"),
                        "validator missed a fault the crate found: {msg}"
                    );
                    assert!(
                        msg.contains("mutant.safetensors") && msg.contains("hint:"),
                        "{msg}"
                    );
                    false
                }
            }
        });
        match r {
            Ok(true) => accepted += 1,
            Ok(false) => rejected += 1,
            Err(_) => {
                let p = dir.write("panic.safetensors", &bytes);
                panic!(
                    "iteration {i}: the loader panicked; input kept at {}",
                    p.display()
                );
            }
        }
        // Every 50th mutant also goes through the memory-mapped path.
        if i % 50 == 0 {
            let p = dir.write("m.safetensors", &bytes);
            if let Ok(f) = WeightFile::open(&p) {
                exercise(&f);
            }
        }
    }
    eprintln!("{iterations} mutants: {accepted} accepted, {rejected} rejected");
    assert!(
        rejected > iterations / 2,
        "the mutations must mostly break the file"
    );
    assert!(
        accepted > 0,
        "some mutations (data bytes) leave a valid file"
    );
}

#[test]
fn inspect_report_lists_metadata_tensors_and_totals() {
    let f = WeightFile::from_bytes(sample(), "sample.safetensors").unwrap();
    let r = heedful::weights::inspect::Report::new(&f);
    let text = r.to_string();
    for needle in [
        "sample.safetensors",
        "4 tensors",
        "heedful format 1, architecture toy",
        "heedful.config = {\"hidden\": 3}",
        "encoder.layer.0.weight",
        "[2, 3]",
        "24 B",
        "F32: 2 tensors, 9 parameters, 36 B",
        "F16: 1 tensors, 4 parameters, 8 B",
        "I64: 1 tensors, 2 parameters, 16 B",
        "total: 4 tensors, 15 parameters (15), 60 B",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    let j = serde_json::to_value(&r).unwrap();
    assert_eq!(j["total"]["bytes"], 60);
    assert_eq!(j["tensors"][0]["name"], "encoder.layer.0.weight");
    assert_eq!(j["tensors"][0]["offset"], f.data_start());
    assert_eq!(j["by_dtype"]["F16"]["numel"], 4);
    assert_eq!(j["metadata"]["heedful.arch"], "toy");
}

/// Paths that are not regular files are refused as such, not reported as an empty file to
/// re-download: a character device (`/dev/null`, size 0, reads nothing) and a /proc pseudo-file
/// (size 0, but has content).
#[cfg(unix)]
#[test]
fn non_regular_files_are_named_as_such() {
    for (p, needle) in [
        ("/dev/null", "character device"),
        ("/proc/self/status", "pseudo-file"),
    ] {
        let p = Path::new(p);
        if !p.exists() {
            continue;
        }
        let msg = expect(WeightFile::open(p), p, K::NotRegularFile, None, needle);
        assert!(!msg.contains("empty"), "{msg}");
    }
}
