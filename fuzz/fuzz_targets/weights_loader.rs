//! Fuzzes the safetensors loader: any bytes must give a validated file or an `Error::Weights`,
//! never a panic, and an accepted file's views must be consistent with its header.
#![no_main]

use heedful::weights::{inspect::Report, WeightFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match WeightFile::from_bytes(data.to_vec(), "fuzz.safetensors") {
        Ok(f) => {
            let total: usize = f.tensors().map(|t| t.data.len()).sum();
            assert_eq!(total, f.data_len());
            for t in f.tensors() {
                assert_eq!(t.numel() * t.dtype.size(), t.data.len());
                if let Ok(v) = t.to_f32_vec() {
                    assert_eq!(v.len(), t.numel());
                }
                let _ = f.expect_shape(t.name, &[1]);
            }
            let _ = f.tensor("no.such.tensor");
            let _ = (f.format_version(), f.architecture(), f.config_json());
            let _ = Report::new(&f).to_string();
        }
        Err(e) => assert!(e.weights_kind().is_some(), "untyped error: {e}"),
    }
});
