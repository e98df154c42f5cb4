//! Image sizes as rows ask for them: the resolution classes (512, 1K, 2K, 4K) that
//! timeouts, prices and the latency report are keyed by, explicit `WxH` pixel sizes, and
//! `W:H` aspect ratios. Which of these a model renders, and how a class becomes what is
//! sent, is model knowledge: it lives in the catalogue (`catalog.rs`), not here.

use std::fmt;
use std::str::FromStr;

/// A resolution class. Timeouts, prices and the report are per class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resolution {
    Px512,
    K1,
    K2,
    K4,
}

/// Pixel counts that separate the classes: up to 0.4 MP is 512; 2048x1024 (2.1 MP) is
/// still 1K; 2752x1536 and 2400x1792 (about 4.3 MP) are 2K; above about 8.4 MP is 4K.
const MAX_512_PIXELS: u64 = 400_000;
const MAX_1K_PIXELS: u64 = 2_100_000;
const MAX_2K_PIXELS: u64 = 8_400_000;

impl Resolution {
    pub const ALL: [Resolution; 4] = [Resolution::Px512, Resolution::K1, Resolution::K2, Resolution::K4];

    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Px512 => "512",
            Resolution::K1 => "1K",
            Resolution::K2 => "2K",
            Resolution::K4 => "4K",
        }
    }

    pub fn parse(s: &str) -> Option<Resolution> {
        match s.trim().to_ascii_uppercase().as_str() {
            "512" => Some(Resolution::Px512),
            "1K" => Some(Resolution::K1),
            "2K" => Some(Resolution::K2),
            "4K" => Some(Resolution::K4),
            _ => None,
        }
    }

    pub fn from_pixels(width: u32, height: u32) -> Resolution {
        let pixels = u64::from(width) * u64::from(height);
        if pixels <= MAX_512_PIXELS {
            Resolution::Px512
        } else if pixels <= MAX_1K_PIXELS {
            Resolution::K1
        } else if pixels <= MAX_2K_PIXELS {
            Resolution::K2
        } else {
            Resolution::K4
        }
    }

    /// Position in `ALL`, for per-class arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The size a row asks for: a class, or exact pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Class(Resolution),
    Pixels { width: u32, height: u32 },
}

/// Largest edge we accept in a `WxH` size; no provider renders more.
const MAX_EDGE: u32 = 16_384;

impl Size {
    pub fn resolution(self) -> Resolution {
        match self {
            Size::Class(r) => r,
            Size::Pixels { width, height } => Resolution::from_pixels(width, height),
        }
    }
}

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Size, String> {
        let t = s.trim();
        if let Some(r) = Resolution::parse(t) {
            return Ok(Size::Class(r));
        }
        let bad = || format!("unknown size {s:?}: use 512, 1K, 2K, 4K or WIDTHxHEIGHT such as 1024x1536");
        let (w, h) = t.split_once(['x', 'X']).ok_or_else(bad)?;
        let width: u32 = w.trim().parse().map_err(|_| bad())?;
        let height: u32 = h.trim().parse().map_err(|_| bad())?;
        if width == 0 || height == 0 || width > MAX_EDGE || height > MAX_EDGE {
            return Err(format!("size {s:?} is out of range: each side must be 1..={MAX_EDGE} pixels"));
        }
        Ok(Size::Pixels { width, height })
    }
}

impl serde::Serialize for Size {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Size::Class(r) => f.write_str(r.as_str()),
            Size::Pixels { width, height } => write!(f, "{width}x{height}"),
        }
    }
}

/// An aspect ratio `W:H` as written (16:9 stays 16:9, never 32:18 reduced). Which ratios
/// a model takes is in the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AspectRatio {
    pub w: u32,
    pub h: u32,
}

impl AspectRatio {
    pub const SQUARE: AspectRatio = AspectRatio { w: 1, h: 1 };

    /// `W:H` with both sides whole numbers from 1 to 100.
    pub fn parse(s: &str) -> Option<AspectRatio> {
        let (w, h) = s.trim().split_once(':')?;
        let (w, h): (u32, u32) = (w.trim().parse().ok()?, h.trim().parse().ok()?);
        ((1..=100).contains(&w) && (1..=100).contains(&h)).then_some(AspectRatio { w, h })
    }

    /// Width over height.
    pub fn value(self) -> f64 {
        f64::from(self.w) / f64::from(self.h)
    }

    /// Whether `width x height` has exactly this ratio.
    pub fn matches(self, width: u32, height: u32) -> bool {
        u64::from(width) * u64::from(self.h) == u64::from(height) * u64::from(self.w)
    }

    /// How far apart two ratios are, on a log scale (2:1 is as far from 1:1 as 1:2).
    pub fn distance(a: f64, b: f64) -> f64 {
        (a.ln() - b.ln()).abs()
    }
}

impl fmt::Display for AspectRatio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.w, self.h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_parse_in_any_case() {
        assert_eq!("1k".parse::<Size>(), Ok(Size::Class(Resolution::K1)));
        assert_eq!(" 4K ".parse::<Size>(), Ok(Size::Class(Resolution::K4)));
        assert_eq!("512".parse::<Size>(), Ok(Size::Class(Resolution::Px512)));
    }

    #[test]
    fn pixel_sizes_map_to_classes_by_pixel_count() {
        let class = |s: &str| s.parse::<Size>().unwrap().resolution();
        assert_eq!(class("512x512"), Resolution::Px512);
        assert_eq!(class("1024x1024"), Resolution::K1);
        assert_eq!(class("1376x768"), Resolution::K1);
        assert_eq!(class("2048x1024"), Resolution::K1);
        assert_eq!(class("1536x2752"), Resolution::K2);
        assert_eq!(class("2048x2048"), Resolution::K2);
        assert_eq!(class("3840x2160"), Resolution::K2);
        assert_eq!(class("4096x4096"), Resolution::K4);
    }

    #[test]
    fn bad_sizes_say_what_is_accepted() {
        for bad in ["3K", "big", "1024", "0x1024", "1024x", "99999x10", "-1x5"] {
            let err = bad.parse::<Size>().unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn aspect_ratios_are_any_w_h_and_keep_their_spelling() {
        assert_eq!(AspectRatio::parse("16:9").unwrap().to_string(), "16:9");
        assert_eq!(AspectRatio::parse(" 1:8 ").unwrap().to_string(), "1:8");
        assert!(AspectRatio::parse("16:9").unwrap().matches(1920, 1080));
        assert!(!AspectRatio::parse("4:3").unwrap().matches(1920, 1080));
        for bad in ["wide", "16/9", "0:1", "1:", "101:1"] {
            assert!(AspectRatio::parse(bad).is_none(), "{bad}");
        }
    }
}
