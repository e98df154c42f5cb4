//! The API key: read from the environment only, never printed, masked in any text that
//! might echo it back (providers quote the key in some error messages).
//!
//! Masking cannot be forgotten where text is made: every key this process holds is
//! registered here when its [`ApiKey`] is made, and every text that is cut short (error
//! messages, body snippets) goes through [`cut`], which masks *before* it cuts and then
//! masks what a cut through a key may leave at the end. A key cut in two is no longer the
//! key, so masking after a cut would let its first part through.

use std::fmt;
use std::sync::RwLock;

/// What stands in for the key.
const MASK: &str = "[api key]";
/// The shortest part of a key that counts as a leak when a cut goes through it: shorter
/// parts are as likely to be ordinary words, and guessing the rest of a 32-character key
/// from 7 of them is still out of reach.
pub const MIN_PARTIAL: usize = 8;
/// Keys shorter than this are not masked at all: such a key would mask ordinary words,
/// and it is not a real key.
const MIN_KEY: usize = 4;

/// Every key made in this process: texts are masked against all of them.
static KEYS: RwLock<Vec<String>> = RwLock::new(Vec::new());

#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// A key, registered so that every error text made from now on masks it.
    pub fn new(key: impl Into<String>) -> ApiKey {
        let key = key.into();
        register(&key);
        ApiKey(key)
    }

    /// Reads the key from the named variable; `None` when unset or blank.
    pub fn from_env(var: &str) -> Option<ApiKey> {
        std::env::var(var).ok().map(|k| k.trim().to_owned()).filter(|k| !k.is_empty()).map(ApiKey::new)
    }

    /// The key itself, for the one place that needs it: the request header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the key replaced.
    pub fn mask(&self, text: &str) -> String {
        mask_one(&self.0, text)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([api key])")
    }
}

fn register(key: &str) {
    if key.len() < MIN_KEY {
        return;
    }
    let mut keys = KEYS.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !keys.iter().any(|k| k == key) {
        keys.push(key.to_owned());
    }
}

fn with_keys<T>(f: impl FnOnce(&[String]) -> T) -> T {
    f(&KEYS.read().unwrap_or_else(|poisoned| poisoned.into_inner()))
}

fn mask_one(key: &str, text: &str) -> String {
    if key.len() < MIN_KEY { text.to_owned() } else { text.replace(key, MASK) }
}

/// `text` with every occurrence of every key of this process replaced.
pub fn mask(text: &str) -> String {
    with_keys(|keys| {
        let mut text = text.to_owned();
        for key in keys {
            if text.contains(key.as_str()) {
                text = text.replace(key.as_str(), MASK);
            }
        }
        text
    })
}

/// `text` masked, then cut to at most `max` bytes (on a char boundary) with `…` after it
/// when anything was cut. A cut through a key leaves no part of it of [`MIN_PARTIAL`] or
/// more bytes at the end: that part is masked too.
pub fn cut(text: &str, max: usize) -> String {
    let mut text = mask(text);
    if text.len() <= max {
        return text;
    }
    let mut at = max;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    // A cut through a mask goes before it: "[api k…" would look like a broken text.
    if let Some(n) = (1..MASK.len()).find(|&n| text[..at].ends_with(&MASK[..n]) && text[at - n..].starts_with(MASK)) {
        at -= n;
    }
    text.truncate(at);
    with_keys(|keys| mask_cut_end(&mut text, keys));
    text.push('…');
    text
}

/// The start of `bytes` as text, at most `max` bytes of it, masked before the cut (the
/// window read is longer than `max` by the longest key, so a key that straddles the cut
/// is seen whole).
pub fn cut_bytes(bytes: &[u8], max: usize) -> String {
    let longest = with_keys(|keys| keys.iter().map(String::len).max().unwrap_or(0));
    let window = &bytes[..bytes.len().min(max.saturating_add(longest))];
    cut(&String::from_utf8_lossy(window), max)
}

