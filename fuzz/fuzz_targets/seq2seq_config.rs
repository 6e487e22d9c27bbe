//! Fuzzes the seq2seq `heedful.config` parser: any text must give a checked [`Config`] or an
//! error, never a panic, an overflow or a huge allocation; an accepted config is then checked
//! against a small weight file (the path every load takes before allocating anything).
#![no_main]

use heedful::models::seq2seq::Config;
use heedful::weights::WeightFile;
use libfuzzer_sys::fuzz_target;

/// A valid safetensors file holding one F32 tensor `encoder.emb.weight [2, 2]`.
fn small_file() -> WeightFile {
    let header = br#"{"encoder.emb.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#;
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
    if let Ok(c) = Config::from_json_str(text) {
        let _ = (c.attention(), c.attention_order(), c.dirs(), c.mem_dim(), c.ctx_dim());
        // The file lacks the RNN tensors every config needs.
        assert!(c.check_file(&small_file()).is_err());
    }
});
