//! Stop strings over streamed text, with vLLM's result: the output ends at the first stop
//! string (which is cut off unless `include_stop_str_in_output`), and no piece of a stop string
//! is ever streamed out before we know whether it completes.
//!
//! "First" means the occurrence that ends first in the text, ties going to the one that starts
//! first (the longer). That is what a streaming scanner sees first, so the result does not
//! depend on how the text was cut into deltas.
//!
//! When stop strings are excluded from the output we hold back the longest tail of the
//! unemitted text that is a prefix of some stop string: any stop string that later completes
//! starts inside that tail, so nothing of it has been emitted. When they are included there is
//! nothing to hide, so text is emitted at once (as vLLM does) and only the last few emitted
//! bytes are kept, to find stop strings that straddle deltas.

/// What one [`StopStrings::push`] yields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StopCheck {
    /// Text that is final and may be sent now.
    pub text: String,
    /// A stop string was found; `text` already ends where the output must end, and nothing
    /// more comes from this matcher.
    pub stopped: bool,
}

#[derive(Debug, Clone)]
pub struct StopStrings {
    stops: Vec<String>,
    include_stop_str_in_output: bool,
    /// Emitted text kept only for matching across deltas (at most `max_len - 1` bytes).
    tail: String,
    /// Text not yet emitted.
    pending: String,
    stopped: bool,
    /// The stop string that ended the output, if any.
    matched: Option<String>,
}

impl StopStrings {
    /// Empty stop strings are ignored.
    pub fn new(stops: Vec<String>, include_stop_str_in_output: bool) -> StopStrings {
        StopStrings {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            include_stop_str_in_output,
            tail: String::new(),
            pending: String::new(),
            stopped: false,
            matched: None,
        }
    }

    /// Whether there is anything to match (callers may skip the matcher otherwise).
    pub fn is_empty(&self) -> bool {
        self.stops.is_empty()
    }

    /// The stop string that ended the output (vLLM reports it as `stop_reason`).
    pub fn matched(&self) -> Option<&str> {
        self.matched.as_deref()
    }

    pub fn push(&mut self, delta: &str) -> StopCheck {
        if self.stopped {
            return StopCheck {
                text: String::new(),
                stopped: true,
            };
        }
        self.pending.push_str(delta);
        let hay = format!("{}{}", self.tail, self.pending);
        let tail_len = self.tail.len();
        if let Some((start, stop)) = self.first_match(&hay, tail_len) {
            let end = if self.include_stop_str_in_output {
                start + self.stops[stop].len()
            } else {
                start
            };
            // With the stop string excluded its start is never in emitted text (see above).
            let text = hay[tail_len.min(end)..end].to_string();
            self.matched = Some(self.stops[stop].clone());
            self.stopped = true;
            self.pending.clear();
            return StopCheck {
                text,
                stopped: true,
            };
        }
        let keep = if self.include_stop_str_in_output {
            0
        } else {
            self.held_back_len()
        };
        let text = self.pending[..self.pending.len() - keep].to_string();
        self.pending.drain(..self.pending.len() - keep);
        self.remember(&text);
        StopCheck {
            text,
            stopped: false,
        }
    }

    /// The held-back text, once the stream has ended without completing a stop string.
    pub fn finish(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        std::mem::take(&mut self.pending)
    }

    /// Earliest-ending occurrence that ends after `from` (older ones were already checked);
    /// ties go to the earliest start. Returns (byte start in `hay`, index in `stops`).
    fn first_match(&self, hay: &str, from: usize) -> Option<(usize, usize)> {
        let mut best: Option<(usize, usize, usize)> = None; // (end, start, stop)
        for (i, s) in self.stops.iter().enumerate() {
            // Only occurrences that end inside the new text; start the search early enough.
            let mut at = from.saturating_sub(s.len() - 1);
            while !hay.is_char_boundary(at) {
                at -= 1;
            }
            if let Some(pos) = hay[at..].find(s.as_str()) {
                let start = at + pos;
                let cand = (start + s.len(), start, i);
                if best.is_none_or(|b| (cand.0, cand.1) < (b.0, b.1)) {
                    best = Some(cand);
                }
            }
        }
        best.map(|(_, start, i)| (start, i))
    }

    /// Length of the longest tail of `pending` that is a proper prefix of some stop string.
    fn held_back_len(&self) -> usize {
        let mut keep = 0;
        for s in &self.stops {
            for k in (keep + 1..s.len()).rev() {
                if s.is_char_boundary(k) && self.pending.ends_with(&s[..k]) {
                    keep = k;
                    break;
                }
            }
        }
        keep
    }

    fn remember(&mut self, emitted: &str) {
        let max = self.stops.iter().map(String::len).max().unwrap_or(1);
        self.tail.push_str(emitted);
        if self.tail.len() >= max {
            let mut cut = self.tail.len() - (max - 1);
            while !self.tail.is_char_boundary(cut) {
                cut -= 1;
            }
            self.tail.drain(..cut);
        }
    }
}
