//! Request arrival times, as vLLM's `get_request` draws them: with a finite rate, each
//! interval is Gamma(shape = burstiness, scale = 1 / (rate * burstiness)), so the mean
//! interval is 1 / rate for any burstiness (burstiness 1 is the Poisson process's
//! exponential intervals; lower is burstier, higher more uniform).

use rand::Rng;

/// One interval per request before vLLM's rescaling: 0 for an infinite rate, exactly
/// 1 / rate for infinite burstiness, else a Gamma draw.
pub fn request_intervals<R: Rng>(n: usize, rate: f64, burstiness: f64, rng: &mut R) -> Vec<f64> {
    assert!(burstiness > 0.0, "burstiness must be positive");
    assert!(rate > 0.0, "request rate must be positive");
    (0..n)
        .map(|_| {
            if rate.is_infinite() {
                0.0
            } else if burstiness.is_infinite() {
                1.0 / rate
            } else {
                sample_gamma(rng, burstiness, 1.0 / (rate * burstiness))
            }
        })
        .collect()
}

/// Send times in seconds from the start, one per request: the running sum of the
/// intervals, rescaled (when not all zero) so the last request goes out at exactly
/// `n / rate` — vLLM does this to keep throughput numbers stable across seeds.
pub fn arrival_offsets<R: Rng>(n: usize, rate: f64, burstiness: f64, rng: &mut R) -> Vec<f64> {
    let mut t = request_intervals(n, rate, burstiness, rng);
    for i in 1..t.len() {
        t[i] += t[i - 1];
    }
    if let Some(&last) = t.last()
        && last != 0.0
    {
        let factor = (n as f64 / rate) / last;
        for x in &mut t {
            *x *= factor;
        }
    }
    t
}

/// A Gamma(shape, scale) draw: Marsaglia & Tsang's squeeze method for shape >= 1, boosted
/// by U^(1/shape) below 1; shape 1 is an exponential draw by inversion.
pub fn sample_gamma<R: Rng>(rng: &mut R, shape: f64, scale: f64) -> f64 {
    if shape == 1.0 {
        return -open01(rng).ln() * scale;
    }
    if shape < 1.0 {
        let boost = open01(rng).powf(1.0 / shape);
        return sample_gamma(rng, shape + 1.0, scale) * boost;
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = standard_normal(rng);
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u = open01(rng);
        let x2 = x * x;
        if u < 1.0 - 0.0331 * x2 * x2 || u.ln() < 0.5 * x2 + d * (1.0 - v + v.ln()) {
            return d * v * scale;
        }
    }
}

/// Uniform in (0, 1], so logarithms stay finite.
fn open01<R: Rng>(rng: &mut R) -> f64 {
    1.0 - rng.random::<f64>()
}

/// Box–Muller (one of the pair is enough here).
fn standard_normal<R: Rng>(rng: &mut R) -> f64 {
    let u1 = open01(rng);
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
