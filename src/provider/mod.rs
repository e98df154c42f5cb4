//! Provider dialects: how a row becomes an HTTP request, and how the answer becomes an
//! image or a classified error. One file per dialect behind the [`Provider`] trait; the
//! HTTP policy (client, deadlines, downloads) lives in `http.rs`.

use base64::Engine;
use reqwest::header::HeaderMap;
use reqwest::{Client, RequestBuilder, StatusCode};

use crate::catalog::{Dialect, ResponseFormat, WireSize};
use crate::error::{CallError, ErrorClass};
use crate::output::check_image;
use crate::params::Params;
use crate::secret::ApiKey;

pub mod batch;
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
    /// Reference images, in manifest order (empty for a text-only row).
    pub refs: &'a [RefPart],
    /// The edit mask (openai edits only).
    pub mask: Option<&'a RefPart>,
    /// Images asked for (the openai dialect's `n`; 1 everywhere else).
    pub n: u32,
}

/// A reference image as one request carries it (`attach.rs` decides which).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefPart {
    /// The bytes themselves: Gemini `inlineData`, or an OpenAI multipart file. `Bytes`
    /// clones share one buffer, so rows sharing a reference share its memory.
    Inline { mime: &'static str, name: String, bytes: bytes::Bytes },
    /// A file uploaded once with Gemini's Files API: `fileData`.
    File { mime: &'static str, uri: String },
}

/// A successful generation: the image bytes (and what the provider said of it), or where
/// to fetch them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Generated {
    /// Decoded image bytes, checked to be PNG, JPEG or WebP.
    Image(Vec<u8>, Said),
    /// Where to fetch the image, and what the provider said of it.
    Url(String, Said),
}

/// What a provider said beside an image, kept in metadata.jsonl where given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Said {
    /// OpenAI's `data[0].revised_prompt`: the prompt the model used, when it revised it.
    pub revised_prompt: Option<String>,
    /// Gemini's `candidates[0].finishReason` (STOP, MAX_TOKENS...).
    pub finish_reason: Option<String>,
}

impl Said {
    pub fn finished(reason: &str) -> Said {
        Said { finish_reason: Some(reason.to_owned()), ..Said::default() }
    }
}

pub trait Provider: Send + Sync {
    /// The request for one generation (without the deadline, which the caller sets).
    fn request(&self, client: &Client, key: Option<&ApiKey>, job: &Job<'_>) -> RequestBuilder;

    /// The answer, whole: its images (at least one; as many as `n` asked, or fewer when
    /// the provider gave fewer), or an error in one of the classes of `error.rs`.
    fn parse(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<Vec<Generated>, CallError>;
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
        // `image`, `image[]` and `mask` are the file parts of an edit.
        Dialect::Openai => &["model", "prompt", "n", "size", "response_format", "image", "image[]", "mask"],
        Dialect::Gemini => &["contents", "generationConfig.responseModalities", "generationConfig.imageConfig"],
    }
}

/// base64 (or a `data:` URL) to image bytes, refusing anything that is not a complete
/// image (`output::check_image`: a PNG signature before HTML, or a PNG cut in half, is
/// refused as a bad response and the call is retried).
///
/// The usual answer is standard base64 with padding: base64-simd decodes it in place of
/// the body, fast. Anything it refuses goes to [`decode_tolerant`] before it is called
/// bad, so that an image already paid for is never generated again because of how it
/// was spelled.
pub fn decode_image(b64: &str) -> Result<Vec<u8>, CallError> {
    let payload = match b64.strip_prefix("data:") {
        Some(rest) => rest.split_once(',').map(|(_, data)| data).unwrap_or(rest),
        None => b64,
    };
    let payload = payload.trim();
    // base64-simd decodes several times faster than the base64 crate (at high rates this
    // was the largest share of bulkgen's own user CPU).
    let bytes = match base64_simd::STANDARD.decode_to_vec(payload) {
        Ok(bytes) => bytes,
        Err(_) => decode_tolerant(payload)
            .map_err(|why| CallError::new(ErrorClass::BadResponse, format!("undecodable base64 image: {why}")))?,
    };
    if let Err(why) = check_image(&bytes) {
        return Err(CallError::new(ErrorClass::BadResponse, format!("the base64 data {why}")));
    }
    Ok(bytes)
}

/// The slow path: the URL-safe alphabet, missing padding, line breaks inside the data.
///
/// URL-safe is what relays built on google-genai send: its models serialize bytes with
/// pydantic's `ser_json_bytes='base64'` and `_common.encode_unserializable_types` uses
/// `base64.urlsafe_b64encode` (python-genai `google/genai/_common.py`); the SDK's own
/// reader (`val_json_bytes='base64'`) takes both alphabets, padded or not. So does this.
/// On failure the answer says where the data is bad.
fn decode_tolerant(payload: &str) -> Result<Vec<u8>, String> {
    let spaced = payload.bytes().any(|b| b.is_ascii_whitespace());
    let joined: std::borrow::Cow<'_, [u8]> = if spaced {
        payload.bytes().filter(|b| !b.is_ascii_whitespace()).collect::<Vec<u8>>().into()
    } else {
        payload.as_bytes().into()
    };
    let url_safe = joined.iter().any(|b| matches!(b, b'-' | b'_'));
    let standard = joined.iter().any(|b| matches!(b, b'+' | b'/'));
    let mut unpadded: &[u8] = &joined;
    for _ in 0..2 {
        unpadded = unpadded.strip_suffix(b"=").unwrap_or(unpadded);
    }
    let fast = if url_safe { base64_simd::URL_SAFE_NO_PAD } else { base64_simd::STANDARD_NO_PAD };
    if let Ok(bytes) = fast.decode_to_vec(unpadded) {
        return Ok(bytes);
    }
    // base64-simd's errors say nothing of where: the base64 crate says it.
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let config = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let alphabet = if url_safe { &base64::alphabet::URL_SAFE } else { &base64::alphabet::STANDARD };
    let mut why = match GeneralPurpose::new(alphabet, config).decode(&joined) {
        Err(e) => e.to_string(),
        Ok(_) => "not canonical base64".to_owned(),
    };
    if url_safe && standard {
        why.push_str(" (the data mixes the standard and URL-safe alphabets)");
    }
    if spaced {
        why.push_str(" (offsets count the data without its whitespace)");
    }
    Err(why)
}

