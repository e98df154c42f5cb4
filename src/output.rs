//! Files in the output folder. An image appears only complete: it is written under a
//! temporary name, flushed to disk, then renamed into place (and the folder synced), so
//! a file named `<id>.<ext>` is always a whole image.

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
pub fn write_image(dir: &Path, id: &str, ext: &str, bytes: &[u8]) -> io::Result<String> {
    let name = format!("{id}.{ext}");
    write_atomically(&dir.join(&name), |w| w.write_all(bytes))?;
    Ok(name)
}

/// Writes a file through a temporary name in the same folder: flush, fsync, rename,
/// fsync the folder. Readers see the old file or the whole new one, never a part.
pub fn write_atomically(path: &Path, fill: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file_name = path.file_name().ok_or_else(|| io::Error::other("no file name"))?.to_string_lossy();
    let temp = dir.join(format!(".{file_name}.{}{TEMP_SUFFIX}", std::process::id()));
    let result = (|| {
        let mut w = BufWriter::new(File::create(&temp)?);
        fill(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// The finished image of row `id`, if one is in place.
pub fn find_image(dir: &Path, id: &str) -> Option<String> {
    EXTENSIONS.iter().map(|ext| format!("{id}.{ext}")).find(|name| dir.join(name).is_file())
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
        assert_eq!(find_image(dir.path(), "a-1").as_deref(), Some("a-1.png"));
        assert_eq!(find_image(dir.path(), "a-2"), None);
        fs::write(dir.path().join(".a-2.png.99.partial"), b"half").unwrap();
        remove_temp_files(dir.path()).unwrap();
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("a-1.png")]);
    }
}
