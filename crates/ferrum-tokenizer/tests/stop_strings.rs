//! Stop strings over streamed text (vLLM semantics): output truncated at the first stop string
//! (excluded unless asked), and nothing that might be the start of a stop string is emitted
//! before it is known not to be one.

use ferrum_tokenizer::{StopCheck, StopStrings};

fn stops(s: &[&str], include: bool) -> StopStrings {
    StopStrings::new(s.iter().map(|s| s.to_string()).collect(), include)
}

/// Feeds deltas; returns (all emitted text incl. finish, whether it stopped, per-push texts).
fn run(m: &mut StopStrings, deltas: &[&str]) -> (String, bool, Vec<String>) {
    let mut out = Vec::new();
    let mut stopped = false;
    for d in deltas {
        let StopCheck { text, stopped: s } = m.push(d);
        out.push(text);
        if s {
            stopped = true;
            break;
        }
    }
    let mut all = out.concat();
    if !stopped {
        all += &m.finish();
    }
    (all, stopped, out)
}

#[test]
fn stop_at_the_very_start() {
    let mut m = stops(&["Hello"], false);
    let (all, stopped, _) = run(&mut m, &["Hello world"]);
    assert_eq!((all.as_str(), stopped), ("", true));
    assert_eq!(m.matched(), Some("Hello"));
    // Nothing after stopping.
    assert_eq!(
        m.push("more"),
        StopCheck {
            text: String::new(),
            stopped: true
        }
    );
    assert_eq!(m.finish(), "");
}

#[test]
fn stop_string_split_across_deltas_never_leaks() {
    let mut m = stops(&["</answer>"], false);
    let (all, stopped, pieces) = run(&mut m, &["The result is 4", "</ans", "wer> trailing"]);
    assert!(stopped);
    assert_eq!(all, "The result is 4");
    assert_eq!(pieces, vec!["The result is 4", "", ""]);
}

#[test]
fn held_back_text_is_released_when_it_is_not_a_stop() {
    let mut m = stops(&["STOP"], false);
    let (_, _, pieces) = run(&mut m, &["abc ST", "OP"]);
    assert_eq!(pieces, vec!["abc ", ""]); // "ST" held, then the stop completes
    let mut m = stops(&["STOP"], false);
    let (all, stopped, pieces) = run(&mut m, &["abc ST", "ART here"]);
    assert!(!stopped);
    assert_eq!(pieces, vec!["abc ", "START here"]);
    assert_eq!(all, "abc START here");
}

#[test]
fn held_back_text_is_flushed_at_finish() {
    let mut m = stops(&["<|end|>"], false);
    assert_eq!(m.push("done <|e").text, "done ");
    assert_eq!(m.finish(), "<|e");
}

#[test]
fn include_stop_str_in_output() {
    let mut m = stops(&["</answer>"], true);
    let (all, stopped, pieces) = run(&mut m, &["x = 4</ans", "wer> and more"]);
    assert!(stopped);
    assert_eq!(all, "x = 4</answer>");
    // Included stop strings need no hiding: text goes out at once.
    assert_eq!(pieces[0], "x = 4</ans");
}

#[test]
fn first_occurrence_wins_among_overlapping_candidates() {
    // "bc" ends before "abcd" could complete: it is the first stop string seen.
    for deltas in [&["abcd"][..], &["a", "b", "c", "d"], &["ab", "cd"]] {
        let mut m = stops(&["abcd", "bc"], false);
        let (all, stopped, _) = run(&mut m, deltas);
        assert_eq!((all.as_str(), stopped), ("a", true), "{deltas:?}");
        assert_eq!(m.matched(), Some("bc"));
    }
    // Same end: the one that starts first (the longer) wins, however the text is cut.
    for deltas in [&["xab"][..], &["x", "a", "b"]] {
        let mut m = stops(&["b", "ab"], true);
        let (all, _, _) = run(&mut m, deltas);
        assert_eq!(all, "xab", "{deltas:?}");
        assert_eq!(m.matched(), Some("ab"));
        let mut m = stops(&["b", "ab"], false);
        assert_eq!(run(&mut m, deltas).0, "x", "{deltas:?}");
    }
}

#[test]
fn longest_partial_prefix_is_held() {
    // "aab" ends with both "ab" (prefix of "abc") and "aab" (prefix of "aabx"): hold the longer.
    let mut m = stops(&["abc", "aabx"], false);
    assert_eq!(m.push("zaab").text, "z");
    let c = m.push("x!");
    assert_eq!(
        c,
        StopCheck {
            text: String::new(),
            stopped: true
        }
    );
}

#[test]
fn multibyte_text_and_stops() {
    let mut m = stops(&["。终"], false);
    let (all, stopped, pieces) = run(&mut m, &["你好", "。", "终了"]);
    assert!(stopped);
    assert_eq!(all, "你好");
    assert_eq!(pieces, vec!["你好", "", ""]);
}

#[test]
fn no_stops_passes_everything_through() {
    let mut m = stops(&["", ""], false);
    assert!(m.is_empty());
    assert_eq!(run(&mut m, &["a", "b"]).0, "ab");
}

#[test]
fn random_cuts_agree_with_whole_text() {
    // Whatever the delta boundaries, the result equals processing the text in one piece.
    let text = "one two <stop> three </s> four";
    let stop_sets: &[&[&str]] = &[&["<stop>"], &["</s>", "two <"], &["o t", "wo"], &["zzz"]];
    for stop_set in stop_sets {
        for include in [false, true] {
            let whole = run(&mut stops(stop_set, include), &[text]).0;
            for cut in 1..text.len() {
                let (a, b) = text.split_at(cut);
                let mut m = stops(stop_set, include);
                assert_eq!(run(&mut m, &[a, b]).0, whole, "{stop_set:?} cut {cut}");
            }
            let chars: Vec<String> = text.chars().map(String::from).collect();
            let refs: Vec<&str> = chars.iter().map(String::as_str).collect();
            assert_eq!(run(&mut stops(stop_set, include), &refs).0, whole);
        }
    }
}
