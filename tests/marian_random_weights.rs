//! The Rust writer of the opus-mt-sized random Marian model (`heedful::bench::marian_random`)
//! against the Python one (`weights/marian_opus_random.py`): the folder it writes holds exactly
//! the tensors, shapes and values whose checksums `weights/fixtures/marian_opus_random.json`
//! records, and the same config. The values are exact f16 numbers with few significant bits, so
//! the f64 sums are exact in any order; they are compared to 1e-13 relative only because
//! serde_json's default float parser may land one ulp off Python's shortest repr (a wrong value
//! anywhere in a tensor moves its sums by far more). The first values are compared with `==`.

// Only the marian_random helper is used here, not the GPU helpers that common re-exports.
#[allow(unused_imports)]
mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::marian_random::{tensor_specs, write_random_opus_folder};
use safetensors::{Dtype, SafeTensors};

fn fixture() -> serde_json::Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("weights/fixtures/marian_opus_random.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn random_opus_folder_matches_python_checksums() {
    let fx = fixture();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("marian_random_weights");
    write_random_opus_folder(&dir).unwrap();

    // Config: every field the Python model's config has, with the same value (dtype aside: the
    // fixture's model is float32 in memory, the folder is F16 as save_pretrained writes it).
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    for (k, v) in fx["config"].as_object().unwrap() {
        if k == "dtype" {
            continue;
        }
        assert_eq!(&config[k], v, "config.json field {k}");
    }
    assert_eq!(config["dtype"], "float16");
    let gen: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("generation_config.json")).unwrap())
            .unwrap();
    assert_eq!(gen, fx["generation_config"], "generation_config.json");

    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let want: BTreeMap<String, &serde_json::Value> = fx["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_string(), t))
        .collect();
    let mut got_names: Vec<String> = st.names().into_iter().cloned().collect();
    got_names.sort();
    assert_eq!(
        got_names,
        want.keys().cloned().collect::<Vec<_>>(),
        "tensor names"
    );
    assert_eq!(tensor_specs().len(), want.len());

    let mut mismatches = Vec::new();
    for (name, t) in &want {
        let view = st.tensor(name).unwrap();
        assert_eq!(view.dtype(), Dtype::F16, "{name}");
        let shape: Vec<usize> = t["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(view.shape(), &shape[..], "{name} shape");
        let vals: Vec<f64> = view
            .data()
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f64())
            .collect();
        let sum: f64 = vals.iter().sum();
        let sum_sq: f64 = vals.iter().map(|v| v * v).sum();
        let first: Vec<f64> = t["first"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-13 * b.abs().max(1.0);
        if !close(sum, t["sum"].as_f64().unwrap())
            || !close(sum_sq, t["sum_sq"].as_f64().unwrap())
            || vals[..first.len()] != first[..]
        {
            mismatches.push(format!(
                "{name}: sum {sum} vs {}, sum_sq {sum_sq} vs {}, first {:?} vs {:?}",
                t["sum"],
                t["sum_sq"],
                &vals[..first.len()],
                first
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} tensors differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    std::fs::remove_dir_all(&dir).ok();
}