/// The class of an error answer when its body says nothing more specific.
pub fn class_by_status(status: StatusCode) -> ErrorClass {
    match status.as_u16() {
        401 | 403 => ErrorClass::Auth,
        404 => ErrorClass::NotFound,
        408 => ErrorClass::Timeout,
        // A conflict is transient: openai-python's `BaseClient._should_retry` retries
        // 409 ("lock timeouts") as it does 408, 429 and 5xx.
        409 => ErrorClass::Server,
        429 => ErrorClass::RateLimited,
        400..=499 => ErrorClass::InvalidRequest,
        503 => ErrorClass::Overloaded,
        500..=599 => ErrorClass::Server,
        _ => ErrorClass::BadResponse,
    }
}

/// The start of a body, for error messages: masked before it is cut (`secret::cut_bytes`),
/// so a key the server echoes across the cut leaves no part of it.
pub fn snippet(body: &[u8]) -> String {
    let text = crate::secret::cut_bytes(body, 300).trim().to_owned();
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
    fn every_base64_spelling_of_the_same_image_decodes_to_it() {
        use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
        // A length that needs padding, and content with '+' and '/' in its standard
        // spelling, so that the URL-safe one differs.
        let mut png = crate::sim::png::make(5_000, 9, "x=1");
        if png.len().is_multiple_of(3) {
            png.push(0);
        }
        let standard = STANDARD.encode(&png);
        assert!(standard.ends_with('=') && standard.contains('+') && standard.contains('/'));
        let url_safe = URL_SAFE.encode(&png);
        let spellings = [
            standard.clone(),
            STANDARD_NO_PAD.encode(&png),
            url_safe.clone(),
            URL_SAFE_NO_PAD.encode(&png),
            format!("data:image/png;base64,{url_safe}"),
            format!("data:image/png;base64,{}\n", URL_SAFE_NO_PAD.encode(&png)),
            // MIME-style lines of 76 characters, as some relays re-wrap it.
            standard.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join("\r\n"),
            format!("  {url_safe}\n"),
        ];
        for (i, b64) in spellings.iter().enumerate() {
            assert_eq!(decode_image(b64).map_err(|e| e.to_string()), Ok(png.clone()), "spelling {i}");
        }
    }

    #[test]
    fn bad_base64_is_refused_with_where_it_is_bad() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let png = crate::sim::png::make(5_001, 9, "x=1");
        let mut url_safe = URL_SAFE_NO_PAD.encode(&png).into_bytes();
        url_safe[100] = b'*';
        let e = decode_image(std::str::from_utf8(&url_safe).unwrap()).unwrap_err();
        assert_eq!(e.class, ErrorClass::BadResponse);
        assert!(e.message.contains("Invalid symbol 42, offset 100"), "{e}");
        // One alphabet mixed with the other is corrupt, and said so.
        let mut mixed = URL_SAFE_NO_PAD.encode(&png).into_bytes();
        let at = mixed.iter().position(|b| *b == b'-').unwrap();
        mixed[at + 4..at + 8].copy_from_slice(b"A+AA");
        let e = decode_image(std::str::from_utf8(&mixed).unwrap()).unwrap_err();
        assert!(e.message.contains(&format!("offset {}", at + 5)) && e.message.contains("mixes"), "{e}");
        // Cut short mid-symbol: no alphabet or padding makes it whole.
        let cut = &URL_SAFE_NO_PAD.encode(&png)[..4001];
        assert!(decode_image(cut).unwrap_err().message.starts_with("undecodable base64 image"));
    }

    #[test]
    fn a_conflict_is_retried_as_a_server_error() {
        assert_eq!(class_by_status(StatusCode::CONFLICT), ErrorClass::Server);
        assert_eq!(class_by_status(StatusCode::REQUEST_TIMEOUT), ErrorClass::Timeout);
        assert_eq!(class_by_status(StatusCode::UNPROCESSABLE_ENTITY), ErrorClass::InvalidRequest);
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
