//! Prometheus text exposition, written the way vLLM's /metrics page is written.
//!
//! vLLM serves `prometheus_client.generate_latest()`, so a drop-in has to reproduce that
//! library's quirks rather than the OpenMetrics encoder of the Rust `prometheus-client`
//! crate: counters get `# TYPE <name>_total counter` plus a separate `<name>_created`
//! gauge family, label names are sorted inside the braces, and every number is printed the
//! way Python's `floatToGoString` prints it (`3` -> `3.0`, `1796400239.5` ->
//! `1.7964002395e+09`).

use std::fmt::Write as _;

/// `repr(float)` of Python: the shortest digits that round-trip, `.0` on whole numbers, and
/// exponent form outside `[1e-4, 1e16)` with a signed, at least two-digit exponent.
pub(crate) fn py_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    // Rust's `Debug` already picks the shortest round-trip digits and switches to exponent
    // form at the same thresholds as Python; only the exponent spelling differs ("1e16"
    // vs "1e+16", "1e-5" vs "1e-05").
    let s = format!("{x:?}");
    match s.split_once('e') {
        None => s,
        Some((mantissa, exp)) => {
            let exp: i32 = exp
                .parse()
                .expect("Debug of f64 prints an integer exponent");
            let sign = if exp < 0 { '-' } else { '+' };
            format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
        }
    }
}

/// prometheus_client's `floatToGoString`: Python's repr, except that positive numbers with
/// seven or more integer digits switch to exponent form as Go's formatter would.
pub(crate) fn go_float(x: f64) -> String {
    if x == f64::INFINITY {
        return "+Inf".into();
    }
    if x == f64::NEG_INFINITY {
        return "-Inf".into();
    }
    if x.is_nan() {
        return "NaN".into();
    }
    let s = py_float(x);
    match s.find('.') {
        Some(dot) if x > 0.0 && dot > 6 => {
            // All integer digits after the first, then the fraction, become the mantissa;
            // trailing zeros and a bare trailing dot are dropped (Python's rstrip("0.")).
            let mut mantissa = format!("{}.{}{}", &s[..1], &s[1..dot], &s[dot + 1..]);
            let kept = mantissa.trim_end_matches(['0', '.']).len();
            mantissa.truncate(kept);
            format!("{mantissa}e+{:02}", dot - 1)
        }
        _ => s,
    }
}

/// Python's `str(list_of_str)`, for list-valued config labels such as `['0', 'sliding_window']`.
pub(crate) fn py_str_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| py_str_repr(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// Python's `repr(str)` for the printable strings config values hold: single quotes unless
/// the text contains a single quote and no double quote.
fn py_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

pub(crate) fn py_bool(b: bool) -> String {
    if b { "True" } else { "False" }.into()
}

/// A label set; sorted by name when written, as prometheus_client 0.26 does.
pub(crate) type Labels<'a> = Vec<(&'a str, &'a str)>;

/// Accumulates the exposition text.
#[derive(Default)]
pub(crate) struct Writer {
    out: String,
}

impl Writer {
    pub(crate) fn finish(self) -> String {
        self.out
    }

    /// The `# HELP` and `# TYPE` header of one family.
    pub(crate) fn header(&mut self, name: &str, help: &str, kind: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample line: `name{a="x",b="y"} value`.
    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let mut sorted = labels.to_vec();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        self.out.push_str(name);
        if !sorted.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in sorted.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('\n', "\\n")
                    .replace('"', "\\\"");
                let _ = write!(self.out, "{k}=\"{v}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", go_float(value));
    }

    /// A gauge family: header and one sample per label set.
    pub(crate) fn gauge(&mut self, name: &str, help: &str, samples: &[(Labels<'_>, f64)]) {
        self.header(name, help, "gauge");
        for (labels, v) in samples {
            self.sample(name, labels, *v);
        }
    }

    /// A counter as prometheus_client prints it in the text format: the `_total` family,
    /// then a `_created` gauge family with the creation time (unix seconds) of each child.
    pub(crate) fn counter(
        &mut self,
        name: &str,
        help: &str,
        samples: &[(Labels<'_>, f64)],
        created: f64,
    ) {
        let total = format!("{name}_total");
        self.header(&total, help, "counter");
        for (labels, v) in samples {
            self.sample(&total, labels, *v);
        }
        self.created(name, help, samples.iter().map(|(l, _)| l), created);
    }

    /// A histogram: cumulative `_bucket` per bound then `+Inf`, `_count`, `_sum` (only
    /// when the first bound is non-negative, as prometheus_client does), then `_created`.
    pub(crate) fn histogram(
        &mut self,
        name: &str,
        help: &str,
        labels: &Labels<'_>,
        h: &crate::histogram::HistogramSnapshot,
        created: f64,
    ) {
        self.header(name, help, "histogram");
        let bucket = format!("{name}_bucket");
        for (bound, cum) in h.bounds.iter().chain([&f64::INFINITY]).zip(&h.cumulative) {
            let le = go_float(*bound);
            let mut l = labels.clone();
            l.push(("le", &le));
            self.sample(&bucket, &l, *cum as f64);
        }
        self.sample(&format!("{name}_count"), labels, h.count() as f64);
        if h.bounds.first().is_none_or(|b| *b >= 0.0) {
            self.sample(&format!("{name}_sum"), labels, h.sum);
        }
        self.created(name, help, [labels], created);
    }

    fn created<'l>(
        &mut self,
        name: &str,
        help: &str,
        label_sets: impl IntoIterator<Item = &'l Labels<'l>>,
        created: f64,
    ) {
        let created_name = format!("{name}_created");
        self.header(&created_name, help, "gauge");
        for labels in label_sets {
            self.sample(&created_name, labels, created);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_repr_of_floats() {
        assert_eq!(py_float(0.0), "0.0");
        assert_eq!(py_float(1.0), "1.0");
        assert_eq!(py_float(0.9), "0.9");
        assert_eq!(py_float(0.0001), "0.0001");
        assert_eq!(py_float(0.00001), "1e-05");
        assert_eq!(py_float(1.5e16), "1.5e+16");
        assert_eq!(py_float(9999999999999998.0), "9999999999999998.0");
        assert_eq!(py_float(1e100), "1e+100");
        assert_eq!(py_float(-2.5), "-2.5");
    }

    #[test]
    fn go_style_like_prometheus_client() {
        assert_eq!(go_float(3.0), "3.0");
        assert_eq!(go_float(8192.0), "8192.0");
        assert_eq!(go_float(999999.0), "999999.0");
        assert_eq!(go_float(1000000.0), "1e+06");
        assert_eq!(go_float(27242000.0), "2.7242e+07");
        assert_eq!(go_float(1796400378.9085934), "1.7964003789085934e+09");
        assert_eq!(go_float(-1234567.0), "-1234567.0");
        assert_eq!(go_float(f64::INFINITY), "+Inf");
        assert_eq!(go_float(f64::NAN), "NaN");
    }

    #[test]
    fn python_list_repr() {
        assert_eq!(py_str_list(&[]), "[]");
        assert_eq!(
            py_str_list(&["0".into(), "sliding_window".into()]),
            "['0', 'sliding_window']"
        );
        assert_eq!(py_str_list(&["it's".into()]), "[\"it's\"]");
    }

    #[test]
    fn labels_sorted_and_escaped() {
        let mut w = Writer::default();
        w.sample("m", &[("model_name", "a\"b\\c\nd"), ("engine", "0")], 1.0);
        assert_eq!(
            w.finish(),
            "m{engine=\"0\",model_name=\"a\\\"b\\\\c\\nd\"} 1.0\n"
        );
    }
}
