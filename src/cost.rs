//! Prices per model and resolution class, for spend estimates and `--max-cost`.
//!
//! The prices are the catalogue's (`catalog.toml`, online and batch); `--price
//! MODEL:RES=USD` adds or overrides an online price, `--price MODEL:RES:batch=USD` a batch
//! one. A model is matched by its exact name, an alias, or
//! as the last `/` segment of an aggregator's name (`google/gemini-3-pro-image`). Failed
//! calls are not counted: providers do not bill them.

use std::fmt;

use crate::catalog::{Catalog, Engine};
use crate::size::Resolution;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Prices {
    /// (model names, engine, class, USD): the catalogue's first, overrides after; later
    /// entries win.
    entries: Vec<(Vec<String>, Engine, Resolution, f64)>,
}

impl Prices {
    /// The catalogue's prices plus `MODEL:RES=USD` (online) and `MODEL:RES:batch=USD`
    /// overrides (RES may be `*` for every class).
    pub fn with_overrides(catalog: &Catalog, overrides: &[String]) -> Result<Prices, String> {
        let mut entries = Vec::new();
        for m in &catalog.models {
            for class in Resolution::ALL {
                let names: Vec<String> = std::iter::once(&m.name).chain(&m.aliases).cloned().collect();
                if let Some(usd) = m.online_price(class) {
                    entries.push((names.clone(), Engine::Online, class, usd));
                }
                if let Some(usd) = m.batch_price(class) {
                    entries.push((names, Engine::Batch, class, usd));
                }
            }
        }
        for spec in overrides {
            let bad = || {
                format!(
                    "--price {spec:?}: write MODEL:RES=USD, e.g. gpt-image-2:1K=0.04 (RES may be *), or \
                     MODEL:RES:batch=USD for the Batch API's price"
                )
            };
            let (key, usd) = spec.rsplit_once('=').ok_or_else(bad)?;
            let (key, engine) = match key.rsplit_once(':') {
                Some((rest, "batch")) => (rest, Engine::Batch),
                Some((rest, "online")) => (rest, Engine::Online),
                _ => (key, Engine::Online),
            };
            let (model, res) = key.rsplit_once(':').ok_or_else(bad)?;
            let usd: f64 = usd.trim().parse().map_err(|_| bad())?;
            if !(usd.is_finite() && usd >= 0.0) || model.trim().is_empty() {
                return Err(bad());
            }
            let classes = match res.trim() {
                "*" => Resolution::ALL.to_vec(),
                r => vec![Resolution::parse(r).ok_or_else(bad)?],
            };
            entries.extend(classes.into_iter().map(|r| (vec![model.trim().to_owned()], engine, r, usd)));
        }
        Ok(Prices { entries })
    }

    /// The price of one image made online, if known.
    pub fn get(&self, model: &str, res: Resolution) -> Option<f64> {
        self.price(Engine::Online, model, res)
    }

    /// The price of one image made by `engine`, if known.
    pub fn price(&self, engine: Engine, model: &str, res: Resolution) -> Option<f64> {
        let model = model.trim_start_matches("models/");
        let base = model.rsplit('/').next().unwrap_or(model);
        self.entries
            .iter()
            .rev()
            .find(|(names, e, r, _)| *e == engine && *r == res && names.iter().any(|m| m == model || m == base))
            .map(|(_, _, _, p)| *p)
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
    fn catalogue_prices_apply_and_overrides_win() {
        let catalog = Catalog::built_in();
        let p = Prices::with_overrides(&catalog, &[]).unwrap();
        let gemini = catalog.default_model(crate::catalog::Dialect::Gemini).unwrap();
        let published = catalog.lookup(gemini).unwrap().online_price(Resolution::K4);
        assert!(published.is_some(), "the catalogue prices its default gemini model");
        assert_eq!(p.get(gemini, Resolution::K4), published);
        assert_eq!(p.get(&format!("google/{gemini}"), Resolution::K4), published);
        assert_eq!(p.get("my-model", Resolution::K1), None);
        let p = Prices::with_overrides(&catalog, &["my-model:1K=0.04".into(), format!("{gemini}:*=0.067")]).unwrap();
        assert_eq!(p.get("my-model", Resolution::K1), Some(0.04));
        assert_eq!(p.get("my-model", Resolution::K2), None);
        assert_eq!(p.get(gemini, Resolution::K4), Some(0.067));
    }

    #[test]
    fn batch_prices_are_their_own() {
        let catalog = Catalog::built_in();
        let gemini = catalog.default_model(crate::catalog::Dialect::Gemini).unwrap();
        let entry = catalog.lookup(gemini).unwrap();
        let p = Prices::with_overrides(&catalog, &[]).unwrap();
        assert_eq!(p.price(Engine::Batch, gemini, Resolution::K1), entry.batch_price(Resolution::K1));
        assert!(p.price(Engine::Batch, gemini, Resolution::K1) < p.get(gemini, Resolution::K1));
        let p = Prices::with_overrides(&catalog, &["m:1K:batch=0.02".into(), "m:1K=0.04".into()]).unwrap();
        assert_eq!(p.price(Engine::Batch, "m", Resolution::K1), Some(0.02));
        assert_eq!(p.get("m", Resolution::K1), Some(0.04));
        assert_eq!(p.price(Engine::Batch, "m", Resolution::K2), None);
    }

    #[test]
    fn bad_price_settings_say_how_to_write_them() {
        for bad in ["m=0.04", "m:8K=1", "m:1K=cheap", "m:1K=-1", ":1K=1"] {
            let e = Prices::with_overrides(&Catalog::built_in(), &[bad.into()]).unwrap_err();
            assert!(e.contains("MODEL:RES=USD"), "{e}");
        }
    }

    #[test]
    fn amounts_show_cents() {
        assert_eq!(Usd(12.345).to_string(), "$12.35");
        assert_eq!(Usd(0.134).to_string(), "$0.134");
    }
}
