//! Fuzzes the Marian `config.json` and `generation_config.json` parsers: any text must give a
//! checked config or an error, never a panic, an overflow or a huge allocation; an accepted
//! config is then resolved against a small weight file (what loading does before any upload),
//! which must refuse it since the file lacks the embeddings.
#![no_main]

use heedful::models::marian::weights::MarianWeights;
use heedful::models::marian::{GenerationConfig, MarianConfig};
use heedful::weights::WeightFile;
use libfuzzer_sys::fuzz_target;

/// A valid safetensors file holding one F32 tensor `final_logits_bias [1, 4]`.
fn small_file() -> WeightFile {
    let header = br#"{"final_logits_bias":{"dtype":"F32","shape":[1,4],"data_offsets":[0,16]}}"#;
    let mut h = header.to_vec();
    h.resize(h.len().div_ceil(8) * 8, b' ');
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&h);
    bytes.extend_from_slice(&[0u8; 16]);
    WeightFile::from_bytes(bytes, "fuzz.safetensors").expect("the seed file is valid")
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = MarianConfig::from_json_str(text) {
        assert!(c.d_model.is_multiple_of(c.encoder_attention_heads));
        assert!(c.d_model.is_multiple_of(c.decoder_attention_heads));
        let _ = c.embed_scale();
        assert!(MarianWeights::resolve(&c, &small_file()).is_err());
    }
    if let Ok(g) = GenerationConfig::from_json_str(text) {
        let _ = g.check_ids(10);
    }
});
