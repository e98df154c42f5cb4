//! Reference images: what the manifest's `images` and `mask` columns name.
//!
//! Each reference is a local path (relative to `--images-dir`, default the manifest's
//! folder) or an http(s) URL (fetched once at the start into `DIR/refs/`, a cache named by
//! content hash). Every distinct reference is read once, checked (PNG, JPEG or WebP by
//! magic bytes, within the row's model's limits) and hashed (SHA-256): a row's references
//! are known from then on by their hashes ([`RowRefs`]), which are part of its identity.
//!
//! What reaches the provider, and how (inline, Files API, multipart), is `attach.rs`'s.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::catalog::{Catalog, Dialect, ReferenceRules};
use crate::http::{BodyError, bytes_text, check_download_url};
use crate::output::{check_image, image_extension};

/// One distinct reference image, read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefFile {
    /// SHA-256 of the bytes, lower-case hex.
    pub hash: String,
    /// `image/png`, `image/jpeg` or `image/webp`, from the magic bytes.
    pub mime: &'static str,
    /// Length in bytes.
    pub len: u64,
    /// Where the bytes are: the user's file, or the cached copy of a URL.
    pub path: PathBuf,
    /// How many manifest rows name it (as an image or a mask).
    pub uses: u64,
    /// How the manifest first wrote it (a path or a URL), for messages.
    pub origin: String,
}

/// The largest reference Gemini rows carry inline when only one row uses it; a larger
/// one, or one that several rows share, is uploaded once with the Files API and sent as
/// `fileData` (see README, "Reference images").
pub const INLINE_MAX_BYTES: u64 = 1 << 20;

impl RefFile {
    /// Whether Gemini rows get it through the Files API (uploaded once) rather than inline.
    pub fn upload_once(&self) -> bool {
        self.uses > 1 || self.len > INLINE_MAX_BYTES
    }

    /// The extension that goes with the mime type (`png`, `jpg`, `webp`).
    pub fn extension(&self) -> &'static str {
        match self.mime {
            "image/jpeg" => "jpg",
            "image/webp" => "webp",
            _ => "png",
        }
    }
}

/// Every distinct reference of a manifest: by content hash, and by how rows spell it.
#[derive(Debug, Default)]
pub struct References {
    by_hash: HashMap<String, Arc<RefFile>>,
    /// The spelling in the manifest (trimmed) -> content hash.
    by_spec: HashMap<String, String>,
}

impl References {
    /// Records a reference read under `spec` (a row's spelling of it); a second spelling
    /// of the same bytes shares the entry and adds to its uses.
    pub fn insert(&mut self, spec: &str, file: RefFile) {
        self.by_spec.insert(spec.to_owned(), file.hash.clone());
        match self.by_hash.get_mut(&file.hash) {
            Some(known) => Arc::make_mut(known).uses += file.uses,
            None => {
                self.by_hash.insert(file.hash.clone(), Arc::new(file));
            }
        }
    }

    pub fn get(&self, hash: &str) -> Option<&Arc<RefFile>> {
        self.by_hash.get(hash)
    }

    /// The hash of a reference as a row spells it.
    pub fn hash_of(&self, spec: &str) -> Option<&str> {
        self.by_spec.get(spec.trim()).map(String::as_str)
    }

    /// A row's references by hash; None when one of them was never read (a bug: the
    /// manifest check reads every reference before the checkpoint takes the rows in).
    pub fn row_refs(&self, images: &[String], mask: Option<&str>) -> Option<RowRefs> {
        let images = images.iter().map(|s| self.hash_of(s).map(str::to_owned)).collect::<Option<Vec<_>>>()?;
        let mask = match mask {
            Some(m) => Some(self.hash_of(m)?.to_owned()),
            None => None,
        };
        Some(RowRefs { images, mask })
    }

