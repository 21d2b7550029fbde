//! vLLM's human-readable integers (`16k`, `1M`, ...).

/// vLLM's human-readable integers for `--max-model-len`, `--max-num-batched-tokens`,
/// `--kv-cache-memory-bytes` and the like: a plain integer, or a number with a suffix, where
/// lower-case `k`/`m`/`g`/`t` multiply by 1000, 1000², 1000³, 1000⁴ (decimals allowed:
/// `25.6k` = 25600, truncated as vLLM's `int(float(n) * mult)`), and upper-case `K`/`M`/`G`/`T`
/// by 1024, 1024², 1024³, 1024⁴ (whole numbers only: `1K` = 1024).
pub(super) fn parse_human_int(s: &str) -> Result<usize, String> {
    let v = s.trim();
    let bad = || {
        format!(
            "invalid integer {s:?}: vLLM takes a plain integer or one with a suffix, k/m/g/t \
             (x1000) or K/M/G/T (x1024), e.g. 16k, 25.6k, 2M"
        )
    };
    if let Some(suffix) = v.chars().last().filter(|c| "kKmMgGtT".contains(*c)) {
        let number = &v[..v.len() - 1]; // the suffix is one ASCII byte
        if is_decimal(number) {
            let power = match suffix.to_ascii_lowercase() {
                'k' => 1,
                'm' => 2,
                'g' => 3,
                _ => 4,
            };
            if suffix.is_ascii_lowercase() {
                let x: f64 = number.parse().map_err(|_| bad())?;
                let product = x * 1000f64.powi(power);
                // `as` truncates toward zero like Python's int(); refuse what does not fit.
                if !(product.is_finite() && product < usize::MAX as f64) {
                    return Err(format!("{s:?} is too large"));
                }
                return Ok(product as usize);
            }
            if number.contains('.') {
                return Err(format!(
                    "invalid integer {s:?}: decimals are not allowed with binary suffixes like \
                     {suffix}; did you mean {number}{}?",
                    suffix.to_ascii_lowercase()
                ));
            }
            let n: usize = number.parse().map_err(|_| format!("{s:?} is too large"))?;
            return n
                .checked_mul(1usize << (10 * power))
                .ok_or_else(|| format!("{s:?} is too large"));
        }
    }
    parse_python_int(v).ok_or_else(bad).and_then(|n| {
        usize::try_from(n).map_err(|_| format!("invalid value {s:?}: must not be negative"))
    })
}

/// `\d+(\.\d+)?`, ASCII digits.
fn is_decimal(s: &str) -> bool {
    let mut parts = s.splitn(2, '.');
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let whole = parts.next().is_some_and(digits);
    whole && parts.next().is_none_or(digits)
}

/// Python's `int(str)` for base 10: a sign, then digits with single underscores between them.
pub(super) fn parse_python_int(s: &str) -> Option<i128> {
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    {
        return None;
    }
    let n: i128 = digits.replace('_', "").parse().ok()?;
    Some(if negative { -n } else { n })
}
