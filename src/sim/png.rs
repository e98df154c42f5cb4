//! Real PNG files for the simulator, small and identifiable: every image carries a
//! `tEXt` chunk naming the prompt it was made for, so tests can check that each output
//! file belongs to its row. Pixels are stored uncompressed, so the file size is exactly
//! what the caller asks for (useful for benchmarks).

use std::collections::HashMap;

const SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";
pub const TAG_KEYWORD: &str = "bulkgen-sim";

/// A short, stable fingerprint of a prompt (FNV-1a, 64 bits, hex).
pub fn prompt_tag(prompt: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in prompt.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// An RGB PNG of about `bytes` bytes whose pixels derive from `tag`, with `text` (as
/// `key=value;...`) in a tEXt chunk.
pub fn make(bytes: usize, seed: u64, text: &str) -> Vec<u8> {
    let side = (((bytes.max(64)) as f64 / 3.0).sqrt() as u32).max(1);
    let (w, h) = (side, side);
    let row = w as usize * 3;
    let mut raw = vec![0u8; (row + 1) * h as usize];
    let mut x = seed | 1;
    // xorshift, 8 bytes a step: cheap noise, different for every prompt. Each row starts
    // with filter byte 0 (none).
    for line in raw.chunks_exact_mut(row + 1) {
        for bytes in line[1..].chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.copy_from_slice(&x.to_le_bytes()[..bytes.len()]);
        }
    }
    let mut out = Vec::with_capacity(raw.len() + 256);
    out.extend_from_slice(SIGNATURE);
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    chunk(&mut out, b"IHDR", &ihdr);
    let mut t = Vec::with_capacity(TAG_KEYWORD.len() + 1 + text.len());
    t.extend_from_slice(TAG_KEYWORD.as_bytes());
    t.push(0);
    t.extend_from_slice(text.as_bytes());
    chunk(&mut out, b"tEXt", &t);
    chunk(&mut out, b"IDAT", &zlib_stored(&raw));
    chunk(&mut out, b"IEND", &[]);
    out
}

/// The key=value pairs of the simulator's tEXt chunk, if `png` is one of its images.
pub fn read_tag(png: &[u8]) -> Option<HashMap<String, String>> {
    let mut rest = png.strip_prefix(SIGNATURE)?;
    while rest.len() >= 12 {
        let len = u32::from_be_bytes(rest[0..4].try_into().ok()?) as usize;
        let kind = &rest[4..8];
        let data = rest.get(8..8 + len)?;
        if kind == b"tEXt" {
            let (key, value) = data.split_at(data.iter().position(|b| *b == 0)?);
            if key == TAG_KEYWORD.as_bytes() {
                let text = std::str::from_utf8(&value[1..]).ok()?;
                return Some(
                    text.split(';')
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                );
            }
        }
        rest = rest.get(12 + len..)?;
    }
    None
}

/// What a simulator image says it was made from: the sha256 (lower-case hex) of every
/// reference received, in order (an edit's images, a Gemini request's `inlineData` and
/// `fileData` parts, a file counting as its uploaded content), and of the edit's mask.
/// Empty and `None` for an image made from a prompt alone, or not the simulator's.
pub fn read_refs(png: &[u8]) -> (Vec<String>, Option<String>) {
    let Some(tag) = read_tag(png) else { return (Vec::new(), None) };
    let refs = tag
        .get("refs")
        .map(|r| r.split(',').filter(|h| !h.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    (refs, tag.get("mask").cloned())
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A zlib stream of stored (uncompressed) deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 65535 * 5 + 16);
    out.extend_from_slice(&[0x78, 0x01]);
    let mut blocks = data.chunks(65535).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xFF, 0xFF]);
    }
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

/// Adler-32, reduced once per 5,552 bytes (the most that cannot overflow a u32).
fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for block in data.chunks(5552) {
        for byte in block {
            a += u32::from(*byte);
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_carry_their_tag_and_have_the_asked_size() {
        let png = make(50_000, 7, "prompt=abc;n=3");
        assert!(png.starts_with(SIGNATURE));
        assert!((45_000..55_000).contains(&png.len()), "{}", png.len());
        let tag = read_tag(&png).unwrap();
        assert_eq!(tag["prompt"], "abc");
        assert_eq!(tag["n"], "3");
        assert!(read_tag(b"\x89PNG\r\n\x1a\n").is_none());
        assert!(read_tag(b"GIF89a").is_none());
    }

    #[test]
    fn references_and_mask_read_back_in_order() {
        let png = make(100, 1, "prompt=abc;n=1;refs=aa,bb;mask=cc");
        assert_eq!(read_refs(&png), (vec!["aa".to_owned(), "bb".to_owned()], Some("cc".to_owned())));
        assert_eq!(read_refs(&make(100, 1, "prompt=abc")), (Vec::new(), None));
        assert_eq!(read_refs(b"not a png"), (Vec::new(), None));
    }

    #[test]
    fn adler32_matches_the_definition_even_where_sums_would_overflow() {
        let naive = |data: &[u8]| {
            let (mut a, mut b) = (1u64, 0u64);
            for byte in data {
                a = (a + u64::from(*byte)) % 65521;
                b = (b + a) % 65521;
            }
            ((b << 16) | a) as u32
        };
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        for data in [vec![0xFF; 50_000], make(20_000, 3, "x")] {
            assert_eq!(adler32(&data), naive(&data));
        }
    }

    #[test]
    fn prompt_tags_differ_by_prompt() {
        assert_eq!(prompt_tag("a cat"), prompt_tag("a cat"));
        assert_ne!(prompt_tag("a cat"), prompt_tag("a cat "));
        assert_eq!(prompt_tag("").len(), 16);
    }
}
