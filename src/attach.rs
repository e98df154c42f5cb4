//! How a row's reference images reach the provider.
//!
//! - **Bytes are shared, not copied.** A reference is read from disk (and its SHA-256
//!   checked against the hash the manifest check recorded) when a call needs it and it is
//!   not loaded; every call shares that one buffer, and reading is single-flight per
//!   hash. The most recently read 64 MiB stay loaded between calls. So 10,000 rows
//!   sharing three 5 MB references hold 15 MB and read each file once, and memory is
//!   bounded by the distinct references in flight plus 64 MiB.
//! - **Gemini: upload once.** A reference several rows share, or a large one
//!   ([`RefFile::upload_once`]), is uploaded once with the Files API and sent as
//!   `fileData`; its `files/...` name and expiry are committed to the checkpoint (keyed by
//!   content hash and endpoint) before any row uses it, so later runs reuse it. It is
//!   uploaded again when it would expire before the call ends, or when a call answers that
//!   the file is gone (403, class `file_gone`): once per notice, however many rows were
//!   waiting for it. A second notice for a file this run uploaded itself is not expiry
//!   (python-genai issue #1218: a project whose payment was due) and stops the run.
//! - **Crash between an upload and its record**: the next run uploads that reference again.
//!   That is at most one extra upload per reference per crash, and uploads are free
//!   (ai.google.dev: the Files API is available at no cost); nothing is paid twice.
//! - Small references used by one row go inline (`inlineData`); OpenAI edits carry every
//!   reference as a multipart file part of each call (the endpoint has no file reuse).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use reqwest::Url;
use sha2::{Digest, Sha256};

use crate::catalog::Dialect;
use crate::checkpoint::{Checkpoint, Upload, now_unix};
use crate::error::{CallError, ErrorClass};
use crate::http::Caller;
use crate::provider::RefPart;
use crate::refs::{RefFile, References, RowRefs};

/// How many bytes of references stay loaded after their calls end (the most recent).
const KEEP_RECENT_BYTES: usize = 64 << 20;

/// A row's references, ready for one call. Holding it keeps their bytes loaded.
#[derive(Debug, Default)]
pub struct Prepared {
    pub images: Vec<RefPart>,
    pub mask: Option<RefPart>,
    /// The uploaded files this call names: (content hash, `files/...` name).
    pub files: Vec<(String, String)>,
    _held: Vec<Arc<Bytes>>,
}

/// What the references cost in traffic this run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttachStats {
    pub uploads: u64,
    pub upload_bytes: u64,
    /// Of the uploads, those made because a call said the file was gone.
    pub reuploads: u64,
    /// Reads of reference files from disk.
    pub loads: u64,
}

/// The per-run state of reference images. One per run; shared by every row task.
pub struct Attach {
    references: Arc<References>,
    dialect: Dialect,
    base: Url,
    ckpt: Arc<Checkpoint>,
    /// Buffers of references some call in flight holds, per hash behind a lock that makes
    /// reading it single-flight (64 calls starting at once read a file once, not 64 times).
    loaded: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Weak<Bytes>>>>>,
    /// The buffers read most recently, kept up to [`KEEP_RECENT_BYTES`] after their calls
    /// end, so that rows sharing references read them once even at `-c 1`.
    recent: Mutex<std::collections::VecDeque<Arc<Bytes>>>,
    /// The upload in force per content hash; its lock makes uploads single-flight.
    uploads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Upload>>>>>,
    /// Hashes a call reported gone after this run uploaded them: a second notice stops.
    gone_after_upload: Mutex<HashSet<String>>,
    /// Names this run uploaded.
    uploaded_here: Mutex<HashSet<String>>,
    /// Hashes whose upload a call reported gone, until they are uploaded again.
    forgotten: Mutex<HashSet<String>>,
    uploads_done: AtomicU64,
    upload_bytes: AtomicU64,
    reuploads: AtomicU64,
    loads: AtomicU64,
}

/// Why a row's references could not be made ready.
#[derive(Debug)]
pub enum NotReady {
    /// A call failed (an upload, a read): the row's error, retried or failed by its class.
    Call(CallError),
    /// The checkpoint could not record an upload: the run stops (every row would upload
    /// again and fail the same way).
    Local(String),
}

impl From<CallError> for NotReady {
    fn from(e: CallError) -> NotReady {
        NotReady::Call(e)
    }
}

/// What a `file_gone` answer means for the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gone {
    /// The file is forgotten: the next try of the row uploads it again.
    UploadAgain,
    /// A file this run uploaded and already uploaded again was refused again: not expiry.
    Stop(String),
}

