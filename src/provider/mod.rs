//! Provider dialects: how a row becomes an HTTP request, and how the answer becomes an
//! image or a classified error. One file per dialect behind the [`Provider`] trait; the
//! HTTP policy (client, deadlines, downloads) lives in `http.rs`.

use base64::Engine;
use reqwest::header::HeaderMap;
use reqwest::{Client, RequestBuilder, StatusCode};

use crate::catalog::{Dialect, ResponseFormat, WireSize};
use crate::error::{CallError, ErrorClass};
use crate::output::image_extension;
use crate::params::Params;
use crate::secret::ApiKey;

pub mod gemini;
pub mod openai;

/// What one generation asks for, already resolved against the catalogue: the size as the
/// model takes it, `response_format` only for a model that takes it, and the params.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    pub prompt: &'a str,
    pub model: &'a str,
    pub size: &'a WireSize,
    pub response_format: Option<ResponseFormat>,
    pub params: &'a Params,
}

/// A successful generation: the image bytes, or where to fetch them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Generated {
    /// Decoded image bytes, checked to be PNG, JPEG or WebP.
    Image(Vec<u8>),
    Url(String),
}

pub trait Provider: Send + Sync {
    /// The request for one generation (without the deadline, which the caller sets).
    fn request(&self, client: &Client, key: Option<&ApiKey>, job: &Job<'_>) -> RequestBuilder;

    /// The answer, whole: an image, or an error in one of the classes of `error.rs`.
    fn parse(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<Generated, CallError>;
}

pub fn for_dialect(dialect: Dialect, base_url: &reqwest::Url) -> Box<dyn Provider> {
    match dialect {
        Dialect::Openai => Box::new(openai::OpenAi::new(base_url)),
        Dialect::Gemini => Box::new(gemini::Gemini::new(base_url)),
    }
}

/// The request fields bulkgen sets itself in each dialect (dotted paths): a `--param`
/// or `param.KEY` column may not name them or a parent of them.
pub fn fields_set(dialect: Dialect) -> &'static [&'static str] {
    match dialect {
        Dialect::Openai => &["model", "prompt", "n", "size", "response_format"],
        Dialect::Gemini => &["contents", "generationConfig.responseModalities", "generationConfig.imageConfig"],
    }
}

/// base64 (or a `data:` URL) to image bytes, refusing anything that is not an image.
pub fn decode_image(b64: &str) -> Result<Vec<u8>, CallError> {
    let payload = match b64.strip_prefix("data:") {
        Some(rest) => rest.split_once(',').map(|(_, data)| data).unwrap_or(rest),
        None => b64,
    };
    let payload = payload.trim();
    // base64-simd decodes several times faster than the base64 crate (at high rates this
    // was the largest share of bulkgen's own user CPU); its errors say nothing of where,
    // so a payload it refuses is decoded again by the base64 crate for the message.
    let bytes = base64_simd::STANDARD.decode_to_vec(payload).map_err(|_| {
        let why = match base64::engine::general_purpose::STANDARD.decode(payload) {
            Err(e) => e.to_string(),
            Ok(_) => "not canonical base64".to_owned(),
        };
        CallError::new(ErrorClass::BadResponse, format!("undecodable base64 image: {why}"))
    })?;
    if image_extension(&bytes).is_none() {
        return Err(CallError::new(
            ErrorClass::BadResponse,
            format!("the base64 data is not a PNG, JPEG or WebP image ({} bytes)", bytes.len()),
        ));
    }
    Ok(bytes)
}

/// The class of an error answer when its body says nothing more specific.
pub fn class_by_status(status: StatusCode) -> ErrorClass {
    match status.as_u16() {
        401 | 403 => ErrorClass::Auth,
        404 => ErrorClass::NotFound,
        408 => ErrorClass::Timeout,
        429 => ErrorClass::RateLimited,
        400..=499 => ErrorClass::InvalidRequest,
        503 => ErrorClass::Overloaded,
        500..=599 => ErrorClass::Server,
        _ => ErrorClass::BadResponse,
    }
}

/// The start of a body, for error messages.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).trim().to_owned();
    if text.is_empty() { "(empty body)".into() } else { text }
}

/// `{base}{path}`, where `path` starts with a version segment (`/v1/...`) that is left
/// out when the base already has one (aggregators print `http://host:16888/v1`; Google's
/// OpenAI-compatible root is `.../v1beta/openai`, where the OpenAI SDK posts
/// `{root}/images/generations`): the runner never doubles a version segment.
pub fn endpoint(base: &reqwest::Url, path: &str) -> reqwest::Url {
    let base_path = base.path().trim_end_matches('/');
    let (version, rest) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
    let has_version = base_path.split('/').any(is_version_segment);
    let joined = if has_version { format!("{base_path}/{rest}") } else { format!("{base_path}/{version}/{rest}") };
    let mut url = base.clone();
    url.set_path(&joined);
    url
}

fn is_version_segment(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('v') else {
        return false;
    };
    let n = digits.chars().take_while(char::is_ascii_digit).count();
    n > 0 && digits[n..].chars().all(|c| c.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_decoded_and_bad_base64_is_named() {
        use base64::Engine;
        let png = crate::sim::png::make(5_000, 9, "x=1");
        let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
        assert_eq!(decode_image(&b64).unwrap(), png);
        assert_eq!(decode_image(&format!("data:image/png;base64,{b64}\n")).unwrap(), png);
        let bad = decode_image("%%%not-base64%%%").unwrap_err();
        assert_eq!(bad.class, ErrorClass::BadResponse);
        assert!(bad.to_string().contains("undecodable base64 image: Invalid symbol 37, offset 0"), "{bad}");
        let text = base64::engine::general_purpose::STANDARD.encode(b"hello, not an image");
        assert!(decode_image(&text).unwrap_err().to_string().contains("not a PNG, JPEG or WebP image (19 bytes)"));
    }

    #[test]
    fn endpoints_never_double_the_version_segment() {
        let e = |base: &str| endpoint(&base.parse().unwrap(), "/v1/images/generations").to_string();
        assert_eq!(e("https://api.openai.com"), "https://api.openai.com/v1/images/generations");
        assert_eq!(e("https://api.openai.com/"), "https://api.openai.com/v1/images/generations");
        assert_eq!(e("http://host:16888/v1"), "http://host:16888/v1/images/generations");
        assert_eq!(e("http://host:16888/v1/"), "http://host:16888/v1/images/generations");
        assert_eq!(e("https://gw.example/openai"), "https://gw.example/openai/v1/images/generations");
        assert_eq!(e("https://gw.example/api/v1beta"), "https://gw.example/api/v1beta/images/generations");
        assert_eq!(e("https://gw.example/video"), "https://gw.example/video/v1/images/generations");
        assert_eq!(
            e("https://generativelanguage.googleapis.com/v1beta/openai/"),
            "https://generativelanguage.googleapis.com/v1beta/openai/images/generations"
        );
    }
}
