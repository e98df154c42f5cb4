//! The API key: read from the environment only, never printed, masked in any text that
//! might echo it back (providers quote the key in some error messages).

use std::fmt;

#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    /// Reads the key from the named variable; `None` when unset or blank.
    pub fn from_env(var: &str) -> Option<ApiKey> {
        std::env::var(var).ok().map(|k| k.trim().to_owned()).filter(|k| !k.is_empty()).map(ApiKey)
    }

    /// The key itself, for the one place that needs it: the request header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the key replaced.
    pub fn mask(&self, text: &str) -> String {
        if self.0.len() < 4 {
            // A key this short would mask ordinary words; such a key is not real.
            return text.to_owned();
        }
        text.replace(&self.0, "[api key]")
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([api key])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_never_shows_in_debug_or_masked_text() {
        let key = ApiKey::new("sk-secret-123456");
        assert!(!format!("{key:?}").contains("secret"));
        let masked = key.mask("Incorrect API key provided: sk-secret-123456. See docs.");
        assert_eq!(masked, "Incorrect API key provided: [api key]. See docs.");
    }
}
