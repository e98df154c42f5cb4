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

/// The subfolder of `images/` that row `id`'s file goes to with `--shard-dirs`: the first
/// two hex digits of the SHA-256 of the id, so 100,000 images spread over 256 folders of
/// about 400, and a row's folder never changes.
pub fn shard_of(id: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("{:02x}", Sha256::digest(id.as_bytes())[0])
}

/// Whether `name` is a shard folder's name (two lowercase hex digits).
pub fn is_shard(name: &str) -> bool {
    name.len() == 2 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The folders of `images` that hold image files: itself and its shard folders (none if
/// it does not exist).
pub fn image_folders(images: &Path) -> io::Result<Vec<(PathBuf, String)>> {
    let entries = match fs::read_dir(images) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut folders = vec![(images.to_owned(), String::new())];
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_shard(&name) && entry.file_type()?.is_dir() {
            folders.push((entry.path(), format!("{name}/")));
        }
    }
    Ok(folders)
}

/// Writes `bytes` as `<dir>/<id>.<ext>` (with `shard`, `<dir>/<shard_of(id)>/<id>.<ext>`)
/// and returns the file's name relative to `dir`. The caller has checked the bytes are an
/// image (`ext` from [`image_extension`]).
///
/// The file appears whole to every reader, but it is not yet durable: the checkpoint
/// calls [`make_durable`] once per batch of "done" marks, before committing them, so one
/// flush covers many images. On Linux the bytes go to an unnamed file (`O_TMPFILE`) that
/// is then linked into place: one directory entry made, where a temp name and a rename
/// make three changes (the kernel's directory work was the largest part of bulkgen's CPU
/// at high rates). Where that is not possible (a filesystem without `O_TMPFILE`, no
/// `/proc`, or an existing file to replace), a temp name and a rename do the same.
pub fn write_image(dir: &Path, id: &str, ext: &str, bytes: &[u8], shard: bool) -> io::Result<String> {
    let name = if shard { format!("{}/{id}.{ext}", shard_of(id)) } else { format!("{id}.{ext}") };
    let path = dir.join(&name);
    let folder = path.parent().unwrap_or(dir);
    if shard {
        fs::create_dir_all(folder)?;
    }
    #[cfg(target_os = "linux")]
    if unnamed::write_and_link(folder, &path, bytes)? {
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

/// Whether `bytes` are a structurally complete image: see [`check_image`].
pub fn is_complete_image(bytes: &[u8]) -> bool {
    check_image(bytes).is_ok()
}

/// The extension of `bytes` if they are a structurally complete PNG, JPEG or WebP; else
/// what is wrong, worded to follow "the base64 data" or "the download" (e.g. "is a PNG
/// cut short: ..."). Every path that takes image bytes (answers of both dialects,
/// downloads, the stash, files found after a crash) goes through this, so a PNG
/// signature in front of an HTML page, or an image cut in half, is never marked done.
///
/// The checks are of structure, not pixels: cheap enough for every image (a CRC pass
/// over a PNG), and what a cut or a wrong body breaks.
pub fn check_image(bytes: &[u8]) -> Result<&'static str, String> {
    let ext =
        image_extension(bytes).ok_or_else(|| format!("is not a PNG, JPEG or WebP image ({} bytes)", bytes.len()))?;
    match ext {
        "png" => check_png(bytes),
        "jpg" => check_jpeg(bytes),
        _ => check_webp(bytes),
    }
    .map(|()| ext)
}

/// Bytes after the end of an image: zero padding is tolerated (some writers pad to a
/// block), anything else means the body is not (only) the image.
fn trailing(format: &str, bytes: &[u8], end: usize) -> Result<(), String> {
    match bytes.get(end..).unwrap_or_default().iter().filter(|b| **b != 0).count() {
        0 => Ok(()),
        _ => {
            Err(format!("is a damaged {format}: {} bytes follow the end of the image at byte {end}", bytes.len() - end))
        }
    }
}

/// PNG (W3C PNG Specification, Third Edition, 5.3 "Chunk layout" and 5.6 "Chunk
/// ordering"): after the 8-byte signature, chunks of a 4-byte big-endian length (at most
/// 2^31 - 1), a 4-byte type of ASCII letters, the data and a CRC-32 of type and data;
/// IHDR first, IEND last.
fn check_png(bytes: &[u8]) -> Result<(), String> {
    const MAX_CHUNK: u64 = (1 << 31) - 1;
    let mut at = 8usize;
    loop {
        let Some(head) = bytes.get(at..at + 8) else {
            return Err(format!("is a PNG cut short: it ends at byte {} without an IEND chunk", bytes.len()));
        };
        let len = u64::from(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
        let kind = &head[4..8];
        let name = String::from_utf8_lossy(kind).into_owned();
        if !kind.iter().all(u8::is_ascii_alphabetic) || len > MAX_CHUNK {
            return Err(format!("is a damaged PNG: the bytes at {at} are not a chunk (type {name:?}, length {len})"));
        }
        if at == 8 && kind != b"IHDR" {
            return Err(format!("is a damaged PNG: its first chunk is {name}, not IHDR"));
        }
        let end = (at as u64).saturating_add(12 + len);
        if end > bytes.len() as u64 {
            return Err(format!(
                "is a PNG cut short: chunk {name} at byte {at} needs {} bytes, {} are left",
                12 + len,
                bytes.len() - at
            ));
        }
        let end = end as usize;
        let stored = u32::from_be_bytes([bytes[end - 4], bytes[end - 3], bytes[end - 2], bytes[end - 1]]);
        if crc32fast::hash(&bytes[at + 4..end - 4]) != stored {
            return Err(format!("is a damaged PNG: chunk {name} at byte {at} fails its CRC"));
        }
        if kind == b"IEND" {
            return trailing("PNG", bytes, end);
        }
        at = end;
    }
}

/// JPEG (ITU-T T.81, Annex B.1.1 and B.2): SOI, then marker segments (0xFF, a marker
/// code, a 2-byte big-endian length that counts itself) up to EOI; after each SOS, the
/// entropy-coded data, in which 0xFF is followed only by 0x00 (stuffing) or RST0-7
/// before the next marker. The segments are walked by their lengths, so the EOI of a
/// thumbnail inside an APP1 segment does not pass for the end of a file cut there.
fn check_jpeg(bytes: &[u8]) -> Result<(), String> {
    let short = |what: &str| format!("is a JPEG cut short: it ends at byte {} {what}", bytes.len());
    let mut at = 2usize;
    loop {
        match bytes.get(at) {
            None => return Err(short("without an end-of-image marker")),
            Some(0xFF) => {}
            Some(b) => return Err(format!("is a damaged JPEG: byte {at} is {b:#04x} where a marker was expected")),
        }
        // Any number of 0xFF fill bytes may come before a marker code (B.1.1.2).
        while bytes.get(at) == Some(&0xFF) {
            at += 1;
        }
        let Some(&marker) = bytes.get(at) else { return Err(short("inside a marker")) };
        at += 1;
        match marker {
            0xD9 => return trailing("JPEG", bytes, at),
            // TEM and RST0-7 stand alone.
            0x01 | 0xD0..=0xD7 => {}
            0x00 | 0xD8 => return Err(format!("is a damaged JPEG: marker {marker:#04x} at byte {}", at - 2)),
            _ => {
                let Some(len) = bytes.get(at..at + 2).map(|l| usize::from(u16::from_be_bytes([l[0], l[1]]))) else {
                    return Err(short("inside a segment header"));
                };
                if len < 2 {
                    return Err(format!(
                        "is a damaged JPEG: segment {marker:#04x} at byte {} has length {len}",
                        at - 2
                    ));
                }
                if at + len > bytes.len() {
                    return Err(short(&format!("inside segment {marker:#04x}, which needs {len} bytes")));
                }
                at += len;
                if marker == 0xDA {
                    at = scan_end(bytes, at).ok_or_else(|| short("inside the image data"))?;
                }
            }
        }
    }
}

/// Where the entropy-coded data that starts at `at` ends: the next 0xFF that is neither
/// stuffing (0xFF00) nor a restart marker, nor a fill byte before a marker.
fn scan_end(bytes: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let ff = at + bytes.get(at..)?.iter().position(|b| *b == 0xFF)?;
        match *bytes.get(ff + 1)? {
            0x00 | 0xD0..=0xD7 => at = ff + 2,
            _ => return Some(ff),
        }
    }
}

/// WebP (Google, "WebP Container Specification", RIFF file format): "RIFF", a 4-byte
/// little-endian size of what follows it, "WEBP", then chunks of a FourCC, a 4-byte
/// little-endian size and the payload, padded to an even length. The size must be the
/// file's length minus 8 (one pad byte more is tolerated) and the chunks must fill it.
fn check_webp(bytes: &[u8]) -> Result<(), String> {
    let size = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    let end = size.saturating_add(8);
    if end > bytes.len() {
        return Err(format!("is a WebP cut short: its header says {end} bytes, {} came", bytes.len()));
    }
    if bytes.len() - end > 1 {
        return Err(format!("is a damaged WebP: its header says {end} bytes, {} came", bytes.len()));
    }
    let mut at = 12usize;
    if at >= end {
        return Err("is a damaged WebP: it holds no chunk".to_owned());
    }
    while at < end {
        let Some(head) = bytes.get(at..at + 8).filter(|_| at + 8 <= end) else {
            return Err(format!("is a damaged WebP: a chunk header at byte {at} runs past its end ({end})"));
        };
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let payload_end = (at + 8).saturating_add(len);
        if payload_end > end {
            return Err(format!(
                "is a WebP cut short: chunk {} at byte {at} needs {len} bytes, {} are left",
                String::from_utf8_lossy(&head[..4]),
                end - at - 8
            ));
        }
        at = payload_end + (len & 1);
    }
    Ok(())
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

/// The finished image of row `id`, if a complete one is in place that `accept` takes
/// (recovery refuses the image of a row's earlier identity). A file cut short (a power
/// loss before it was flushed) is removed.
pub fn find_image(dir: &Path, id: &str, accept: impl Fn(&[u8]) -> bool) -> io::Result<Option<String>> {
    // Either layout: a folder's runs may have used --shard-dirs or not.
    let shard = shard_of(id);
    let names = EXTENSIONS.iter().flat_map(|ext| [format!("{id}.{ext}"), format!("{shard}/{id}.{ext}")]);
    for name in names {
        let path = dir.join(&name);
        match fs::read(&path) {
            Ok(bytes) if is_complete_image(&bytes) => {
                if accept(&bytes) {
                    return Ok(Some(name));
                }
            }
            Ok(_) => fs::remove_file(&path)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Removes temporary files a killed process left behind (in shard folders too).
pub fn remove_temp_files(dir: &Path) -> io::Result<()> {
    for (folder, _) in image_folders(dir)? {
        for entry in fs::read_dir(&folder)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(TEMP_SUFFIX) {
                fs::remove_file(entry.path())?;
            }
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

/// Width and height of a PNG, JPEG or WebP, read from its header (PNG: IHDR, ITU-T T.81
/// B.2.2: the first SOFn frame header; WebP container spec: VP8X canvas, VP8L or VP8
/// frame header). None when the header does not say.
pub fn dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    let be16 = |at: usize| bytes.get(at..at + 2).map(|b| u32::from(u16::from_be_bytes([b[0], b[1]])));
    let le = |at: usize, n: usize| {
        bytes.get(at..at + n).map(|b| b.iter().rev().fold(0u32, |acc, byte| (acc << 8) | u32::from(*byte)))
    };
    match image_extension(bytes)? {
        "png" => {
            let ihdr = bytes.get(16..24)?;
            let w = u32::from_be_bytes([ihdr[0], ihdr[1], ihdr[2], ihdr[3]]);
            let h = u32::from_be_bytes([ihdr[4], ihdr[5], ihdr[6], ihdr[7]]);
            Some((w, h))
        }
        "jpg" => {
            let mut at = 2usize;
            loop {
                while bytes.get(at) == Some(&0xFF) {
                    at += 1;
                }
                let marker = *bytes.get(at)?;
                at += 1;
                match marker {
                    0x01 | 0xD0..=0xD7 => continue,
                    0xD9 | 0xDA => return None,
                    // SOF0-3, 5-7, 9-11, 13-15: length, precision, height, width.
                    0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                        return Some((be16(at + 5)?, be16(at + 3)?));
                    }
                    _ => at += be16(at)? as usize,
                }
            }
        }
        _ => match bytes.get(12..16)? {
            b"VP8X" => Some((le(24, 3)? + 1, le(27, 3)? + 1)),
            b"VP8L" => {
                let bits = le(21, 4)?;
                Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
            }
            b"VP8 " => Some((le(26, 2)? & 0x3FFF, le(28, 2)? & 0x3FFF)),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_come_from_each_formats_header() {
        let png = crate::sim::png::make(2_000, 1, "x");
        let ihdr = &png[16..24];
        let want = (
            u32::from_be_bytes([ihdr[0], ihdr[1], ihdr[2], ihdr[3]]),
            u32::from_be_bytes([ihdr[4], ihdr[5], ihdr[6], ihdr[7]]),
        );
        assert_eq!(dimensions(&png), Some(want));
        // JPEG: SOI, an APP0 segment to skip, then SOF0 (length 17, precision 8, height 600,
        // width 800).
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00, 0xFF, 0xC0, 0x00, 0x11, 0x08];
        jpeg.extend([0x02, 0x58, 0x03, 0x20]);
        assert_eq!(dimensions(&jpeg), Some((800, 600)));
        // A DHT (0xC4) is not a frame header.
        let dht = [0xFF, 0xD8, 0xFF, 0xC4, 0x00, 0x04, 0x00, 0x00, 0xFF, 0xDA];
        assert_eq!(dimensions(&dht), None);
        let webp = |chunk: &[u8], data: &[u8]| {
            let mut b = b"RIFF\0\0\0\0WEBP".to_vec();
            b.extend(chunk);
            b.extend([0u8; 4]);
            b.extend(data);
            b
        };
        // VP8X: flags, 3 reserved, canvas width-1 and height-1 in 24 bits each.
        assert_eq!(dimensions(&webp(b"VP8X", &[0, 0, 0, 0, 0xFF, 0x03, 0, 0x37, 0x02, 0])), Some((1024, 568)));
        // VP8L: signature 0x2f, then 14 bits width-1 and 14 bits height-1.
        let bits: u32 = 99 | (49 << 14);
        let mut l = vec![0x2f];
        l.extend(bits.to_le_bytes());
        assert_eq!(dimensions(&webp(b"VP8L", &l)), Some((100, 50)));
        // VP8: 3-byte frame tag, start code, 14-bit width and height.
        let v = [0, 0, 0, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xF0, 0x00];
        assert_eq!(dimensions(&webp(b"VP8 ", &v)), Some((320, 240)));
        assert_eq!(dimensions(b"GIF89a"), None);
    }

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
        let name = write_image(dir.path(), "a-1", "png", b"\x89PNG\r\n\x1a\nbody", false).unwrap();
        assert_eq!(name, "a-1.png");
        assert_eq!(fs::read(dir.path().join("a-1.png")).unwrap(), b"\x89PNG\r\n\x1a\nbody");
        assert_eq!(find_image(dir.path(), "a-1", |_| true).unwrap(), None, "no IEND: cut short, removed");
        assert!(!dir.path().join("a-1.png").exists());
        let whole = crate::sim::png::make(100, 1, "x=1");
        write_image(dir.path(), "a-1", "png", &whole, false).unwrap();
        make_durable(dir.path()).unwrap();
        assert_eq!(find_image(dir.path(), "a-1", |_| true).unwrap().as_deref(), Some("a-1.png"));
        assert_eq!(find_image(dir.path(), "a-2", |_| true).unwrap(), None);
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
        write_image(dir.path(), "a", "png", &old, false).unwrap();
        write_image(dir.path(), "a", "png", &new, false).unwrap();
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
        assert!(is_complete_image(&jpeg()));
        assert!(!is_complete_image(&[0xFF, 0xD8, 0xFF, 0xE0, 1, 2]));
        assert!(is_complete_image(&webp()));
        assert!(!is_complete_image(&webp()[..16]));
        assert!(!is_complete_image(b""));
    }

    /// SOI, an APP1 segment holding a whole thumbnail (its own SOI .. EOI), SOS, image
    /// data with a stuffed 0xFF00 and a restart marker, EOI.
    fn jpeg() -> Vec<u8> {
        let thumb = [0xFF, 0xD8, 0xFF, 0xD9];
        let mut j = vec![0xFF, 0xD8, 0xFF, 0xE1, 0, 2 + thumb.len() as u8];
        j.extend_from_slice(&thumb);
        j.extend_from_slice(&[0xFF, 0xDA, 0, 4, 1, 2]);
        j.extend_from_slice(&[9, 8, 0xFF, 0x00, 7, 0xFF, 0xD0, 6, 5]);
        j.extend_from_slice(&[0xFF, 0xD9]);
        j
    }

    /// RIFF, the size, WEBP, one odd-sized VP8L chunk and its pad byte.
    fn webp() -> Vec<u8> {
        let mut w = b"RIFF\0\0\0\0WEBPVP8L\x05\0\0\0\x2f\x01\x02\x03\x04\0".to_vec();
        let size = (w.len() - 8) as u32;
        w[4..8].copy_from_slice(&size.to_le_bytes());
        w
    }

    fn why(bytes: &[u8]) -> String {
        check_image(bytes).unwrap_err()
    }

    #[test]
    fn a_png_counts_only_with_every_chunk_whole_and_its_crc_right() {
        let png = crate::sim::png::make(2_000, 4, "x=1");
        assert_eq!(check_image(&png), Ok("png"));
        // Zero padding after IEND is tolerated; other bytes are not.
        assert_eq!(check_image(&[png.clone(), vec![0; 7]].concat()), Ok("png"));
        assert!(why(&[png.clone(), b"<html>".to_vec()].concat()).contains("follow the end"));
        // A PNG signature in front of an HTML page.
        let html = [b"\x89PNG\r\n\x1a\n".as_slice(), b"<html><body>502 Bad Gateway</body></html>"].concat();
        assert!(why(&html).starts_with("is a damaged PNG"), "{}", why(&html));
        // Cut in half, cut inside a chunk header, cut just before IEND.
        assert!(why(&png[..png.len() / 2]).starts_with("is a PNG cut short: chunk IDAT"), "{}", why(&png[..1000]));
        assert!(why(&png[..png.len() - 12]).contains("without an IEND chunk"));
        assert!(why(&png[..png.len() - 8]).starts_with("is a PNG cut short"));
        // One flipped bit in the pixels: the IDAT CRC fails.
        let mut flipped = png.clone();
        flipped[png.len() / 2] ^= 0x10;
        assert!(why(&flipped).contains("IDAT") && why(&flipped).contains("CRC"), "{}", why(&flipped));
        // A length past what the format allows.
        let mut huge = png.clone();
        huge[8..12].copy_from_slice(&0x8000_0000u32.to_be_bytes());
        assert!(why(&huge).starts_with("is a damaged PNG"));
        // IHDR must come first.
        let no_ihdr = [&png[..8], &png[8 + 25..]].concat();
        assert!(why(&no_ihdr).contains("not IHDR"), "{}", why(&no_ihdr));
        assert_eq!(why(b"\x89PNG\r\n\x1a\n"), "is a PNG cut short: it ends at byte 8 without an IEND chunk");
    }

    #[test]
    fn a_jpeg_counts_only_from_its_start_to_its_end_of_image_marker() {
        let j = jpeg();
        assert_eq!(check_image(&j), Ok("jpg"));
        assert_eq!(check_image(&[j.clone(), vec![0; 3]].concat()), Ok("jpg"));
        assert!(why(&[j.clone(), vec![1]].concat()).contains("follow the end"));
        // Cut anywhere: also right after the thumbnail's EOI, which ends in FF D9 too.
        for cut in 2..j.len() {
            assert!(check_image(&j[..cut]).is_err(), "cut at {cut} passed");
        }
        let after_thumb = &j[..10];
        assert!(after_thumb.ends_with(&[0xFF, 0xD9]));
        assert!(why(after_thumb).starts_with("is a JPEG cut short"), "{}", why(after_thumb));
        // JPEG magic in front of text.
        assert!(check_image(b"\xFF\xD8\xFF<html><body>oops</body></html>").is_err());
        assert!(why(&[0xFF, 0xD8, 0x3C, 0x68]).starts_with("is not a PNG"));
        // Fill bytes before a marker are allowed.
        let filled = [&j[..2], &[0xFF, 0xFF], &j[2..]].concat();
        assert_eq!(check_image(&filled), Ok("jpg"));
    }

    #[test]
    fn a_webp_counts_only_when_its_riff_size_is_the_file_size() {
        let w = webp();
        assert_eq!(check_image(&w), Ok("webp"));
        // One pad byte more than the header says is tolerated.
        assert_eq!(check_image(&[w.clone(), vec![0]].concat()), Ok("webp"));
        assert!(why(&[w.clone(), vec![0, 0]].concat()).starts_with("is a damaged WebP"));
        for cut in 12..w.len() {
            assert!(why(&w[..cut]).starts_with("is a WebP cut short"), "cut at {cut}: {}", why(&w[..cut]));
        }
        // The header claims more than the chunks hold: a chunk runs past.
        let mut lying = w.clone();
        lying[16..20].copy_from_slice(&100u32.to_le_bytes());
        assert!(why(&lying).contains("cut short"), "{}", why(&lying));
        assert!(why(b"RIFF\x04\0\0\0WEBP").contains("no chunk"));
        assert!(why(b"RIFF\xff\xff\xff\xffWEBP").contains("cut short"));
    }
}
