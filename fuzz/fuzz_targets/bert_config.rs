//! Fuzzes the BERT `config.json` parser: any text must give a checked [`BertConfig`] or an error,
//! never a panic, an overflow or a huge allocation; an accepted config is then checked against a
//! small weight file (what `BertEncoder::load` does before uploading anything).
#![no_main]

use heedful::models::bert::BertConfig;
use heedful::weights::WeightFile;
use libfuzzer_sys::fuzz_target;

/// A valid safetensors file holding one F32 tensor `embeddings.LayerNorm.weight [4]`.
fn small_file() -> WeightFile {
    let header =
        br#"{"embeddings.LayerNorm.weight":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
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
    if let Ok(c) = BertConfig::from_json_str(text) {
        assert!(c.hidden_size.is_multiple_of(c.num_attention_heads));
        let _ = c.activation();
        // The file lacks the word embeddings every config needs.
        assert!(c.check_file(&small_file(), "").is_err());
    }
});
