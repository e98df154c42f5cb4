//! Reference images: what the manifest's `images` and `mask` columns name.
//!
//! Each reference is a local path (relative to `--images-dir`, default the manifest's
//! folder) or an http(s) URL (fetched once at the start into `DIR/refs/`, a cache named by
//! content hash). Every distinct reference is read once, checked (PNG, JPEG or WebP by
//! magic bytes, within the row's model's limits) and hashed (SHA-256): a row's references
//! are known from then on by their hashes ([`RowRefs`]), which are part of its identity.
//!
//! What reaches the provider, and how (inline, Files API, multipart), is `attach.rs`'s.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

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
