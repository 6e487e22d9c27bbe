//! sentencepiece's normalizer: rules of a precompiled charsmap (a Darts-clone double array over
//! source byte strings, the longest match winning), user-defined symbols kept whole,
//! `remove_extra_whitespaces`, `add_dummy_prefix` and `▁` escaping, as `normalizer.cc` does them.
//! The double array is read with every index checked: a lying file gives no match or an error,
//! never an out-of-bounds read.

use std::path::PathBuf;

use super::NormalizerSpec;
use crate::error::{Error, Result};

pub(super) const SPACE_SYMBOL: &str = "\u{2581}";
/// sentencepiece's `kMaxTrieResultsSize`: the normalizer looks at no more trie matches than this.
const MAX_TRIE_RESULTS: usize = 32;

/// sentencepiece's `OneCharLen`: a UTF-8 sequence's length from its lead byte.
pub(super) fn one_char_len(b: u8) -> usize {
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4][usize::from(b >> 4)]
}

/// Length of the valid UTF-8 character at the start of `b`, None if it does not start with one.
pub(super) fn valid_char_len(b: &[u8]) -> Option<usize> {
    let n = one_char_len(b[0]);
    if n > b.len() {
        return None;
    }
    std::str::from_utf8(&b[..n]).ok().map(|_| n)
}

/// A byte trie of piece texts with sorted child lists: common-prefix search in O(match length).
#[derive(Clone, Debug, Default)]
pub(super) struct Trie {
    /// Node 0 is the root; each node's children are (byte, node) sorted by byte.
    children: Vec<Vec<(u8, u32)>>,
    values: Vec<Option<u32>>,
}

impl Trie {
    pub(super) fn insert(&mut self, key: &[u8], value: u32) {
        if self.children.is_empty() {
            self.children.push(Vec::new());
            self.values.push(None);
        }
        let mut node = 0usize;
        for &b in key {
            node = match self.children[node].binary_search_by_key(&b, |c| c.0) {
                Ok(i) => self.children[node][i].1 as usize,
                Err(i) => {
                    let next = self.children.len();
                    self.children.push(Vec::new());
                    self.values.push(None);
                    self.children[node].insert(i, (b, next as u32));
                    next
                }
            };
        }
        // sentencepiece inserts each piece text once (duplicates are rejected on load).
        if self.values[node].is_none() {
            self.values[node] = Some(value);
        }
    }

    /// Calls `f(length, value)` for every key that is a prefix of `s`, shortest first.
    pub(super) fn prefixes(&self, s: &[u8], mut f: impl FnMut(usize, u32)) {
        if self.children.is_empty() {
            return;
        }
        let mut node = 0usize;
        for (i, &b) in s.iter().enumerate() {
            match self.children[node].binary_search_by_key(&b, |c| c.0) {
                Ok(k) => node = self.children[node][k].1 as usize,
                Err(_) => return,
            }
            if let Some(v) = self.values[node] {
                f(i + 1, v);
            }
        }
    }

    fn longest_prefix(&self, s: &[u8]) -> Option<usize> {
        let mut longest = None;
        self.prefixes(s, |len, _| longest = Some(len));
        longest
    }
}

/// A Darts-clone double array (the trie of a precompiled charsmap) and its rule strings.
#[derive(Clone, Debug)]
struct CharsMap {
    units: Vec<u32>,
    normalized: Vec<u8>,
}

impl CharsMap {
    /// Splits a `precompiled_charsmap` as sentencepiece's `DecodePrecompiledCharsMap` does.
    fn parse(blob: &[u8], path: &std::path::Path, which: &str) -> Result<CharsMap> {
        let err = |d: &str| Error::file(path, format!("{which}.precompiled_charsmap: {d}"));
        if blob.len() <= 4 {
            return Err(err(
                "blob for normalization rule is broken (4 bytes or fewer)",
            ));
        }
        let size = u32::from_le_bytes([blob[0], blob[1], blob[2], blob[3]]) as usize;
        if size >= blob.len() {
            return Err(err(&format!(
                "trie size {size} exceeds the blob size {}",
                blob.len()
            )));
        }
        let trie = &blob[4..4 + size];
        if trie.len() < 4 {
            return Err(err("the trie has no root unit"));
        }
        let units = trie
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(CharsMap {
            units,
            normalized: blob[4 + size..].to_vec(),
        })
    }

    fn unit(&self, i: usize) -> Option<u32> {
        self.units.get(i).copied()
    }