impl Attach {
    /// The run's references, with the uploads the checkpoint holds for this endpoint.
    pub async fn new(
        references: Arc<References>,
        dialect: Dialect,
        base: Url,
        ckpt: Arc<Checkpoint>,
    ) -> Result<Attach, crate::checkpoint::CheckpointError> {
        let known = if dialect == Dialect::Gemini && !references.is_empty() {
            ckpt.uploads(base.to_string(), now_unix()).await?
        } else {
            Vec::new()
        };
        let uploads = known.into_iter().map(|u| (u.hash.clone(), Arc::new(tokio::sync::Mutex::new(Some(u))))).collect();
        Ok(Attach {
            references,
            dialect,
            base,
            ckpt,
            loaded: Mutex::new(HashMap::new()),
            recent: Mutex::new(std::collections::VecDeque::new()),
            uploads: Mutex::new(uploads),
            gone_after_upload: Mutex::new(HashSet::new()),
            uploaded_here: Mutex::new(HashSet::new()),
            forgotten: Mutex::new(HashSet::new()),
            uploads_done: AtomicU64::new(0),
            upload_bytes: AtomicU64::new(0),
            reuploads: AtomicU64::new(0),
            loads: AtomicU64::new(0),
        })
    }

    pub fn references(&self) -> &References {
        &self.references
    }

    pub fn stats(&self) -> AttachStats {
        AttachStats {
            uploads: self.uploads_done.load(Ordering::Relaxed),
            upload_bytes: self.upload_bytes.load(Ordering::Relaxed),
            reuploads: self.reuploads.load(Ordering::Relaxed),
            loads: self.loads.load(Ordering::Relaxed),
        }
    }

    /// The row's references as one call carries them: uploads made (or reused) first.
    /// `deadline` is the call's: an upload that would expire before it ends is renewed.
    pub async fn prepare(&self, caller: &Caller, refs: &RowRefs, deadline: Duration) -> Result<Prepared, NotReady> {
        let mut prepared = Prepared::default();
        if refs.is_empty() {
            return Ok(prepared);
        }
        for hash in &refs.images {
            let file = self.file(hash)?;
            let part = if self.dialect == Dialect::Gemini && file.upload_once() {
                let upload = self.upload(caller, &file, deadline, &mut prepared).await?;
                prepared.files.push((file.hash.clone(), upload.name.clone()));
                RefPart::File { mime: file.mime, uri: upload.uri }
            } else {
                self.inline(&file, &mut prepared).await?
            };
            prepared.images.push(part);
        }
        if let Some(hash) = &refs.mask {
            let file = self.file(hash)?;
            prepared.mask = Some(self.inline(&file, &mut prepared).await?);
        }
        Ok(prepared)
    }

    /// A call that named `prepared`'s uploads succeeded: they are readable, so a later
    /// notice that one is gone is expiry again, not the project refusing its files.
    pub fn succeeded(&self, prepared: &Prepared) {
        if prepared.files.is_empty() {
            return;
        }
        let mut gone = self.gone_after_upload.lock().expect("gone lock");
        for (hash, _) in &prepared.files {
            gone.remove(hash);
        }
    }

    /// A call answered that a file it named is gone. Forgets the upload of every file of
    /// `prepared` the answer names (all of them when it names none of them), once: rows
    /// that used the same upload find it forgotten already and share the next upload.
    pub async fn gone(&self, prepared: &Prepared, e: &CallError) -> Gone {
        if prepared.files.is_empty() {
            // Nothing uploaded was sent: uploading again cannot help.
            return Gone::Stop(
                "the provider answered that a file is gone, but this call named no uploaded file: check the key's \
                 project and its billing (python-genai issue #1218)"
                    .into(),
            );
        }
        let named: Vec<&(String, String)> =
            prepared.files.iter().filter(|(_, name)| e.message.contains(name.trim_start_matches("files/"))).collect();
        let hit: Vec<&(String, String)> = if named.is_empty() { prepared.files.iter().collect() } else { named };
        for (hash, name) in hit {
            let slot = self.slot(hash);
            let mut current = slot.lock().await;
            if current.as_ref().is_none_or(|u| &u.name != name) {
                continue; // already forgotten (and maybe uploaded again) by another row
            }
            if self.uploaded_here.lock().expect("uploaded lock").contains(name)
                && !self.gone_after_upload.lock().expect("gone lock").insert(hash.clone())
            {
                let origin = self.file(hash).map(|f| f.origin.clone()).unwrap_or_else(|_| hash.clone());
                return Gone::Stop(format!(
                    "the provider refuses reference {origin} ({name}) again right after it was uploaded again, so \
                     it did not expire: the project cannot read its own files (Google answers this too while a \
                     payment is due on the project: python-genai issue #1218); check billing in Google AI Studio, \
                     then run the same command again"
                ));
            }
            *current = None;
            self.forgotten.lock().expect("forgotten lock").insert(hash.clone());
            self.ckpt.forget_upload(self.base.to_string(), hash.clone(), name.clone());
        }
        Gone::UploadAgain
    }

    fn file(&self, hash: &str) -> Result<Arc<RefFile>, CallError> {
        self.references.get(hash).cloned().ok_or_else(|| {
            CallError::new(
                ErrorClass::InvalidRequest,
                format!(
                    "reference {hash} of this row is not among the references the manifest names now (the manifest \
                     changed during the run): run again"
                ),
            )
        })
    }

    fn slot(&self, hash: &str) -> Arc<tokio::sync::Mutex<Option<Upload>>> {
        self.uploads.lock().expect("uploads lock").entry(hash.to_owned()).or_default().clone()
    }

