//! `--input FILE|-`: lines read as they come, in batches, each line at most [`MAX_LINE`] bytes.
//!
//! Nothing reads the whole input first: a batch holds at most `batch` lines, so memory stays flat
//! whatever the line count, an endless stream (`yes word`) is decoded batch by batch, and a stream
//! without newlines (`/dev/zero`) is an error naming the line once it passes [`MAX_LINE`] bytes,
//! after reading at most that much of it.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The longest line `--input` takes, in bytes without the line ending (64 KiB: far over any word or
/// sentence the models take, small enough that a file without newlines fails at once).
pub const MAX_LINE: usize = 64 << 10;

/// How much the reader buffers: the lines already buffered join the batch being filled without
/// waiting for more input.
const BUFFER: usize = 64 << 10;

/// The lines of a file or of standard input, read a batch at a time.
pub struct LineReader {
    /// The file, or `-` for standard input, as errors name it.
    path: PathBuf,
    src: BufReader<Box<dyn Read>>,
    /// Lines read so far (the number of the last line returned).
    line: usize,
    /// The longest line taken, in bytes.
    max_line: usize,
    /// End of input reached.
    done: bool,
}

impl LineReader {
    /// Opens `path` (`-`: standard input) with the [`MAX_LINE`] limit.
    pub fn open(path: &Path) -> Result<LineReader> {
        let src: Box<dyn Read> = if path == Path::new("-") {
            Box::new(std::io::stdin())
        } else {
            Box::new(File::open(path).map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?)
        };
        Ok(LineReader::new(path, src, MAX_LINE))
    }

    /// Reads lines from `src` (errors name `path`), each at most `max_line` bytes.
    pub fn new(path: &Path, src: Box<dyn Read>, max_line: usize) -> LineReader {
        LineReader {
            path: path.to_path_buf(),
            src: BufReader::with_capacity(BUFFER, src),
            line: 0,
            max_line,
            done: false,
        }
    }

    /// The number of lines read so far.
    pub fn lines_read(&self) -> usize {
        self.line
    }