    /// The longest rule matching a prefix of `s` among the first 32 trie matches: (matched
    /// length, replacement bytes). None if no rule matches or the trie points outside itself (a
    /// lying file: sentencepiece would read out of bounds).
    fn longest(&self, s: &[u8]) -> Option<(usize, &[u8])> {
        let offset = |u: u32| ((u >> 10) << ((u & (1 << 9)) >> 6)) as usize;
        let label = |u: u32| u & ((1 << 31) | 0xff);
        let has_leaf = |u: u32| (u >> 8) & 1 == 1;
        let mut best: Option<(usize, u32)> = None;
        let mut found = 0;
        let mut id = offset(self.unit(0)?);
        for (i, &c) in s.iter().enumerate() {
            id ^= usize::from(c);
            let u = self.unit(id)?;
            if label(u) != u32::from(c) {
                break;
            }
            id ^= offset(u);
            if has_leaf(u) {
                let value = self.unit(id)? & ((1 << 31) - 1);
                if found < MAX_TRIE_RESULTS {
                    best = Some((i + 1, value));
                }
                found += 1;
            }
        }
        let (len, value) = best?;
        let start = value as usize;
        let tail = self.normalized.get(start..)?;
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        Some((len, &tail[..end]))
    }
}

/// sentencepiece's `normalizer::Normalizer`.
#[derive(Clone, Debug)]
pub(super) struct Normalizer {
    spec: NormalizerSpec,
    charsmap: Option<CharsMap>,
    user_defined: Option<Trie>,
    treat_whitespace_as_suffix: bool,
    path: PathBuf,
    which: &'static str,
}

impl Normalizer {
    pub(super) fn new(
        spec: &NormalizerSpec,
        treat_whitespace_as_suffix: bool,
        user_defined: Option<Trie>,
        path: &std::path::Path,
        which: &'static str,
    ) -> Result<Normalizer> {
        let charsmap = if spec.precompiled_charsmap.is_empty() {
            None
        } else {
            Some(CharsMap::parse(&spec.precompiled_charsmap, path, which)?)
        };
        Ok(Normalizer {
            spec: spec.clone(),
            charsmap,
            user_defined,
            treat_whitespace_as_suffix,
            path: path.to_path_buf(),
            which,
        })
    }

    /// `NormalizePrefix`: (replacement, bytes consumed) for the start of `s` (non-empty).
    fn prefix<'a>(&'a self, s: &'a [u8]) -> (&'a [u8], usize) {
        if let Some(n) = self.user_defined.as_ref().and_then(|t| t.longest_prefix(s)) {
            return (&s[..n], n);
        }
        if let Some((n, rep)) = self.charsmap.as_ref().and_then(|c| c.longest(s)) {
            return (rep, n);
        }
        match valid_char_len(s) {
            Some(n) => (&s[..n], n),
            None => ("\u{fffd}".as_bytes(), 1),
        }
    }

    pub(super) fn normalize(&self, input: &str) -> Result<String> {
        let space: &[u8] = if self.spec.escape_whitespaces {
            SPACE_SYMBOL.as_bytes()
        } else {
            b" "
        };
        let mut s = input.as_bytes();
        let mut out: Vec<u8> = Vec::with_capacity(s.len() * 3 + 3);
        if self.spec.remove_extra_whitespaces {
            while !s.is_empty() {
                let (rep, n) = self.prefix(s);
                if rep != b" " {
                    break;
                }
                s = &s[n..];
            }
        }
        if s.is_empty() {
            return Ok(String::new());
        }
        let dummy = self.spec.add_dummy_prefix;
        if !self.treat_whitespace_as_suffix && dummy {
            out.extend_from_slice(space);
        }
        let mut prev_space = self.spec.remove_extra_whitespaces;
        while !s.is_empty() {
            let (mut rep, n) = self.prefix(s);
            while prev_space && rep.first() == Some(&b' ') {
                rep = &rep[1..];
            }
            if !rep.is_empty() {
                for &b in rep {
                    if self.spec.escape_whitespaces && b == b' ' {
                        out.extend_from_slice(space);
                    } else {
                        out.push(b);
                    }
                }
                prev_space = rep.last() == Some(&b' ');
            }
            s = &s[n..];
            if !self.spec.remove_extra_whitespaces {
                prev_space = false;
            }
        }
        if self.spec.remove_extra_whitespaces {
            while out.ends_with(space) {
                out.truncate(out.len() - space.len());
            }
        }
        if self.treat_whitespace_as_suffix && dummy {
            out.extend_from_slice(space);
        }
        String::from_utf8(out).map_err(|_| {
            Error::file(
                &self.path,
                format!(
                    "{}.precompiled_charsmap rewrites {input:?} to bytes that are not UTF-8",
                    self.which
                ),
            )
        })
    }
}