    /// How many distinct references there are.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<RefFile>> {
        self.by_hash.values()
    }

    /// Every spelling rows use, with the hash of what it names.
    pub fn spellings(&self) -> impl Iterator<Item = (&str, &str)> {
        self.by_spec.iter().map(|(spec, hash)| (spec.as_str(), hash.as_str()))
    }

    /// Whether `rules` (another model's, a fallback's) take a row's references as they
    /// are: their number, formats, sizes and the mask. The manifest check said why for
    /// the row's own model; this only answers yes or no.
    pub fn fit(&self, rules: &ReferenceRules, refs: &RowRefs) -> bool {
        if rules.max_images.is_some_and(|max| refs.images.len() > max as usize) || (refs.mask.is_some() && !rules.mask)
        {
            return false;
        }
        refs.images.iter().chain(&refs.mask).all(|hash| {
            self.get(hash).is_some_and(|f| {
                rules.takes_format(f.mime.trim_start_matches("image/"))
                    && rules.max_bytes.is_none_or(|max| f.len <= max)
            })
        })
    }
}

/// A row's references, by content hash, in manifest order: part of its identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RowRefs {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<String>,
}

impl RowRefs {
    pub fn is_empty(&self) -> bool {
        self.images.is_empty() && self.mask.is_none()
    }

    /// How the checkpoint stores it: `''` for none, else compact JSON.
    pub fn to_column(&self) -> String {
        if self.is_empty() { String::new() } else { serde_json::to_string(self).expect("row refs serialize") }
    }

    /// The column read back; text that is not what [`RowRefs::to_column`] wrote is an error
    /// (a row must never be sent without the references it names).
    pub fn from_column(text: &str) -> Result<RowRefs, String> {
        if text.trim().is_empty() {
            return Ok(RowRefs::default());
        }
        serde_json::from_str(text).map_err(|e| format!("damaged reference list {text:?}: {e}"))
    }
}

/// The folder of `--out` where fetched reference URLs are kept, named by content hash.
pub const CACHE_DIR: &str = "refs";

/// Reference URLs fetched at once.
pub const FETCH_CONCURRENCY: usize = 4;

/// An edit mask is a PNG: its transparent pixels mark what to change (the openai dialect's
/// `/v1/images/edits` `mask`; wire-formats.md, "Edits"; openai-python image_edit_params.py).
pub const MASK_FORMAT: &str = "png";

/// Whether a reference is an http(s) URL (`http://` or `https://`, in any case) rather
/// than a local path.
pub fn is_url(spec: &str) -> bool {
    let b = spec.trim().as_bytes();
    b.get(..7).is_some_and(|p| p.eq_ignore_ascii_case(b"http://"))
        || b.get(..8).is_some_and(|p| p.eq_ignore_ascii_case(b"https://"))
}

/// The format names of the catalogue (`png`, `jpeg`, `webp`) for an image extension.
fn format_of(ext: &str) -> &'static str {
    match ext {
        "jpg" => "jpeg",
        "webp" => "webp",
        _ => "png",
    }
}

/// How a format is written in messages: PNG, JPEG, WebP.
fn display_name(format: &str) -> &'static str {
    match format {
        "jpeg" => "JPEG",
        "webp" => "WebP",
        _ => "PNG",
    }
}

fn mime_of(ext: &str) -> &'static str {
    match ext {
        "jpg" => "image/jpeg",
        "webp" => "image/webp",
        _ => "image/png",
    }
}

/// A reference file read whole, checked and hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Checked {
    hash: String,
    /// `png`, `jpeg` or `webp`.
    format: &'static str,
    mime: &'static str,
    len: u64,
    path: PathBuf,
}

/// Reads `path` (at most `cap` bytes), checks that it is a whole PNG, JPEG or WebP
/// ([`check_image`]) and hashes it. The bytes are dropped before it returns: only one
/// reference is in memory at a time, whatever the manifest names. The error is worded to
/// follow the reference ("is a PNG cut short: ...", "cannot be read: ...").
fn read_checked(path: &Path, cap: u64) -> Result<Checked, String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot be read: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a file (a folder?)".to_owned());
    }
    let too_large = |n: u64| {
        format!(
            "is {}, more than --max-response-bytes {}, the most bulkgen reads of one reference (it reads each one \
             whole to check it): raise --max-response-bytes if the model takes references this large",
            bytes_text(n),
            bytes_text(cap)
        )
    };
    if meta.len() > cap {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    (&mut file).take(cap.saturating_add(1)).read_to_end(&mut bytes).map_err(|e| format!("cannot be read: {e}"))?;
    if bytes.len() as u64 > cap {
        return Err(too_large(bytes.len() as u64));
    }
    let ext = check_image(&bytes)?;
    Ok(Checked {
        hash: format!("{:x}", Sha256::digest(&bytes)),
        format: format_of(ext),
        mime: mime_of(ext),
        len: bytes.len() as u64,
        path: path.to_owned(),
    })
}