    /// The next line without its `\n` or `\r\n`, or `None` at the end of input. A line over the
    /// limit, or not UTF-8, is an error naming its number; at most `max_line + 1` bytes of it are
    /// read.
    pub fn next_line(&mut self) -> Result<Option<String>> {
        if self.done {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        let n = self.line + 1;
        let too_long = |path: &Path, max: usize| {
            Error::file(
                path,
                format!("line {n} is longer than {max} bytes, the longest line --input takes"),
            )
        };
        // Whether a `\n` ended the line (else the input did).
        let mut ended = false;
        loop {
            let buf = match self.src.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(Error::Io {
                        path: self.path.clone(),
                        source,
                    })
                }
            };
            if buf.is_empty() {
                self.done = true;
                if bytes.is_empty() {
                    return Ok(None);
                }
                break;
            }
            // The line's bytes in this buffer, and whether a `\n` ends them.
            let (take, ends) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (buf.len(), false),
            };
            // One byte over the limit may be the `\r` of a `\r\n` ending.
            if bytes.len() + take > self.max_line + 1 {
                return Err(too_long(&self.path, self.max_line));
            }
            bytes.extend_from_slice(&buf[..take]);
            self.src.consume(take + usize::from(ends));
            if ends {
                ended = true;
                break;
            }
        }
        if ended && bytes.ends_with(b"\r") {
            bytes.pop();
        }
        if bytes.len() > self.max_line {
            return Err(too_long(&self.path, self.max_line));
        }
        self.line = n;
        String::from_utf8(bytes).map(Some).map_err(|e| {
            Error::file(
                &self.path,
                format!("line {n} is not UTF-8: {}", e.utf8_error()),
            )
        })
    }

    /// Up to `max` lines (at least 1 where `max` is 0), kept by `keep` (which may transform them;
    /// `None` drops a line). Waits for the first kept line; after it, takes only lines already
    /// buffered, so a pipe that pauses (a person typing, a producer between writes) gets its words
    /// back without waiting for the batch to fill. Empty at the end of input.
    pub fn next_batch(
        &mut self,
        max: usize,
        mut keep: impl FnMut(String) -> Option<String>,
    ) -> Result<Vec<String>> {
        let max = max.max(1);
        let mut batch = Vec::new();
        while batch.len() < max {
            if !batch.is_empty() && self.src.buffer().is_empty() {
                break;
            }
            match self.next_line()? {
                Some(l) => batch.extend(keep(l)),
                None => break,
            }
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &'static [u8], max_line: usize) -> LineReader {
        LineReader::new(Path::new("words.txt"), Box::new(bytes), max_line)
    }

    fn all(r: &mut LineReader) -> Result<Vec<String>> {
        let mut v = Vec::new();
        while let Some(l) = r.next_line()? {
            v.push(l);
        }
        Ok(v)
    }

    #[test]
    fn lines_as_std_lines_reads_them() {
        // The same lines `BufRead::lines` gives (the reference), for each kind of ending.
        for text in [
            &b"a\nbc\r\n\nd"[..],
            b"a\n",
            b"",
            b"\n\n",
            b"x\r\ny\r\n",
            b"lone\rcr\n",
            b"end\r",
        ] {
            let want: Vec<String> = text.lines().map(|l| l.unwrap()).collect();
            let leaked: &'static [u8] = Box::leak(text.to_vec().into_boxed_slice());
            assert_eq!(all(&mut reader(leaked, 16)).unwrap(), want, "{text:?}");
        }
    }

    #[test]
    fn a_line_over_the_limit_names_its_number() {
        let mut r = reader(b"abcd\nabcde\nabc\n", 4);
        assert_eq!(r.next_line().unwrap().as_deref(), Some("abcd"));
        let e = r.next_line().unwrap_err().to_string();
        assert!(
            e.contains("words.txt") && e.contains("line 2 is longer than 4 bytes"),
            "{e}"
        );
        // At the limit with a \r\n ending, and at the end of input without an ending: taken.
        let mut r = reader(b"abcd\r\nabcd", 4);
        assert_eq!(all(&mut r).unwrap(), ["abcd", "abcd"]);
        let e = reader(b"abcde", 4).next_line().unwrap_err().to_string();
        assert!(e.contains("line 1 is longer"), "{e}");
        let e = reader(b"abcd\r", 4).next_line().unwrap_err().to_string();
        assert!(e.contains("line 1 is longer"), "{e}");
    }

    #[test]
    fn an_endless_line_fails_after_reading_at_most_the_limit() {
        // An endless reader of zeros: the error comes after max_line + 1 bytes, whatever the buffer.
        struct Zeros(usize);
        impl Read for Zeros {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                buf.fill(0);
                self.0 += buf.len();
                Ok(buf.len())
            }
        }
        let mut r = LineReader::new(Path::new("-"), Box::new(Zeros(0)), 100_000);
        let e = r.next_line().unwrap_err().to_string();
        assert!(e.contains("line 1 is longer than 100000 bytes"), "{e}");
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let e = all(&mut reader(b"ok\n\xff\n", 16)).unwrap_err().to_string();
        assert!(e.contains("line 2 is not UTF-8"), "{e}");
    }

    #[test]
    fn batches_keep_order_and_filter() {
        let mut r = reader(b"a\n\n b \nc\nd\n", 16);
        let keep = |l: String| Some(l.trim().to_string()).filter(|l| !l.is_empty());
        assert_eq!(r.next_batch(2, keep).unwrap(), ["a", "b"]);
        assert_eq!(r.lines_read(), 3);
        assert_eq!(r.next_batch(0, keep).unwrap(), ["c"]);
        assert_eq!(r.next_batch(5, keep).unwrap(), ["d"]);
        assert!(r.next_batch(5, keep).unwrap().is_empty());
    }

    #[test]
    fn a_batch_ends_where_the_input_pauses() {
        // A pipe whose writer sends one line per write: each read returns one line. The batch takes
        // the first line and does not wait for a second (which would block on a real pipe).
        struct PerWrite(Vec<&'static [u8]>);
        impl Read for PerWrite {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() {
                    return Ok(0);
                }
                let chunk = self.0.remove(0);
                buf[..chunk.len()].copy_from_slice(chunk);
                Ok(chunk.len())
            }
        }
        let src = PerWrite(vec![b"one\ntwo\n", b"three\n", b"fo", b"ur\nfive\n"]);
        let mut r = LineReader::new(Path::new("-"), Box::new(src), 16);
        assert_eq!(r.next_batch(8, Some).unwrap(), ["one", "two"]);
        assert_eq!(r.next_batch(8, Some).unwrap(), ["three"]);
        // A line split across writes is waited for: it is part of a line already begun.
        assert_eq!(r.next_batch(8, Some).unwrap(), ["four", "five"]);
        assert!(r.next_batch(8, Some).unwrap().is_empty());
    }
}
