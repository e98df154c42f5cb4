//! Files in the output folder. An image appears only complete: it is written to an
//! unnamed file and linked into place, or under a temporary name and renamed into place,
//! so a file named `<id>.<ext>` is always a whole image.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

pub const IMAGES_DIR: &str = "images";
pub const RESULTS_FILE: &str = "results.csv";
const EXTENSIONS: [&str; 3] = ["png", "jpg", "webp"];
const TEMP_SUFFIX: &str = ".partial";

/// The image format, from the first bytes; `None` when they are not an image we know.
pub fn image_extension(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("jpg")
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("webp")
    } else {
        None
    }
}

/// Writes `bytes` as `<dir>/<id>.<ext>` and returns the file name. The caller has
/// checked the bytes are an image (`ext` from [`image_extension`]).
///
/// The file appears whole to every reader, but it is not yet durable: the checkpoint
/// calls [`make_durable`] once per batch of "done" marks, before committing them, so one
/// flush covers many images. On Linux the bytes go to an unnamed file (`O_TMPFILE`) that
/// is then linked into place: one directory entry made, where a temp name and a rename
/// make three changes (the kernel's directory work was the largest part of bulkgen's CPU
/// at high rates). Where that is not possible (a filesystem without `O_TMPFILE`, no
/// `/proc`, or an existing file to replace), a temp name and a rename do the same.
pub fn write_image(dir: &Path, id: &str, ext: &str, bytes: &[u8]) -> io::Result<String> {
    let name = format!("{id}.{ext}");
    let path = dir.join(&name);
    #[cfg(target_os = "linux")]
    if unnamed::write_and_link(dir, &path, bytes)? {
        return Ok(name);
    }
    write_through_temp(&path, !cfg!(target_os = "linux"), |w| w.write_all(bytes))?;
    Ok(name)
}

#[cfg(target_os = "linux")]
mod unnamed {
    use std::ffi::CString;
    use std::fs::{File, OpenOptions};
    use std::io::{self, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    use std::path::Path;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// The mode to give an unnamed file, when the kernel did not give it the one
    /// `File::create` would: kernels before 6.0 skip the umask for O_TMPFILE on
    /// filesystems without POSIX ACLs, leaving 0666. Checked on the first file only (the
    /// images of a run share one folder), so other writes pay no extra syscall. The umask
    /// comes from /proc/self/status: `umask(2)` cannot read it without setting it, which
    /// would race with other threads creating files.
    fn mode_to_set(file: &File) -> io::Result<Option<u32>> {
        static FIX: OnceLock<Option<u32>> = OnceLock::new();
        if let Some(fix) = FIX.get() {
            return Ok(*fix);
        }
        let umask = std::fs::read_to_string("/proc/self/status").ok().and_then(|status| {
            let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
            u32::from_str_radix(line.trim(), 8).ok()
        });
        let fix = match umask {
            Some(mask) => {
                let wanted = 0o666 & !mask;
                (file.metadata()?.permissions().mode() & 0o777 != wanted).then_some(wanted)
            }
            None => None,
        };
        Ok(*FIX.get_or_init(|| fix))
    }

    /// Set once `O_TMPFILE` or `/proc/self/fd` turned out to be missing: no use asking again.
    static UNSUPPORTED: AtomicBool = AtomicBool::new(false);

    /// Writes `bytes` to an unnamed file in `dir` and links it as `path`. `Ok(false)`: this
    /// way is not available here, or `path` exists; nothing was created, use a temp name.
    pub fn write_and_link(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<bool> {
        if UNSUPPORTED.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let mut file = match OpenOptions::new().write(true).custom_flags(libc::O_TMPFILE).mode(0o666).open(dir) {
            Ok(f) => f,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)) => {
                UNSUPPORTED.store(true, Ordering::Relaxed);
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        if let Some(mode) = mode_to_set(&file)? {
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        file.write_all(bytes)?;
        let from = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).expect("no NUL in a number");
        let to = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: both are valid NUL-terminated paths; `file` keeps the descriptor open.
        let linked = unsafe {
            libc::linkat(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::AT_SYMLINK_FOLLOW)
        };
        if linked == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EEXIST) => Ok(false),
            Some(libc::ENOENT) if !Path::new("/proc/self/fd").is_dir() => {
                UNSUPPORTED.store(true, Ordering::Relaxed);
                Ok(false)
            }
            _ => Err(e),
        }
    }
}