/// What was learnt of one spelling: the file, or the reason it cannot be used (already
/// worded as a row's problem).
type Seen = Result<Checked, String>;

#[derive(Default)]
struct CheckerState {
    by_spec: HashMap<String, Seen>,
    /// Spellings in the order rows first named them (for a deterministic `origin`).
    order: Vec<String>,
    /// Rows naming each content hash.
    uses: HashMap<String, u64>,
}

/// Checks the references of each row as the manifest is read: every distinct spelling is
/// read and hashed once (10,000 rows naming one file read it once), and what is kept is a
/// few fields per distinct reference, never its bytes.
pub struct Checker<'a> {
    catalog: &'a Catalog,
    dialect: Dialect,
    images_dir: PathBuf,
    /// The most bytes read of one reference (`--max-response-bytes`).
    cap: u64,
    /// URL spellings fetched by [`fetch_all`]: the cached file, or why not.
    fetched: HashMap<String, Result<PathBuf, String>>,
    state: RefCell<CheckerState>,
}

impl<'a> Checker<'a> {
    pub fn new(
        catalog: &'a Catalog,
        dialect: Dialect,
        images_dir: PathBuf,
        cap: u64,
        fetched: HashMap<String, Result<PathBuf, String>>,
    ) -> Checker<'a> {
        Checker { catalog, dialect, images_dir, cap, fetched, state: RefCell::default() }
    }

    /// The file a spelling names, read and checked on first sight.
    fn lookup(&self, spec: &str) -> Seen {
        if let Some(seen) = self.state.borrow().by_spec.get(spec) {
            return seen.clone();
        }
        let seen = if is_url(spec) {
            match self.fetched.get(spec) {
                Some(Ok(path)) => read_checked(path, self.cap).map_err(|why| format!("reference URL {spec} {why}")),
                Some(Err(why)) => Err(format!("reference URL {spec} could not be fetched: {why}")),
                None => Err(format!("reference URL {spec} was not fetched (a bug: every URL is fetched first)")),
            }
        } else {
            let path = self.images_dir.join(spec);
            read_checked(&path, self.cap).map_err(|why| {
                let unread = why.starts_with("cannot be read") || why.starts_with("is not a file");
                if Path::new(spec).is_absolute() || !unread {
                    format!("reference {spec} {why}")
                } else {
                    format!(
                        "reference {spec} {why} (tried {}: relative paths are looked up in {}, which --images-dir \
                         sets; the default is the manifest's folder)",
                        path.display(),
                        self.images_dir.display()
                    )
                }
            })
        };
        let mut state = self.state.borrow_mut();
        state.order.push(spec.to_owned());
        state.by_spec.insert(spec.to_owned(), seen.clone());
        seen
    }

    /// Every reason a row of `model` cannot be sent with these references (empty: it
    /// can). Counts the row as a use of each distinct reference it names.
    pub fn check_row(&self, model: &str, images: &[String], mask: Option<&str>) -> Vec<String> {
        let rules = self.catalog.reference_rules(self.dialect, model);
        let mut why = Vec::new();
        let mut hashes: Vec<String> = Vec::new();
        match rules.max_images {
            Some(0) if !images.is_empty() => why.push(format!(
                "names {} reference image(s), but {} takes none (the catalogue's max_reference_images)",
                images.len(),
                rules.model
            )),
            Some(max) if images.len() > max as usize => why.push(format!(
                "names {} reference images, but {} takes at most {max} (the catalogue's max_reference_images)",
                images.len(),
                rules.model
            )),
            _ => {}
        }
        for spec in images {
            match self.lookup(spec) {
                Ok(file) => {
                    why.extend(fits(&rules, "reference", spec, &file));
                    hashes.push(file.hash);
                }
                Err(e) => why.push(e),
            }
        }
        if let Some(spec) = mask {
            if !rules.mask {
                why.push(if self.dialect == Dialect::Gemini {
                    format!(
                        "has a mask ({spec}), but the gemini dialect takes no edit mask (masks go to the openai \
                         dialect's edits endpoint): leave the mask column empty"
                    )
                } else {
                    format!(
                        "has a mask ({spec}), but {} takes no edit mask (the catalogue's `mask`): leave the mask \
                         column empty, or use a model that takes one (`bulkgen models`)",
                        rules.model
                    )
                });
            } else if images.is_empty() {
                why.push(format!(
                    "has a mask ({spec}) but no reference image: the mask marks what to change in the first of the \
                     row's `images`"
                ));
            }
            match self.lookup(spec) {
                Ok(file) => {
                    if file.format != MASK_FORMAT {
                        why.push(format!(
                            "mask {spec} is a {} image; an edit mask is a PNG (its transparent areas mark what to \
                             change)",
                            display_name(file.format)
                        ));
                    }
                    if let Some(max) = rules.max_bytes.filter(|max| file.len > *max) {
                        why.push(too_big("mask", spec, file.len, max, &rules.model));
                    }
                    hashes.push(file.hash);
                }
                Err(e) => why.push(e),
            }
        }
        hashes.sort_unstable();
        hashes.dedup();
        let mut state = self.state.borrow_mut();
        for hash in hashes {
            *state.uses.entry(hash).or_default() += 1;
        }
        why
    }

    /// Every distinct reference that could be read, with the rows naming it counted, and
    /// every spelling of it.
    pub fn into_references(self) -> References {
        let state = self.state.into_inner();
        let mut refs = References::default();
        let mut counted: std::collections::HashSet<String> = std::collections::HashSet::new();
        for spec in &state.order {
            let Some(Ok(file)) = state.by_spec.get(spec) else { continue };
            // The first spelling carries the uses; another spelling of the same bytes adds
            // none (`insert` adds uses up), so a row naming both counts once.
            let uses =
                if counted.insert(file.hash.clone()) { state.uses.get(&file.hash).copied().unwrap_or(0) } else { 0 };
            refs.insert(
                spec,
                RefFile {
                    hash: file.hash.clone(),
                    mime: file.mime,
                    len: file.len,
                    path: file.path.clone(),
                    uses,
                    origin: spec.clone(),
                },
            );
        }
        refs
    }
}

