//! Prices per model and resolution class, for spend estimates and `--max-cost`.
//!
//! Built-in prices are only the published ones in domain.md (Gemini 3 Pro Image: $0.134
//! per 1K or 2K image, $0.24 per 4K image); `--price MODEL:RES=USD` adds or overrides.
//! A model is matched by its exact name or as the last `/` segment of an aggregator's
//! name (`google/gemini-3-pro-image-preview`). Failed calls are not counted: providers do
//! not bill them.

use std::fmt;

use crate::size::Resolution;

const BUILT_IN: [(&str, Resolution, f64); 3] = [
    ("gemini-3-pro-image-preview", Resolution::K1, 0.134),
    ("gemini-3-pro-image-preview", Resolution::K2, 0.134),
    ("gemini-3-pro-image-preview", Resolution::K4, 0.24),
];

#[derive(Debug, Clone, PartialEq)]
pub struct Prices {
    /// Later entries win.
    entries: Vec<(String, Resolution, f64)>,
}

impl Prices {
    /// The built-in prices plus `MODEL:RES=USD` overrides (RES may be `*` for every class).
    pub fn with_overrides(overrides: &[String]) -> Result<Prices, String> {
        let mut entries: Vec<_> = BUILT_IN.iter().map(|(m, r, p)| (m.to_string(), *r, *p)).collect();
        for spec in overrides {
            let bad = || format!("--price {spec:?}: write MODEL:RES=USD, e.g. gpt-image-1:1K=0.04 (RES may be *)");
            let (key, usd) = spec.rsplit_once('=').ok_or_else(bad)?;
            let (model, res) = key.rsplit_once(':').ok_or_else(bad)?;
            let usd: f64 = usd.trim().parse().map_err(|_| bad())?;
            if !(usd.is_finite() && usd >= 0.0) || model.trim().is_empty() {
                return Err(bad());
            }
            let classes = match res.trim() {
                "*" => Resolution::ALL.to_vec(),
                r => vec![Resolution::parse(r).ok_or_else(bad)?],
            };
            entries.extend(classes.into_iter().map(|r| (model.trim().to_owned(), r, usd)));
        }
        Ok(Prices { entries })
    }

    /// The price of one image, if known.
    pub fn get(&self, model: &str, res: Resolution) -> Option<f64> {
        let base = model.rsplit('/').next().unwrap_or(model);
        self.entries.iter().rev().find(|(m, r, _)| *r == res && (m == model || m == base)).map(|(_, _, p)| *p)
    }
}

/// A dollar amount, shown with cents (or finer below a dollar).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Usd(pub f64);

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 1.0 { write!(f, "${:.3}", self.0) } else { write!(f, "${:.2}", self.0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_prices_are_built_in_and_overrides_win() {
        let p = Prices::with_overrides(&[]).unwrap();
        assert_eq!(p.get("gemini-3-pro-image-preview", Resolution::K2), Some(0.134));
        assert_eq!(p.get("google/gemini-3-pro-image-preview", Resolution::K4), Some(0.24));
        assert_eq!(p.get("gpt-image-1", Resolution::K1), None);
        let p = Prices::with_overrides(&["gpt-image-1:1K=0.04".into(), "gemini-3-pro-image-preview:*=0.067".into()])
            .unwrap();
        assert_eq!(p.get("gpt-image-1", Resolution::K1), Some(0.04));
        assert_eq!(p.get("gpt-image-1", Resolution::K2), None);
        assert_eq!(p.get("gemini-3-pro-image-preview", Resolution::K4), Some(0.067));
    }

    #[test]
    fn bad_price_settings_say_how_to_write_them() {
        for bad in ["gpt-image-1=0.04", "gpt-image-1:8K=1", "m:1K=cheap", "m:1K=-1", ":1K=1"] {
            let e = Prices::with_overrides(&[bad.into()]).unwrap_err();
            assert!(e.contains("MODEL:RES=USD"), "{e}");
        }
    }

    #[test]
    fn amounts_show_cents() {
        assert_eq!(Usd(12.345).to_string(), "$12.35");
        assert_eq!(Usd(0.134).to_string(), "$0.134");
    }
}