/// Makes every image written into `dir` so far durable, contents and names: one
/// `syncfs` on Linux (a single flush for a whole batch instead of an fsync per image);
/// elsewhere each image was fsynced when written and the folder is synced here.
pub fn make_durable(dir: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // Any descriptor on the filesystem will do: if the images folder itself is gone
        // (moved away under a running batch), its parent, the output folder, serves.
        let folder = File::open(dir).or_else(|e| dir.parent().map_or(Err(e), File::open))?;
        // SAFETY: syncfs only reads the descriptor, which `folder` keeps open.
        if unsafe { libc::syncfs(folder.as_raw_fd()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        sync_dir(dir)
    }
}

/// Whether `bytes` end where their format says the image ends (PNG's IEND chunk, JPEG's
/// end-of-image marker, WebP's RIFF length): a file cut short by a power loss is not.
pub fn is_complete_image(bytes: &[u8]) -> bool {
    match image_extension(bytes) {
        Some("png") => bytes.ends_with(b"\0\0\0\0IEND\xAE\x42\x60\x82"),
        Some("jpg") => {
            let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
            bytes[..end].ends_with(&[0xFF, 0xD9])
        }
        Some("webp") => {
            let riff = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
            bytes.len() >= riff.saturating_add(8)
        }
        _ => false,
    }
}

/// Writes a file through a temporary name in the same folder: flush, fsync, rename,
/// fsync the folder. Readers see the old file or the whole new one, never a part.
pub fn write_atomically(path: &Path, fill: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    write_through_temp(path, true, fill)?;
    sync_dir(parent(path))
}

/// Makes the renames done in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Temp name, flush, (fsync,) rename: the file appears whole or not at all.
fn write_through_temp(path: &Path, fsync: bool, fill: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    let file_name = path.file_name().ok_or_else(|| io::Error::other("no file name"))?.to_string_lossy();
    let temp = parent(path).join(format!(".{file_name}.{}{TEMP_SUFFIX}", std::process::id()));
    let result = (|| {
        let mut w = BufWriter::new(File::create(&temp)?);
        fill(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        if fsync {
            file.sync_all()?;
        }
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// The finished image of row `id`, if a complete one is in place. A file cut short (a
/// power loss before it was flushed) is removed.
pub fn find_image(dir: &Path, id: &str) -> io::Result<Option<String>> {
    for name in EXTENSIONS.iter().map(|ext| format!("{id}.{ext}")) {
        let path = dir.join(&name);
        match fs::read(&path) {
            Ok(bytes) if is_complete_image(&bytes) => return Ok(Some(name)),
            Ok(_) => fs::remove_file(&path)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Removes temporary files a killed process left behind.
pub fn remove_temp_files(dir: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(TEMP_SUFFIX) {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

pub const LOCK_FILE: &str = "bulkgen.lock";

/// An exclusive hold on an output folder for one run: a second run on the same folder is
/// refused while this lives. The kernel drops the lock when the process dies, so a killed
/// run never leaves the folder locked.
pub struct FolderLock {
    _file: File,
}

/// Takes the folder's lock, or says which process holds it.
pub fn lock(root: &Path) -> io::Result<FolderLock> {
    let path = root.join(LOCK_FILE);
    let mut file = fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path)?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)?;
            writeln!(file, "{}", std::process::id())?;
            Ok(FolderLock { _file: file })
        }
        Err(fs::TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "another bulkgen run (pid {}) is using {}: wait for it to finish, or stop it, before starting another",
                fs::read_to_string(&path).unwrap_or_default().trim(),
                root.display()
            ),
        )),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

/// The pid of the run holding the folder, if one does right now.
pub fn active_run(root: &Path) -> Option<String> {
    let path = root.join(LOCK_FILE);
    let file = fs::OpenOptions::new().read(true).write(true).open(&path).ok()?;
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(_) => Some(fs::read_to_string(&path).unwrap_or_default().trim().to_owned()),
    }
}

/// Paths of the output folder.
#[derive(Debug, Clone)]
pub struct OutDir {
    pub root: PathBuf,
    pub images: PathBuf,
}

impl OutDir {
    pub fn create(root: &Path) -> io::Result<OutDir> {
        let images = root.join(IMAGES_DIR);
        fs::create_dir_all(&images)?;
        Ok(OutDir { root: root.to_owned(), images })
    }

    pub fn results(&self) -> PathBuf {
        self.root.join(RESULTS_FILE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_come_from_magic_bytes() {
        assert_eq!(image_extension(b"\x89PNG\r\n\x1a\n...."), Some("png"));
        assert_eq!(image_extension(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("jpg"));
        assert_eq!(image_extension(b"RIFF\x10\0\0\0WEBPVP8 "), Some("webp"));
        assert_eq!(image_extension(b"<html>"), None);
        assert_eq!(image_extension(b""), None);
    }

    #[test]
    fn images_appear_whole_and_temp_files_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let name = write_image(dir.path(), "a-1", "png", b"\x89PNG\r\n\x1a\nbody").unwrap();
        assert_eq!(name, "a-1.png");
        assert_eq!(fs::read(dir.path().join("a-1.png")).unwrap(), b"\x89PNG\r\n\x1a\nbody");
        assert_eq!(find_image(dir.path(), "a-1").unwrap(), None, "no IEND: cut short, removed");
        assert!(!dir.path().join("a-1.png").exists());
        let whole = crate::sim::png::make(100, 1, "x=1");
        write_image(dir.path(), "a-1", "png", &whole).unwrap();
        make_durable(dir.path()).unwrap();
        assert_eq!(find_image(dir.path(), "a-1").unwrap().as_deref(), Some("a-1.png"));
        assert_eq!(find_image(dir.path(), "a-2").unwrap(), None);
        fs::write(dir.path().join(".a-2.png.99.partial"), b"half").unwrap();
        remove_temp_files(dir.path()).unwrap();
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("a-1.png")]);
    }

    #[cfg(unix)]
    #[test]
    fn an_image_written_again_replaces_the_old_one_and_gets_the_usual_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (crate::sim::png::make(100, 1, "v=1"), crate::sim::png::make(200, 2, "v=2"));
        write_image(dir.path(), "a", "png", &old).unwrap();
        write_image(dir.path(), "a", "png", &new).unwrap();
        assert_eq!(fs::read(dir.path().join("a.png")).unwrap(), new);
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("a.png")], "nothing else left behind");
        let plain = dir.path().join("plain");
        File::create(&plain).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("a.png")), mode(&plain));
    }

    #[test]
    fn images_cut_short_are_told_from_whole_ones() {
        let png = crate::sim::png::make(500, 3, "x=1");
        assert!(is_complete_image(&png));
        assert!(!is_complete_image(&png[..png.len() - 1]));
        assert!(!is_complete_image(&png[..png.len() / 2]));
        assert!(is_complete_image(&[0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 0xFF, 0xD9]));
        assert!(!is_complete_image(&[0xFF, 0xD8, 0xFF, 0xE0, 1, 2]));
        let mut webp = b"RIFF\x0c\0\0\0WEBPVP8 ".to_vec();
        webp.resize(20, 0);
        assert!(is_complete_image(&webp));
        assert!(!is_complete_image(&webp[..16]));
        assert!(!is_complete_image(b""));
    }
}
