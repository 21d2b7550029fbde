//! Rotary position embedding: neox (rotate-half, Hugging Face layout) and interleaved (adjacent
//! pairs, the layout llama.cpp's converter gives Llama's q/k weights in GGUF), with Llama-3
//! frequency scaling or explicit per-frequency factors (GGUF's `rope_freqs.weight`).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    Neox,
    Interleaved,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    /// Llama-3.1's `rope_type: "llama3"`.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
    /// Divide each inverse frequency by the given factor (GGUF `rope_freqs.weight`).
    FreqFactors(Vec<f32>),
}

#[derive(Clone, Debug)]
pub struct Rope {
    pub head_dim: usize,
    pub rotary_dim: usize,
    pub style: RopeStyle,
    inv_freq: Vec<f64>,
}

impl Rope {
    pub fn new(
        head_dim: usize,
        rotary_dim: usize,
        theta: f64,
        scaling: &RopeScaling,
        style: RopeStyle,
    ) -> Rope {
        let half = rotary_dim / 2;
        let mut inv_freq: Vec<f64> = (0..half)
            .map(|i| 1.0 / theta.powf((2 * i) as f64 / rotary_dim as f64))
            .collect();
        match scaling {
            RopeScaling::None => {}
            RopeScaling::FreqFactors(f) => {
                for (x, s) in inv_freq.iter_mut().zip(f) {
                    *x /= *s as f64;
                }
            }
            &RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old,
            } => {
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                for f in inv_freq.iter_mut() {
                    let wavelen = 2.0 * std::f64::consts::PI / *f;
                    if wavelen > low_wavelen {
                        *f /= factor;
                    } else if wavelen >= high_wavelen {
                        let smooth = (old / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        *f = (1.0 - smooth) * *f / factor + smooth * *f;
                    }
                }
            }
        }
        Rope {
            head_dim,
            rotary_dim,
            style,
            inv_freq,
        }
    }

    /// The inverse frequency of each rotated pair, scaling applied (a GPU computes its angles
    /// from these).
    pub fn inv_freq(&self) -> &[f64] {
        &self.inv_freq
    }

    /// Rotates `x` (tokens × n_heads × head_dim) in place, token `t` at `positions[t]`.
    pub fn apply(&self, x: &mut [f32], n_heads: usize, positions: &[usize]) {
        let hd = self.head_dim;
        let half = self.rotary_dim / 2;
        for (t, &pos) in positions.iter().enumerate() {
            let (sin, cos): (Vec<f32>, Vec<f32>) = self
                .inv_freq
                .iter()
                .map(|f| {
                    let (s, c) = (pos as f64 * f).sin_cos();
                    (s as f32, c as f32)
                })
                .unzip();
            for h in 0..n_heads {
                let v = &mut x[(t * n_heads + h) * hd..][..hd];
                for i in 0..half {
                    let (a, b) = match self.style {
                        RopeStyle::Neox => (i, i + half),
                        RopeStyle::Interleaved => (2 * i, 2 * i + 1),
                    };
                    let (x0, x1) = (v[a], v[b]);
                    v[a] = x0 * cos[i] - x1 * sin[i];
                    v[b] = x1 * cos[i] + x0 * sin[i];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_preserves_pairs_and_position_zero_is_identity() {
        let rope = Rope::new(8, 8, 10000.0, &RopeScaling::None, RopeStyle::Neox);
        let orig: Vec<f32> = (0..16).map(|i| i as f32 * 0.1 - 0.5).collect();
        let mut x = orig.clone();
        rope.apply(&mut x, 1, &[0, 3]);
        assert_eq!(&x[..8], &orig[..8]);
        // pair (i, i+4) at position 3 rotates by angle 3·θ^(-2i/8)
        for i in 0..4 {
            let ang = 3.0 * 10000f64.powf(-(2.0 * i as f64) / 8.0);
            let (a, b) = (orig[8 + i] as f64, orig[12 + i] as f64);
            assert!((x[8 + i] as f64 - (a * ang.cos() - b * ang.sin())).abs() < 1e-6);
            assert!((x[12 + i] as f64 - (b * ang.cos() + a * ang.sin())).abs() < 1e-6);
        }
    }

    #[test]
    fn llama3_scaling_matches_hand_values() {
        // Llama-3.1 parameters; the lowest frequency is divided by the full factor, the highest kept.
        let s = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192.0,
        };
        let plain = Rope::new(128, 128, 500000.0, &RopeScaling::None, RopeStyle::Neox);
        let scaled = Rope::new(128, 128, 500000.0, &s, RopeStyle::Neox);
        assert_eq!(scaled.inv_freq[0], plain.inv_freq[0]);
        assert!((scaled.inv_freq[63] - plain.inv_freq[63] / 8.0).abs() < 1e-18);
    }
}