/// Why a reference image does not suit the row's model: its format, its size.
fn fits(rules: &ReferenceRules, what: &str, spec: &str, file: &Checked) -> Vec<String> {
    let mut why = Vec::new();
    if !rules.takes_format(file.format) {
        why.push(format!(
            "{what} {spec} is a {} image, and {} takes {} only (the catalogue's reference_formats)",
            display_name(file.format),
            rules.model,
            rules.formats.join(", ")
        ));
    }
    if let Some(max) = rules.max_bytes.filter(|max| file.len > *max) {
        why.push(too_big(what, spec, file.len, max, &rules.model));
    }
    why
}

fn too_big(what: &str, spec: &str, len: u64, max: u64, model: &str) -> String {
    format!(
        "{what} {spec} is {}, more than the {} bytes {model} takes per image (the catalogue's max_reference_bytes)",
        bytes_text(len),
        max
    )
}

/// How reference URLs are fetched: with the keyless download client
/// ([`crate::http::download_client`]: http(s) only, no link-local or metadata address on
/// any hop or DNS answer), the download deadline, and `--max-response-bytes`.
pub struct FetchSettings {
    pub client: reqwest::Client,
    pub timeout: Duration,
    pub max_bytes: u64,
    /// Where the fetched files go (`DIR/refs`, or a scratch folder for a dry run).
    pub dir: PathBuf,
    pub concurrency: usize,
}

