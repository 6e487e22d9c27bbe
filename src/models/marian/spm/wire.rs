//! A minimal protobuf wire-format reader: varints, length-delimited fields, fixed32 floats,
//! skipping of unknown fields. Errors name the file, the message and the field, with the byte
//! offset; nothing panics on any input.

use std::path::Path;

use crate::error::{Error, Result};

/// Protobuf wire types.
pub(super) const VARINT: u8 = 0;
pub(super) const I64: u8 = 1;
pub(super) const LEN: u8 = 2;
pub(super) const I32: u8 = 5;

/// A cursor over one protobuf message's bytes; errors name the file and the message.
pub(super) struct Wire<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
    msg: &'static str,
}

impl<'a> Wire<'a> {
    pub(super) fn new(buf: &'a [u8], path: &'a Path, msg: &'static str) -> Self {
        Wire {
            buf,
            pos: 0,
            path,
            msg,
        }
    }

    fn err(&self, what: &str, detail: &str) -> Error {
        Error::file(
            self.path,
            format!(
                "malformed SentencePiece model: {}.{what} at byte {} of {}: {detail}",
                self.msg,
                self.pos,
                self.buf.len()
            ),
        )
    }

    fn varint(&mut self, what: &str) -> Result<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err(what, "truncated varint"));
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(self.err(what, "varint longer than 64 bits"));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err(what, "varint longer than 10 bytes"))
    }

    /// The next field number and wire type, or None at the end of the message.
    pub(super) fn key(&mut self) -> Result<Option<(u64, u8)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let k = self.varint("field key")?;
        let field = k >> 3;
        let wt = (k & 7) as u8;
        if field == 0 {
            return Err(self.err("field key", "field number 0"));
        }
        Ok(Some((field, wt)))
    }

    fn expect(&self, wt: u8, want: u8, what: &str) -> Result<()> {
        if wt == want {
            Ok(())
        } else {
            Err(self.err(
                what,
                &format!("wire type {wt}, expected {want} for this field"),
            ))
        }
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        let left = self.buf.len() - self.pos;
        if n > left as u64 {
            return Err(self.err(
                what,
                &format!("length {n} runs past the end ({left} bytes left)"),
            ));
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    pub(super) fn bytes(&mut self, wt: u8, what: &str) -> Result<&'a [u8]> {
        self.expect(wt, LEN, what)?;
        let n = self.varint(what)?;
        self.take(n, what)
    }

    pub(super) fn message(&mut self, wt: u8, what: &str) -> Result<&'a [u8]> {
        self.bytes(wt, what)
    }

    pub(super) fn string(&mut self, wt: u8, what: &str) -> Result<String> {
        let b = self.bytes(wt, what)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => Err(self.err(what, "string is not valid UTF-8")),
        }
    }

    pub(super) fn float(&mut self, wt: u8, what: &str) -> Result<f32> {
        self.expect(wt, I32, what)?;
        let b = self.take(4, what)?;
        Ok(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(super) fn varint_field(&mut self, wt: u8, what: &str) -> Result<u64> {
        self.expect(wt, VARINT, what)?;
        self.varint(what)
    }

    /// Skips a field heedful does not read.
    pub(super) fn skip(&mut self, wt: u8, field: u64) -> Result<()> {
        let what = format!("field {field}");
        match wt {
            VARINT => self.varint(&what).map(|_| ()),
            I64 => self.take(8, &what).map(|_| ()),
            LEN => {
                let n = self.varint(&what)?;
                self.take(n, &what).map(|_| ())
            }
            I32 => self.take(4, &what).map(|_| ()),
            _ => Err(self.err(&what, &format!("unsupported wire type {wt}"))),
        }
    }
}
