//! `bulkgen repair`: rebuilds a damaged or lost checkpoint from the manifest and the
//! complete images already in the folder, without any call.
//!
//! The images are the source of truth for "done": a row whose complete image
//! `images/<id>.<png|jpg|webp>` is in place is done, whatever the old checkpoint said; a
//! row without one is not. Repair trusts that each such image was made for the manifest's
//! current row of that id (it cannot tell otherwise, except for an image the old
//! checkpoint recorded as an earlier identity's). Nothing is deleted: the old checkpoint
//! is renamed `bulkgen.db.damaged-<unix time>` (with its `-wal` and `-shm`), and image
//! files cut short go to `images-damaged-<unix time>/`. What can still be read from the
//! old checkpoint (rows failed for good, result URLs paid for but not downloaded, stashed
//! images, attempts, the runs' settings) is carried over.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::checkpoint::{
    self, Checkpoint, Counts, DB_FILE, DiskFix, IMAGE_EXTENSIONS, RowDefaults, Salvaged, SyncOptions,
};
use crate::config::RunConfig;
use crate::output::{self, OutDir};
use crate::runner::{self, RunError};

/// Rows checked against the images at a time.
const PAGE: usize = 1000;

/// What a repair did.
#[derive(Debug, Clone, Default)]
pub struct Repaired {
    pub out: PathBuf,
    /// Where the old checkpoint went (None: there was none).
    pub old_checkpoint: Option<PathBuf>,
    /// The files moved aside: (old name, new name).
    pub moved: Vec<(String, String)>,
    /// What could be read back from it.
    pub salvaged: Option<Salvaged>,
    /// Rows marked done from their image (not done in the old checkpoint, or no old one).
    pub adopted: u64,
    /// Rows the old checkpoint had done whose image is missing or damaged: pending again.
    pub lost: u64,
    /// Rows whose only image is an earlier identity's (they wait to be generated again).
    pub stale: u64,
    /// Image files cut short, moved into `damaged_dir`.
    pub damaged: Vec<String>,
    pub damaged_dir: Option<PathBuf>,
    /// The manifest's rows per state afterwards.
    pub counts: Counts,
    /// The manifest rows the images come from, when some row has a count over 1 (then
    /// every count here is of images).
    pub manifest_rows: Option<u64>,
}

/// Rebuilds `cfg.out`'s checkpoint; `cfg` is a run's settings (the identity of rows, the
/// manifest and the folder come from it; nothing is sent, so no key is needed).
pub async fn repair(cfg: &RunConfig) -> Result<Repaired, RunError> {
    // The references are read and hashed too: they are part of every row's identity.
    let checked = runner::check_manifest(cfg).await?;
    let stats = checked.stats;
    let references = std::sync::Arc::new(checked.references);
    let out = OutDir::create(&cfg.out).map_err(|source| RunError::Output { path: cfg.out.clone(), source })?;
    let _lock = output::lock(&out.root).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock => RunError::Settings(e.to_string()),
        _ => RunError::Output { path: out.root.clone(), source: e },
    })?;
    let io_err = |source| RunError::Output { path: out.root.clone(), source };
    let stamp = checkpoint::now_unix() as u64;
    let moved = move_aside_checkpoint(&out.root, stamp).map_err(io_err)?;
    let old_checkpoint =
        moved.first().map(|(_, to)| out.root.join(to.trim_end_matches("-wal").trim_end_matches("-shm")));

    let ckpt = Checkpoint::open(&out.root).map_err(|e| e.with_manifest(&cfg.manifest))?;
    ckpt.set_manifest(cfg.manifest.clone());
    let mut done = Repaired {
        out: out.root.clone(),
        old_checkpoint: old_checkpoint.clone(),
        moved,
        manifest_rows: (stats.rows != stats.manifest_rows).then_some(stats.manifest_rows),
        ..Repaired::default()
    };
    if let Some(old) = old_checkpoint.filter(|p| fs::metadata(p).is_ok_and(|m| m.len() > 0)) {
        done.salvaged = Some(ckpt.salvage(old).await?);
    }
    let defaults = RowDefaults { size: cfg.size, model: cfg.model.clone(), params: cfg.params.clone() };
    ckpt.sync_manifest(cfg.manifest.clone(), cfg.manifest_read.clone(), defaults, references, SyncOptions::default())
        .await?;

    // The images already in place become durable before any of them is marked done.
    let images = out.images.clone();
    let on_disk = tokio::task::spawn_blocking(move || {
        output::make_durable(&images)?;
        list_images(&images)
    })
    .await
    .expect("listing images does not panic")
    .map_err(io_err)?;
    let damaged_dir = out.root.join(format!("images-damaged-{stamp}"));
    let mut after = 0;
    loop {
        let page = ckpt.rows_to_check(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let mut fixes = Vec::new();
        for row in page {
            let Some(names) = on_disk.get(&row.id) else {
                if row.state == "done" {
                    fixes.push(DiskFix::Lost { rid: row.rid });
                    done.lost += 1;
                }
                continue;
            };
            let mut chosen = None;
            let mut stale = false;
            for name in names {
                let path = out.images.join(name);
                let bytes = fs::read(&path).map_err(io_err)?;
                if !output::is_complete_image(&bytes) {
                    fs::create_dir_all(&damaged_dir).map_err(io_err)?;
                    fs::rename(&path, damaged_dir.join(name)).map_err(io_err)?;
                    done.damaged.push(name.clone());
                    done.damaged_dir = Some(damaged_dir.clone());
                } else if row.stale_sig.as_deref() == Some(checkpoint::fingerprint(&bytes).as_str()) {
                    stale = true;
                } else if chosen.is_none() {
                    chosen = Some(name.clone());
                }
            }
            match chosen {
                Some(file) if row.state == "done" && row.file.as_deref() == Some(file.as_str()) => {}
                Some(file) => {
                    if row.state != "done" {
                        done.adopted += 1;
                    }
                    fixes.push(DiskFix::Done { rid: row.rid, file });
                }
                None if row.state == "done" => {
                    fixes.push(DiskFix::Lost { rid: row.rid });
                    done.lost += 1;
                }
                None => done.stale += u64::from(stale),
            }
        }
        ckpt.apply_disk_state(fixes).await?;
    }
    done.counts = ckpt.counts().await?;
    ckpt.close().await?;
    Ok(done)
}

