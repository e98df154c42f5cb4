//! Image sizes: the resolution classes (1K, 2K, 4K) that timeouts, prices and the latency
//! report are keyed by, explicit `WxH` pixel sizes, and Gemini aspect ratios.

use std::fmt;
use std::str::FromStr;

/// A resolution class. Timeouts, prices and the report are per class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resolution {
    K1,
    K2,
    K4,
}

/// Pixel counts that separate the classes: 2048x1024 (2.1 MP) is still 1K, 2752x1536 and
/// 2400x1792 (about 4.3 MP) are 2K, anything above about 8.4 MP is 4K.
const MAX_1K_PIXELS: u64 = 2_100_000;
const MAX_2K_PIXELS: u64 = 8_400_000;

impl Resolution {
    pub const ALL: [Resolution; 3] = [Resolution::K1, Resolution::K2, Resolution::K4];

    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::K1 => "1K",
            Resolution::K2 => "2K",
            Resolution::K4 => "4K",
        }
    }

    pub fn parse(s: &str) -> Option<Resolution> {
        match s.trim().to_ascii_uppercase().as_str() {
            "1K" => Some(Resolution::K1),
            "2K" => Some(Resolution::K2),
            "4K" => Some(Resolution::K4),
            _ => None,
        }
    }

    pub fn from_pixels(width: u32, height: u32) -> Resolution {
        let pixels = u64::from(width) * u64::from(height);
        if pixels <= MAX_1K_PIXELS {
            Resolution::K1
        } else if pixels <= MAX_2K_PIXELS {
            Resolution::K2
        } else {
            Resolution::K4
        }
    }

    fn multiplier(self) -> u32 {
        match self {
            Resolution::K1 => 1,
            Resolution::K2 => 2,
            Resolution::K4 => 4,
        }
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

    /// The `size` field of an OpenAI-compatible request: classes become pixels, square
    /// unless an aspect ratio asks otherwise (Gemini 3 Pro Image's table); `WxH` as is.
    pub fn openai_pixels(self, aspect: Option<AspectRatio>) -> String {
        match self {
            Size::Pixels { width, height } => format!("{width}x{height}"),
            Size::Class(r) => {
                let (w, h) = aspect.unwrap_or(AspectRatio::SQUARE).pixels_1k();
                let m = r.multiplier();
                format!("{}x{}", w * m, h * m)
            }
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
        let bad = || format!("unknown size {s:?}: use 1K, 2K, 4K or WIDTHxHEIGHT such as 1024x1536");
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

/// An aspect ratio Gemini image models accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AspectRatio(&'static str);

/// Gemini 3 Pro Image's 1K pixel sizes per aspect ratio; 2K doubles and 4K quadruples
/// each side (wire-formats.md lists 1:1, 16:9, 9:16, 4:3, 3:4; the rest follow Google's
/// published table).
const ASPECTS: [(&str, u32, u32); 10] = [
    ("1:1", 1024, 1024),
    ("2:3", 848, 1264),
    ("3:2", 1264, 848),
    ("3:4", 896, 1200),
    ("4:3", 1200, 896),
    ("4:5", 928, 1152),
    ("5:4", 1152, 928),
    ("9:16", 768, 1376),
    ("16:9", 1376, 768),
    ("21:9", 1584, 672),
];

impl AspectRatio {
    pub const SQUARE: AspectRatio = AspectRatio("1:1");

    pub fn parse(s: &str) -> Option<AspectRatio> {
        let t = s.trim();
        ASPECTS.iter().find(|(name, _, _)| *name == t).map(|(name, _, _)| AspectRatio(name))
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// The supported ratio nearest to `width:height`, compared on a log scale.
    pub fn nearest(width: u32, height: u32) -> AspectRatio {
        let target = (f64::from(width) / f64::from(height.max(1))).ln();
        let distance = |name: &str| {
            let (w, h) = name.split_once(':').expect("table names are W:H");
            let r: f64 = w.parse::<f64>().expect("number") / h.parse::<f64>().expect("number");
            (r.ln() - target).abs()
        };
        ASPECTS
            .iter()
            .map(|(name, _, _)| *name)
            .min_by(|a, b| distance(a).total_cmp(&distance(b)))
            .map(AspectRatio)
            .expect("the table is not empty")
    }

    pub fn all() -> impl Iterator<Item = &'static str> {
        ASPECTS.iter().map(|(name, _, _)| *name)
    }

    fn pixels_1k(self) -> (u32, u32) {
        ASPECTS
            .iter()
            .find(|(name, _, _)| *name == self.0)
            .map(|(_, w, h)| (*w, *h))
            .expect("an AspectRatio is only built from the table")
    }
}

impl fmt::Display for AspectRatio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_parse_in_any_case() {
        assert_eq!("1k".parse::<Size>(), Ok(Size::Class(Resolution::K1)));
        assert_eq!(" 4K ".parse::<Size>(), Ok(Size::Class(Resolution::K4)));
    }

    #[test]
    fn pixel_sizes_map_to_classes_by_pixel_count() {
        let class = |s: &str| s.parse::<Size>().unwrap().resolution();
        assert_eq!(class("1024x1024"), Resolution::K1);
        assert_eq!(class("1376x768"), Resolution::K1);
        assert_eq!(class("2048x1024"), Resolution::K1);
        assert_eq!(class("1536x2752"), Resolution::K2);
        assert_eq!(class("2048x2048"), Resolution::K2);
        assert_eq!(class("4096x4096"), Resolution::K4);
        assert_eq!(class("5504x3072"), Resolution::K4);
    }

    #[test]
    fn bad_sizes_say_what_is_accepted() {
        for bad in ["3K", "big", "1024", "0x1024", "1024x", "99999x10", "-1x5"] {
            let err = bad.parse::<Size>().unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn openai_sizes_follow_the_gemini_table() {
        let two_k = Size::Class(Resolution::K2);
        assert_eq!(two_k.openai_pixels(None), "2048x2048");
        assert_eq!(two_k.openai_pixels(AspectRatio::parse("16:9")), "2752x1536");
        assert_eq!(Size::Class(Resolution::K1).openai_pixels(AspectRatio::parse("9:16")), "768x1376");
        assert_eq!(Size::Class(Resolution::K4).openai_pixels(AspectRatio::parse("4:3")), "4800x3584");
        let exact = "1000x700".parse::<Size>().unwrap();
        assert_eq!(exact.openai_pixels(AspectRatio::parse("16:9")), "1000x700");
    }

    #[test]
    fn pixel_sizes_map_to_the_nearest_aspect_ratio() {
        let n = |w, h| AspectRatio::nearest(w, h).as_str();
        assert_eq!(n(1024, 1024), "1:1");
        assert_eq!(n(1920, 1080), "16:9");
        assert_eq!(n(1080, 1920), "9:16");
        assert_eq!(n(1000, 1500), "2:3");
        assert_eq!(n(2560, 1080), "21:9");
        assert_eq!(n(4000, 1000), "21:9");
        assert_eq!(n(1100, 1000), "1:1");
    }

    #[test]
    fn only_gemini_aspect_ratios_are_accepted() {
        assert!(AspectRatio::parse("16:9").is_some());
        assert!(AspectRatio::parse("21:9").is_some());
        assert!(AspectRatio::parse("16:10").is_none());
        assert!(AspectRatio::parse("wide").is_none());
    }
}