    async fn inline(&self, file: &RefFile, prepared: &mut Prepared) -> Result<RefPart, CallError> {
        let bytes = self.load(file).await?;
        let part = RefPart::Inline {
            mime: file.mime,
            name: format!("{}.{}", &file.hash[..16.min(file.hash.len())], file.extension()),
            bytes: Bytes::clone(&bytes),
        };
        prepared._held.push(bytes);
        Ok(part)
    }

    /// The upload in force for `file`, made now when there is none that outlives the call.
    async fn upload(
        &self,
        caller: &Caller,
        file: &RefFile,
        deadline: Duration,
        prepared: &mut Prepared,
    ) -> Result<Upload, NotReady> {
        let slot = self.slot(&file.hash);
        let mut current = slot.lock().await;
        let now = now_unix();
        if let Some(u) = current.as_ref()
            && u.expires_at - now > renew_margin(u, deadline)
        {
            return Ok(u.clone());
        }
        let bytes = self.load(file).await?;
        let display_name = format!("bulkgen-{}", file.hash);
        let info = caller.upload_gemini(&self.base, &display_name, file.mime, Bytes::clone(&bytes), deadline).await?;
        prepared._held.push(bytes);
        if info.state.as_deref().is_some_and(|s| s != "ACTIVE") {
            // Images are ACTIVE at once; anything else cannot be used yet. Retried.
            return Err(CallError::new(
                ErrorClass::Server,
                format!(
                    "the uploaded reference {} is {} rather than ACTIVE",
                    file.origin,
                    info.state.unwrap_or_default()
                ),
            )
            .into());
        }
        // Google's files live 48 h; an answer without an expiry is taken to last 47.
        let expires_at = info.expires_at.unwrap_or(now + 47.0 * 3600.0);
        let upload = Upload {
            hash: file.hash.clone(),
            name: info.name,
            uri: info.uri,
            mime: info.mime.unwrap_or_else(|| file.mime.to_owned()),
            expires_at,
            uploaded_at: now,
        };
        self.ckpt
            .save_upload(self.base.to_string(), upload.clone())
            .await
            .map_err(|e| NotReady::Local(format!("cannot record the upload of reference {}: {e}", file.origin)))?;
        self.uploaded_here.lock().expect("uploaded lock").insert(upload.name.clone());
        self.uploads_done.fetch_add(1, Ordering::Relaxed);
        self.upload_bytes.fetch_add(file.len, Ordering::Relaxed);
        if self.forgotten.lock().expect("forgotten lock").remove(&file.hash) {
            self.reuploads.fetch_add(1, Ordering::Relaxed);
        }
        *current = Some(upload.clone());
        Ok(upload)
    }

    /// The reference's bytes: the buffer a call in flight holds, or read from disk now
    /// (and checked against its hash: a file changed since the run started is refused).
    async fn load(&self, file: &RefFile) -> Result<Arc<Bytes>, CallError> {
        let slot = {
            let mut loaded = self.loaded.lock().expect("loaded lock");
            if loaded.len() > 64 {
                loaded.retain(|_, slot| {
                    Arc::strong_count(slot) > 1 || slot.try_lock().is_ok_and(|w| w.strong_count() > 0)
                });
            }
            loaded.entry(file.hash.clone()).or_default().clone()
        };
        let mut held = slot.lock().await;
        if let Some(bytes) = held.upgrade() {
            return Ok(bytes);
        }
        let read = tokio::fs::read(&file.path).await.map_err(|e| {
            CallError::new(
                ErrorClass::InvalidRequest,
                format!("cannot read reference {} ({}): {e}", file.origin, file.path.display()),
            )
        })?;
        self.loads.fetch_add(1, Ordering::Relaxed);
        let hash = format!("{:x}", Sha256::digest(&read));
        if hash != file.hash {
            return Err(CallError::new(
                ErrorClass::InvalidRequest,
                format!(
                    "reference {} changed since the run started (its content is not what the manifest check read): \
                     run the same command again to take the new content in (the row counts as changed)",
                    file.origin
                ),
            ));
        }
        let bytes = Arc::new(Bytes::from(read));
        *held = Arc::downgrade(&bytes);
        let mut recent = self.recent.lock().expect("recent lock");
        recent.push_back(bytes.clone());
        let mut kept: usize = recent.iter().map(|b| b.len()).sum();
        while kept > KEEP_RECENT_BYTES && recent.len() > 1 {
            kept -= recent.pop_front().map_or(0, |b| b.len());
        }
        Ok(bytes)
    }
}

/// How much life an upload must have left to be named by a call: the call's deadline (the
/// provider reads the file while it works), but never more than a tenth of the file's
/// lifetime, so a provider that keeps files briefly (or a simulator that compresses 48 h)
/// does not have every call upload again.
fn renew_margin(u: &Upload, deadline: Duration) -> f64 {
    let lifetime = (u.expires_at - u.uploaded_at).max(0.0);
    deadline.as_secs_f64().min(lifetime / 10.0)
}
