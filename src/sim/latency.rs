//! The simulator's latency model, fitted to the published Gemini 3 Pro Image figures
//! (domain.md): P50 / P95 / P99 of 45 / 90 / 150 s at 1K, 65 / 120 / 180 s at 2K and
//! 120 / 170 / 250 s at 4K.
//!
//! The fit: a shifted log-normal, `latency = shift + scale * exp(sigma * Z)` with Z
//! standard normal. Three parameters meet the three published quantiles exactly (a
//! plain log-normal cannot: its P95 and P99 would be 10% off). sigma solves
//! `(e^(z99 sigma) - 1) / (e^(z95 sigma) - 1) = (P99 - P50) / (P95 - P50)`, a ratio that
//! grows with sigma, by bisection; then `scale = (P95 - P50) / (e^(z95 sigma) - 1)` and
//! `shift = P50 - scale`. The shift is the fastest a call can be (36 s, 49 s, 113 s) and
//! the tail is long, as observed under load.

use rand::Rng;
use rand_distr::StandardNormal;

use crate::size::Resolution;

const Z95: f64 = 1.644_853_626_951_472_2;
const Z99: f64 = 2.326_347_874_040_840_8;
/// Samples are drawn with Z capped here (P99.99): the tail stays long but finite.
const Z_CAP: f64 = 3.719;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShiftedLogNormal {
    pub shift: f64,
    pub scale: f64,
    pub sigma: f64,
}

impl ShiftedLogNormal {
    /// The distribution whose P50, P95 and P99 are the given ones. Needs
    /// `p50 < p95 < p99` with a tail at least as long as a normal's: `(p99 - p50) /
    /// (p95 - p50) > z99 / z95` (about 1.41).
    pub fn fit(p50: f64, p95: f64, p99: f64) -> Option<ShiftedLogNormal> {
        let target = (p99 - p50) / (p95 - p50);
        if !(p50 > 0.0 && p95 > p50 && p99 > p95) || target <= Z99 / Z95 {
            return None;
        }
        let ratio = |s: f64| (Z99 * s).exp_m1() / (Z95 * s).exp_m1();
        let (mut lo, mut hi) = (1e-9, 10.0);
        if ratio(hi) < target {
            return None;
        }
        for _ in 0..200 {
            let mid = (lo + hi) / 2.0;
            if ratio(mid) < target { lo = mid } else { hi = mid }
        }
        let sigma = (lo + hi) / 2.0;
        let scale = (p95 - p50) / (Z95 * sigma).exp_m1();
        let shift = p50 - scale;
        (shift >= 0.0).then_some(ShiftedLogNormal { shift, scale, sigma })
    }

    /// The value at standard-normal quantile `z` (0 is P50, 1.645 is P95...).
    pub fn at_z(&self, z: f64) -> f64 {
        self.shift + self.scale * (self.sigma * z).exp()
    }

    /// The mean, for planning: shift + scale * e^(sigma^2 / 2) (the tail cap is ignored).
    pub fn mean(&self) -> f64 {
        self.shift + self.scale * (self.sigma * self.sigma / 2.0).exp()
    }

    pub fn sample(&self, rng: &mut impl Rng) -> f64 {
        let z: f64 = rng.sample(StandardNormal);
        self.at_z(z.min(Z_CAP))
    }
}

/// The published figures, in seconds: (P50, P95, P99). None are published for 512: it
/// takes 1K's.
pub fn published(r: Resolution) -> (f64, f64, f64) {
    match r {
        Resolution::Px512 | Resolution::K1 => (45.0, 90.0, 150.0),
        Resolution::K2 => (65.0, 120.0, 180.0),
        Resolution::K4 => (120.0, 170.0, 250.0),
    }
}

pub fn model(r: Resolution) -> ShiftedLogNormal {
    let (p50, p95, p99) = published(r);
    ShiftedLogNormal::fit(p50, p95, p99).expect("the published figures have a fit")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn the_fit_meets_the_published_quantiles_exactly() {
        for r in Resolution::ALL {
            let (p50, p95, p99) = published(r);
            let m = model(r);
            assert!((m.at_z(0.0) - p50).abs() < 1e-6, "{r}");
            assert!((m.at_z(Z95) - p95).abs() < 1e-6, "{r}");
            assert!((m.at_z(Z99) - p99).abs() < 1e-6, "{r}");
        }
    }

    #[test]
    fn a_large_sample_matches_the_table_within_ten_percent() {
        let mut rng = StdRng::seed_from_u64(42);
        for r in Resolution::ALL {
            let m = model(r);
            let mut xs: Vec<f64> = (0..200_000).map(|_| m.sample(&mut rng)).collect();
            xs.sort_by(f64::total_cmp);
            let q = |p: f64| xs[((p * xs.len() as f64).ceil() as usize).saturating_sub(1)];
            let (p50, p95, p99) = published(r);
            for (got, want) in [(q(0.50), p50), (q(0.95), p95), (q(0.99), p99)] {
                assert!((got - want).abs() / want < 0.10, "{r}: sample {got:.1}s vs published {want}s");
            }
        }
    }

    #[test]
    fn impossible_targets_have_no_fit() {
        assert!(ShiftedLogNormal::fit(10.0, 5.0, 20.0).is_none());
        assert!(ShiftedLogNormal::fit(10.0, 20.0, 21.0).is_none(), "tail shorter than a normal's");
    }
}
