//! Small string helpers shared by the parsers.
//!
//! vLLM's parsers are Python, so "whitespace" in their `str.strip()`,
//! `str.lstrip()` and regex `\s` means Python's `str.isspace()`; these helpers
//! reproduce that definition so trimming decisions match byte for byte.

/// Python's `str.isspace()` for one character.
///
/// Rust's `char::is_whitespace` (Unicode White_Space) agrees with Python except
/// for U+001C..U+001F, which Python counts as whitespace (bidi class B/S).
pub(crate) fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `s.strip()` with no argument.
pub(crate) fn py_strip(s: &str) -> &str {
    s.trim_matches(py_isspace)
}

/// Python's `s.lstrip()` with no argument.
pub(crate) fn py_lstrip(s: &str) -> &str {
    s.trim_start_matches(py_isspace)
}

/// Length in bytes of the longest suffix of `text` that is a proper prefix of
/// `tag`. Streaming parsers hold back exactly this many bytes, because the
/// next delta may complete the tag (vLLM's `partial_tag_overlap`).
pub(crate) fn partial_overlap(text: &str, tag: &str) -> usize {
    let max = tag.len().saturating_sub(1).min(text.len());
    (1..=max)
        .rev()
        .find(|&n| {
            let start = text.len() - n;
            text.is_char_boundary(start) && tag.as_bytes().starts_with(&text.as_bytes()[start..])
        })
        .unwrap_or(0)
}

/// `text.find(pat)` starting at byte `from` (which must be a char boundary),
/// returning an absolute byte index.
pub(crate) fn find_from(text: &str, pat: &str, from: usize) -> Option<usize> {
    text.get(from..)?.find(pat).map(|i| i + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_finds_longest_tag_prefix() {
        assert_eq!(partial_overlap("abc<tool_c", "<tool_call>"), 7);
        assert_eq!(partial_overlap("abc<", "<tool_call>"), 1);
        assert_eq!(partial_overlap("abc", "<tool_call>"), 0);
        // A complete tag is not a *proper* prefix: the caller finds it instead.
        assert_eq!(partial_overlap("<a>", "<a>"), 0);
        assert_eq!(partial_overlap("<a><", "<a>"), 1);
        assert_eq!(partial_overlap("é<", "</think>"), 1);
    }

    #[test]
    fn python_whitespace() {
        assert!(py_isspace('\u{1f}'));
        assert!(py_isspace('\u{a0}'));
        assert!(!py_isspace('\u{200b}'));
        assert_eq!(py_strip("\u{1c} a \n"), "a");
        assert_eq!(py_lstrip("\t a "), "a ");
    }
}
