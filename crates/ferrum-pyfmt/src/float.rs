//! Python's spelling of floats.

/// Python's `repr(float)` (also `str(float)`): the shortest round-tripping digits, positional
/// for decimal exponents in [-4, 16), otherwise `d.ddde+XX` with a signed, at-least-two-digit
/// exponent; always a fraction or an exponent (`10.0`, not `10`); `nan`, `inf`, `-inf`.
pub fn float_repr(f: f64) -> String {
    spell(f, ["nan", "inf", "-inf"])
}

/// A float as `json.dumps` writes it (`allow_nan=True`): `repr` when finite, otherwise
/// `NaN`, `Infinity` or `-Infinity`. Also how `json.dumps` turns a float dict key into a string.
pub fn json_float(f: f64) -> String {
    spell(f, ["NaN", "Infinity", "-Infinity"])
}

/// `repr` of a finite float; `[nan, inf, -inf]` are the spellings of the others.
fn spell(f: f64, [nan, inf, neg_inf]: [&str; 3]) -> String {
    if f.is_nan() {
        return nan.into();
    }
    if f.is_infinite() {
        return if f > 0.0 { inf } else { neg_inf }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` gives the same shortest round-tripping digits Python uses.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` exponent is an integer");
    let sign = if f < 0.0 { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
        let point = exp + 1; // digits before the decimal point
        if point <= 0 {
            let zeros = "0".repeat((-point) as usize);
            format!("{sign}0.{zeros}{digits}")
        } else {
            let point = point as usize;
            if digits.len() <= point {
                let zeros = "0".repeat(point - digits.len());
                format!("{sign}{digits}{zeros}.0")
            } else {
                format!("{sign}{}.{}", &digits[..point], &digits[point..])
            }
        }
    } else {
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (1.0, "1.0"),
            (10.0, "10.0"),
            (1.5, "1.5"),
            (-2.5, "-2.5"),
            (-2.25, "-2.25"),
            (0.1, "0.1"),
            (2.71, "2.71"),
            (123.456, "123.456"),
            (100000.0, "100000.0"),
            (123456789012345.6, "123456789012345.6"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1.5e20, "1.5e+20"),
            (1e100, "1e+100"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.2345e-7, "1.2345e-07"),
            (-2.5e-7, "-2.5e-07"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ];
        for (f, want) in cases {
            assert_eq!(float_repr(f), want, "{f:e}");
        }
    }

    #[test]
    fn json_float_spells_non_finite_as_json_dumps() {
        assert_eq!(json_float(f64::NAN), "NaN");
        assert_eq!(json_float(f64::INFINITY), "Infinity");
        assert_eq!(json_float(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(json_float(1e-5), "1e-05");
        assert_eq!(json_float(-0.0), "-0.0");
    }
}
