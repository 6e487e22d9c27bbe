//! The real-model test: all-MiniLM-L6-v2 sentence embeddings against sentence-transformers'
//! (weights/fixtures/minilm_reference.json, made by weights/make_minilm_reference.py), with f16
//! weights converted on upload from the F32 checkpoint, at batch sizes 1 and 16.

mod common;
use common::*;
use heedful::models::bert::{BertEncoder, LoadOptions};

struct Reference {
    text: String,
    ids: Vec<u32>,
    embedding: Vec<f32>,
}

fn references() -> Vec<Reference> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/weights/fixtures/minilm_reference.json"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Reference {
            text: s["text"].as_str().unwrap().to_string(),
            ids: s["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap() as u32)
                .collect(),
            embedding: s["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect(),
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn minilm_matches_sentence_transformers_at_batch_1_and_16() {
    let gpu = gpu();
    let refs = references();
    assert!(refs.len() >= 30);
    let model = BertEncoder::load(&gpu, &minilm_dir(), &LoadOptions::default()).unwrap();
    let session = model.session();
    for r in &refs {
        let inputs = model.encode_batch(&[&r.text]).unwrap();
        let ids: Vec<u32> = bytemuck::cast_slice::<u8, i32>(&inputs[0].1.bytes)
            .iter()
            .map(|&i| i as u32)
            .collect();
        assert_eq!(ids, r.ids, "token ids of {:?}", r.text);
    }
    for batch in [1usize, 16] {
        let mut worst = (1.0f64, 0.0f64);
        for chunk in refs.chunks(batch) {
            let texts: Vec<&str> = chunk.iter().map(|r| r.text.as_str()).collect();
            let got = model.embed(&session, &texts).unwrap();
            for (r, g) in chunk.iter().zip(&got) {
                let cos = cosine(g, &r.embedding);
                let max_abs = g
                    .iter()
                    .zip(&r.embedding)
                    .map(|(a, b)| (a - b).abs() as f64)
                    .fold(0.0, f64::max);
                worst = (worst.0.min(cos), worst.1.max(max_abs));
                assert!(
                    cos >= 0.9999 && max_abs <= 2e-3,
                    "batch {batch}: {:?}: cosine {cos:.6}, max abs diff {max_abs:.2e}",
                    r.text
                );
            }
        }
        eprintln!(
            "batch {batch}: worst cosine {:.6}, worst max abs diff {:.2e}",
            worst.0, worst.1
        );
    }
}

/// heedful's own f16 file (written by `heedful convert`) gives the same embeddings as converting the
/// F32 checkpoint on upload: both round to nearest even, so the GPU holds identical weights.
#[test]
fn converted_f16_file_loads_and_matches_on_the_fly_conversion() {
    let gpu = gpu();
    let dir = minilm_dir();
    let out = std::env::temp_dir().join(format!(
        "heedful-minilm-f16-{}.safetensors",
        std::process::id()
    ));
    heedful::weights::convert::convert(
        dir.join("model.safetensors"),
        &out,
        heedful::weights::convert::Target::F16,
        false,
    )
    .unwrap();
    let f16_file = heedful::weights::WeightFile::open(&out).unwrap();
    assert!(
        f16_file
            .tensors()
            .all(|t| t.dtype != heedful::weights::FileDType::F32),
        "no f32 tensors are left"
    );
    let texts = ["Attention is all you need.", "A"];
    let from_f32 = BertEncoder::load(&gpu, &dir, &LoadOptions::default()).unwrap();
    let from_f16 = BertEncoder::load(
        &gpu,
        &dir,
        &LoadOptions {
            weights: Some(out.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    let a = from_f32.embed(&from_f32.session(), &texts).unwrap();
    let b = from_f16.embed(&from_f16.session(), &texts).unwrap();
    std::fs::remove_file(&out).ok();
    for (x, y) in a.iter().zip(&b) {
        assert_close("f16 file vs on-the-fly", y, x, 0.0, 0.0);
    }
}