/// Renames `bulkgen.db` and its `-wal` and `-shm` (those that exist) to
/// `bulkgen.db.damaged-<stamp>` and the same with `-wal` / `-shm`, so SQLite still pairs
/// them; the (old, new) names of the files moved.
fn move_aside_checkpoint(root: &Path, stamp: u64) -> io::Result<Vec<(String, String)>> {
    let parts = ["", "-wal", "-shm"];
    let exists = |name: &str| fs::symlink_metadata(root.join(name)).is_ok();
    let mut moved = Vec::new();
    if !parts.iter().any(|p| exists(&format!("{DB_FILE}{p}"))) {
        return Ok(moved);
    }
    // Two repairs in one second must not overwrite the first one's files.
    let mut base = format!("{DB_FILE}.damaged-{stamp}");
    let mut n = 1;
    while parts.iter().any(|p| exists(&format!("{base}{p}"))) {
        n += 1;
        base = format!("{DB_FILE}.damaged-{stamp}-{n}");
    }
    for p in parts {
        let (from, to) = (format!("{DB_FILE}{p}"), format!("{base}{p}"));
        match fs::rename(root.join(&from), root.join(&to)) {
            Ok(()) => moved.push((from, to)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    output::sync_dir(root)?;
    Ok(moved)
}

/// Image files in `images` by row id, in the order bulkgen looks for them (png, jpg, webp).
fn list_images(images: &Path) -> io::Result<HashMap<String, Vec<String>>> {
    let mut found: HashMap<String, Vec<String>> = HashMap::new();
    // Shard folders (--shard-dirs) too: names are relative to `images`.
    for (folder, prefix) in output::image_folders(images)? {
        for entry in fs::read_dir(&folder)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((stem, ext)) = name.rsplit_once('.') else { continue };
            if stem.is_empty() || stem.starts_with('.') || !IMAGE_EXTENSIONS.contains(&ext) {
                continue;
            }
            if entry.file_type()?.is_file() {
                found.entry(stem.to_owned()).or_default().push(format!("{prefix}{name}"));
            }
        }
    }
    let rank = |name: &str| IMAGE_EXTENSIONS.iter().position(|e| name.ends_with(e)).unwrap_or(usize::MAX);
    for names in found.values_mut() {
        names.sort_by_key(|n| rank(n));
    }
    Ok(found)
}

/// What `bulkgen repair` prints.
pub fn summary(r: &Repaired, manifest: &Path) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    if r.moved.is_empty() {
        let _ = writeln!(t, "there was no checkpoint in {}", r.out.display());
    } else {
        let moved: Vec<String> = r.moved.iter().map(|(from, to)| format!("{from} -> {to}")).collect();
        let _ = writeln!(
            t,
            "the old checkpoint was moved aside in {} (kept, not deleted): {}",
            r.out.display(),
            moved.join(", ")
        );
    }
    if let Some(s) = &r.salvaged {
        let _ = writeln!(
            t,
            "read back from it: {} row(s) ({} done, {} failed for good, {} with a paid result URL), {} stashed \
             image(s), {} attempt(s), {} run(s)",
            s.rows, s.done, s.failed, s.urls, s.stashed, s.attempts, s.runs
        );
        if s.skipped > 0 {
            let _ = writeln!(t, "  {} damaged row record(s) could not be read", s.skipped);
        }
        for why in &s.stopped {
            let _ = writeln!(t, "  reading stopped early: {why}");
        }
    }
    let c = &r.counts;
    let _ = writeln!(
        t,
        "rebuilt {} from {} and the images in {}, without any call:",
        r.out.join(DB_FILE).display(),
        manifest.display(),
        r.out.join(output::IMAGES_DIR).display()
    );
    // A manifest with counts is counted in images, each its own row `<id>_<k>`.
    let (what, total) = match r.manifest_rows {
        Some(rows) => ("image(s)", format!("{} images from {rows} manifest rows", c.total())),
        None => ("row(s)", format!("{} rows", c.total())),
    };
    let _ = writeln!(t, "  {} {what} adopted as done from their file", r.adopted);
    let _ = writeln!(t, "  {} done, {} pending, {} failed for good ({total})", c.done, c.pending, c.failed);
    if r.lost > 0 {
        let _ = writeln!(t, "  {} row(s) marked done had no complete image: pending again", r.lost);
    }
    if r.stale > 0 {
        let _ = writeln!(t, "  {} row(s) hold an earlier prompt's image and will be generated again", r.stale);
    }
    if let Some(dir) = &r.damaged_dir {
        let more = if r.damaged.len() > 10 { ", ..." } else { "" };
        let _ = writeln!(
            t,
            "  {} damaged image file(s) moved to {}: {}{more} (their rows are pending)",
            r.damaged.len(),
            dir.display(),
            r.damaged.iter().take(10).cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let _ = writeln!(
        t,
        "next: run the batch again with the same command (bulkgen run {} --out {} ...)",
        manifest.display(),
        r.out.display()
    );
    t
}