/// Replaces the longest start of a key (of [`MIN_PARTIAL`] bytes or more) that `text`
/// ends with: what is left of a key a cut went through.
fn mask_cut_end(text: &mut String, keys: &[String]) {
    for key in keys {
        let key = key.as_bytes();
        let longest = (MIN_PARTIAL..key.len()).rev().find(|&n| text.as_bytes().ends_with(&key[..n]));
        if let Some(n) = longest {
            // The matched bytes start where the key starts, on a char boundary.
            let start = text.len() - n;
            if text.is_char_boundary(start) {
                text.truncate(start);
                text.push_str(MASK);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: &str = "sk-unit-Zq8Lr2Vx6Tn4Pw1Yb9Hc3Jd5Kf7Gm0";

    /// Whether `text` holds any `MIN_PARTIAL`-byte piece of `key`.
    fn holds_part_of(text: &str, key: &str) -> bool {
        key.as_bytes().windows(MIN_PARTIAL).any(|w| text.as_bytes().windows(MIN_PARTIAL).any(|t| t == w))
    }

    #[test]
    fn the_key_never_shows_in_debug_or_masked_text() {
        let key = ApiKey::new("sk-secret-123456");
        assert!(!format!("{key:?}").contains("secret"));
        let masked = key.mask("Incorrect API key provided: sk-secret-123456. See docs.");
        assert_eq!(masked, "Incorrect API key provided: [api key]. See docs.");
        assert_eq!(mask("again: sk-secret-123456"), "again: [api key]");
    }

    #[test]
    fn a_cut_through_the_key_leaves_no_part_of_it() {
        let _key = ApiKey::new(LONG);
        // The key straddles the cut at every offset from "all but one byte before the
        // cut" to "all but one byte after it".
        for before in 1..LONG.len() {
            let text =
                format!("{}{LONG} and more text after it, more than a mask makes up for", "x".repeat(100 - before));
            let cut = cut(&text, 100);
            assert!(!holds_part_of(&cut, LONG), "{before}: {cut}");
            assert!(cut.len() <= 100 + MASK.len() + '…'.len_utf8(), "{before}: {cut}");
            assert!(cut.ends_with('…'), "{before}: {cut}");
            // Never half a mask.
            assert!(!cut.contains("[api k…") && !cut.contains("[…"), "{before}: {cut}");
        }
        // A key whole before the cut is masked like any other, and the text is kept.
        let cut_after = cut(&format!("key {LONG} {}", "y".repeat(200)), 100);
        assert!(cut_after.starts_with("key [api key] yyy") && !holds_part_of(&cut_after, LONG), "{cut_after}");
        // Nothing to cut: only masked.
        assert_eq!(cut(&format!("a {LONG} b"), 500), "a [api key] b");
        // A part of a key that was in the text already (a server that cut its own echo)
        // is masked when the cut ends with it.
        let part = &LONG[..20];
        assert_eq!(cut(&format!("{}{part} tail", "z".repeat(80)), 100), format!("{}[api key]…", "z".repeat(80)));
        // Fewer than MIN_PARTIAL bytes of a key at the cut are ordinary text.
        assert_eq!(cut(&format!("{}{} tail", "z".repeat(93), &LONG[..10]), 100), format!("{}sk-unit…", "z".repeat(93)));
    }

    #[test]
    fn snippets_of_bytes_see_a_key_that_straddles_the_window() {
        let _key = ApiKey::new(LONG);
        for before in [1, 8, 20, LONG.len() - 1] {
            let body = format!("{}{LONG}{}", "b".repeat(300 - before), "c".repeat(1000));
            let snippet = cut_bytes(body.as_bytes(), 300);
            assert!(!holds_part_of(&snippet, LONG), "{before}: {snippet}");
        }
        assert_eq!(cut_bytes(b"short", 300), "short");
    }

    #[test]
    fn cuts_keep_to_char_boundaries() {
        let cut = cut(&"é".repeat(400), 501);
        assert!(cut.len() <= 504 && cut.ends_with('…'));
    }
}