/// Every URL fetched once, [`FETCH_CONCURRENCY`] at a time: the file in `settings.dir`
/// named `<sha256>.<ext>`, or why it could not be fetched. Nothing is held in memory: each
/// body streams to a temporary file there while it is hashed, then is renamed.
pub async fn fetch_all(urls: Vec<String>, settings: &FetchSettings) -> HashMap<String, Result<PathBuf, String>> {
    futures::stream::iter(urls)
        .map(|url| async move {
            let got = fetch(&url, settings).await;
            (url, got)
        })
        .buffer_unordered(settings.concurrency.max(1))
        .collect()
        .await
}

/// A temporary file removed unless it was renamed into place.
struct Partial(Option<PathBuf>);

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

async fn fetch(spec: &str, s: &FetchSettings) -> Result<PathBuf, String> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let url = reqwest::Url::parse(spec.trim()).map_err(|e| format!("it is not a URL: {e}"))?;
    check_download_url(&url)?;
    let mut resp = s.client.get(url).timeout(s.timeout).send().await.map_err(|e| failure(&e, s.timeout))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("it answered HTTP {status}"));
    }
    if let Some(n) = resp.content_length().filter(|n| *n > s.max_bytes) {
        return Err(BodyError::TooLarge { cap: s.max_bytes, declared: Some(n), read: 0 }
            .describe("its body", "--max-response-bytes"));
    }
    tokio::fs::create_dir_all(&s.dir).await.map_err(|e| format!("cannot create {}: {e}", s.dir.display()))?;
    let temp = s.dir.join(format!(".fetch-{}-{}.part", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    let mut partial = Partial(Some(temp.clone()));
    let local = |e: std::io::Error| format!("cannot write {}: {e}", temp.display());
    let mut file = tokio::fs::File::create(&temp).await.map_err(local)?;
    let mut hasher = Sha256::new();
    let mut head: Vec<u8> = Vec::with_capacity(16);
    let mut read = 0u64;
    while let Some(chunk) = resp.chunk().await.map_err(|e| failure(&e, s.timeout))? {
        read = read.saturating_add(chunk.len() as u64);
        if read > s.max_bytes {
            // Dropping the response closes its connection: nothing more is read.
            return Err(BodyError::TooLarge { cap: s.max_bytes, declared: None, read }
                .describe("its body", "--max-response-bytes"));
        }
        if head.len() < 16 {
            head.extend_from_slice(&chunk[..chunk.len().min(16 - head.len())]);
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(local)?;
    }
    file.flush().await.map_err(local)?;
    drop(file);
    let ext = image_extension(&head).ok_or_else(|| format!("is not a PNG, JPEG or WebP image ({read} bytes)"))?;
    let path = s.dir.join(format!("{:x}.{ext}", hasher.finalize()));
    tokio::fs::rename(&temp, &path).await.map_err(|e| format!("cannot keep it as {}: {e}", path.display()))?;
    partial.0 = None;
    Ok(path)
}

/// A failed fetch in words: what failed, and reqwest's chain of causes.
fn failure(e: &reqwest::Error, timeout: Duration) -> String {
    let mut chain: Vec<String> = Vec::new();
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !chain.iter().any(|c| c.contains(&text)) {
            chain.push(text);
        }
        source = s.source();
    }
    let what = if e.is_timeout() {
        format!("no complete answer within --download-timeout ({:.1}s)", timeout.as_secs_f64())
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else if e.is_redirect() {
        "a redirect was not followed".to_owned()
    } else {
        "the transfer failed".to_owned()
    };
    format!("{what}: {}", chain.join(": "))
}

/// A folder that is removed with everything in it when dropped: where a dry run fetches
/// reference URLs, so that it leaves nothing behind.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    /// A new, unique folder name under the system's temporary folder (not created yet:
    /// the first fetch creates it).
    pub fn new() -> ScratchDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        ScratchDir(std::env::temp_dir().join(format!(
            "bulkgen-refs-{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )))
    }
}

impl Default for ScratchDir {
    fn default() -> ScratchDir {
        ScratchDir::new()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The distinct URLs a manifest's `images` and `mask` columns name, in the order first
/// named (empty without such columns). Rows with problems are skipped: the manifest check
/// reports them.
pub fn manifest_urls(
    path: &Path,
    read: &crate::manifest::ReadSettings,
) -> Result<Vec<String>, crate::manifest::ManifestError> {
    use crate::manifest::{ManifestError, ManifestReader, ReadError};
    let reader = ManifestReader::open_with(path, read)?;
    if !reader.has_references() {
        return Ok(Vec::new());
    }
    let mut seen = std::collections::HashSet::new();
    let mut urls = Vec::new();
    for row in reader {
        let row = match row {
            Ok(row) => row,
            Err(ReadError::Row(_)) => continue,
            Err(ReadError::Io(source)) => return Err(ManifestError::Io { path: path.to_owned(), source }),
        };
        for spec in row.images.iter().chain(&row.mask).filter(|s| is_url(s)) {
            if !seen.contains(spec.as_str()) {
                seen.insert(spec.clone());
                urls.push(spec.clone());
            }
        }
    }
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_or_https_in_any_case() {
        for url in ["http://x/a.png", "HTTPS://x/a.png", " Http://x", "https://"] {
            assert!(is_url(url), "{url}");
        }
        for path in ["a.png", "/abs/http://x", "ftp://x/a.png", "httpx://y", "http:/x", "héhé", ""] {
            assert!(!is_url(path), "{path}");
        }
    }

    fn checker(dir: &Path) -> Checker<'static> {
        let catalog: &'static Catalog = Box::leak(Box::new(Catalog::built_in()));
        Checker::new(catalog, Dialect::Openai, dir.to_owned(), 1 << 20, HashMap::new())
    }

    #[test]
    fn each_spelling_is_read_once_and_two_spellings_of_one_file_count_once() {
        let dir = tempfile::tempdir().unwrap();
        let png = crate::sim::png::make(500, 1, "a");
        std::fs::write(dir.path().join("a.png"), &png).unwrap();
        let c = checker(dir.path());
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(c.check_row("gpt-image-2", &s(&["a.png"]), None).is_empty());
        // The file is gone, but its spelling was read already: no second read.
        std::fs::rename(dir.path().join("a.png"), dir.path().join("b.png")).unwrap();
        assert!(c.check_row("gpt-image-2", &s(&["a.png"]), None).is_empty());
        assert!(c.check_row("gpt-image-2", &s(&["./b.png", "a.png"]), None).is_empty());
        let refs = c.into_references();
        assert_eq!(refs.len(), 1);
        let hash = format!("{:x}", Sha256::digest(&png));
        assert_eq!(refs.hash_of("a.png"), Some(hash.as_str()));
        assert_eq!(refs.hash_of("./b.png"), Some(hash.as_str()));
        let file = refs.get(&hash).unwrap();
        assert_eq!((file.uses, file.len, file.mime, file.origin.as_str()), (3, png.len() as u64, "image/png", "a.png"));
        assert!(file.upload_once());
    }

    #[test]
    fn a_row_gets_every_reason_at_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.png"), crate::sim::png::make(500, 1, "a")).unwrap();
        std::fs::write(dir.path().join("half.png"), &crate::sim::png::make(500, 2, "b")[..100]).unwrap();
        let c = checker(dir.path());
        let images: Vec<String> =
            std::iter::repeat_n("a.png".to_owned(), 17).chain(["half.png".into(), "gone.png".into()]).collect();
        let why = c.check_row("gpt-image-2", &images, Some("gone.png"));
        assert_eq!(why.len(), 4, "{why:#?}");
        assert!(why[0].contains("names 19 reference images, but gpt-image-2 takes at most 16"), "{}", why[0]);
        assert!(why[1].starts_with("reference half.png is a PNG cut short"), "{}", why[1]);
        assert!(
            why[2].starts_with("reference gone.png cannot be read") && why[2].contains("--images-dir"),
            "{}",
            why[2]
        );
        assert!(why[3].starts_with("reference gone.png cannot be read"), "{}", why[3]);
        let why = c.check_row("gemini-3-pro-image", &["a.png".to_owned()], Some("a.png"));
        assert_eq!(why.len(), 1, "{why:#?}");
        assert!(why[0].contains("gemini-3-pro-image takes no edit mask"), "{}", why[0]);
    }
}
