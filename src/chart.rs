//! The run chart: an SVG with two panels drawn from the checkpoint.
//!
//! The left panel is the latency distribution (empirical CDF) per resolution class, because
//! the tail of that curve, not the mean, is what a user needs to pick a per-call timeout for
//! 1K vs 4K images. The right panel is images completed over time, so throughput is the slope
//! and stalls (rate limits, an outage) show up as flat stretches.

use std::io;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// What the chart is drawn from (all from the checkpoint).
pub struct ChartData {
    /// Successful call latencies in seconds, per resolution class label ("1K", "2K", "4K"),
    /// in the order the classes should appear. A class with no samples is left out by the caller.
    pub latencies: Vec<(String, Vec<f64>)>,
    /// Unix times (seconds) at which rows were completed (file in place), any order.
    pub completions: Vec<f64>,
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult = Result<(), DrawingAreaErrorKind<io::Error>>;

const SIZE: (u32, u32) = (1200, 500);
const LATENCY_TITLE: &str = "Call latency by resolution (CDF)";
const THROUGHPUT_TITLE: &str = "Images completed over time";
/// Keeps a 100k-row run's SVG in the hundreds of kilobytes; a line is no smoother beyond this.
const MAX_POINTS: usize = 500;
/// A zero or negative latency (clock step, bad row) has no place on a log axis.
const MIN_LATENCY: f64 = 0.001;
/// Okabe-Ito colours: distinguishable with the common kinds of colour blindness.
const COLORS: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(213, 94, 0),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
];
// The SVG backend writes font-size = size / 1.24, so these give 14.5, 16.1 and 19.4 px.
const TICK_FONT: u32 = 18;
const DESC_FONT: u32 = 20;
const TITLE_FONT: u32 = 24;

/// Draws `DIR/latency.svg`-style output to `path`: returns io errors (map plotters errors to io::Error::other).
pub fn write_svg(data: &ChartData, path: &Path) -> io::Result<()> {
    let mut svg = String::new();
    {
        // Rendering to a string first means a failed write surfaces as the plain io::Error.
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        draw(&root, data).map_err(io::Error::other)?;
        root.present().map_err(io::Error::other)?;
    }
    crate::output::write_atomically(path, |w| w.write_all(svg.as_bytes()))
}

fn draw(root: &Area, data: &ChartData) -> DrawResult {
    root.fill(&WHITE)?;
    let classes: Vec<(&str, Vec<f64>)> = data
        .latencies
        .iter()
        .map(|(label, v)| {
            let mut v: Vec<f64> = v.iter().filter(|x| x.is_finite()).map(|x| x.max(MIN_LATENCY)).collect();
            v.sort_by(f64::total_cmp);
            (label.as_str(), v)
        })
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let mut done: Vec<f64> = data.completions.iter().copied().filter(|t| t.is_finite()).collect();
    done.sort_by(f64::total_cmp);
    if classes.is_empty() && done.is_empty() {
        return note(root, "no completed calls yet");
    }
    let (left, right) = root.split_horizontally(SIZE.0 / 2);
    if classes.is_empty() {
        note(&left.titled(LATENCY_TITLE, ("sans-serif", TITLE_FONT))?, "no latency samples")?;
    } else {
        latency_panel(&left, &classes)?;
    }
    if done.is_empty() {
        note(&right.titled(THROUGHPUT_TITLE, ("sans-serif", TITLE_FONT))?, "no completed images")
    } else {
        throughput_panel(&right, &done)
    }
}

fn note(area: &Area, text: &str) -> DrawResult {
    let (w, h) = area.dim_in_pixel();
    let style = ("sans-serif", DESC_FONT).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Center));
    area.draw(&Text::new(text, (w as i32 / 2, h as i32 / 2), style))
}

fn builder<'a, 'b>(area: &'a Area<'b>, title: &str) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut builder = ChartBuilder::on(area);
    builder.caption(title, ("sans-serif", TITLE_FONT)).margin(15).x_label_area_size(50).y_label_area_size(85);
    builder
}

fn latency_panel(area: &Area, classes: &[(&str, Vec<f64>)]) -> DrawResult {
    let lo = classes.iter().map(|(_, v)| v[0]).fold(f64::INFINITY, f64::min);
    let hi = classes.iter().map(|(_, v)| v[v.len() - 1]).fold(0.0, f64::max);
    let (lo, hi) = log_bounds(lo, hi);
    let mut chart = builder(area, LATENCY_TITLE)
        // Own tick list: plotters' log axis only ticks at powers of ten and shows none
        // when the data sits inside one decade, which is the common case here.
        .build_cartesian_2d((lo..hi).log_scale().with_key_points(log_ticks(lo, hi)), 0.0..1.06)?;
    chart
        .configure_mesh()
        .x_desc("latency (s, log scale)")
        .y_desc("fraction of calls")
        .x_label_formatter(&|v| fmt_secs(*v))
        .y_label_formatter(&|v| format!("{v:.1}"))
        .light_line_style(TRANSPARENT)
        .label_style(("sans-serif", TICK_FONT))
        .axis_desc_style(("sans-serif", DESC_FONT))
        .draw()?;
    // Reference levels for reading P50/P95/P99 straight off each curve. P95 and P99 are only
    // a few pixels apart, so their names go on opposite sides of their lines.
    for (q, name, side) in [(0.5, "P50", VPos::Bottom), (0.95, "P95", VPos::Top), (0.99, "P99", VPos::Bottom)] {
        chart.draw_series(DashedLineSeries::new([(lo, q), (hi, q)], 6, 4, BLACK.mix(0.35).into()))?;
        let style = ("sans-serif", TICK_FONT).into_font().color(&BLACK.mix(0.6)).pos(Pos::new(HPos::Left, side));
        chart.draw_series(std::iter::once(Text::new(name, (lo * 1.05, q), style)))?;
    }
    for (i, (label, v)) in classes.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let n = v.len();
        // Start at y=0 so a class whose calls all took the same time is a visible vertical step.
        let cdf = std::iter::once((v[0], 0.0)).chain(sample(n).map(|j| (v[j], (j + 1) as f64 / n as f64)));
        chart
            .draw_series(LineSeries::new(cdf, color.stroke_width(2)))?
            .label(format!("{label} (N={n})"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        // A CDF never reaches the lower right corner, so the legend covers nothing there.
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", TICK_FONT))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
}

fn throughput_panel(area: &Area, done: &[f64]) -> DrawResult {
    let t0 = done[0];
    let n = done.len();
    let span = (done[n - 1] - t0).max(1.0);
    let mut chart = builder(area, THROUGHPUT_TITLE).build_cartesian_2d(0.0..span * 1.02, 0..(n + n / 20).max(n + 1))?;
    chart
        .configure_mesh()
        .x_desc("time since first image (s)")
        .y_desc("images done")
        .x_labels(6)
        .x_label_formatter(&|v| fmt_secs(*v))
        .light_line_style(TRANSPARENT)
        .label_style(("sans-serif", TICK_FONT))
        .axis_desc_style(("sans-serif", DESC_FONT))
        .draw()?;
    // A staircase, not a diagonal: a stall must read as a flat run, not as a slow slope.
    let mut prev = 0;
    let mut steps = Vec::with_capacity(2 * MAX_POINTS + 2);
    for j in sample(n) {
        steps.push((done[j] - t0, prev));
        steps.push((done[j] - t0, j + 1));
        prev = j + 1;
    }
    chart.draw_series(LineSeries::new(steps, COLORS[0].stroke_width(2)))?;
    Ok(())
}

/// Indices into a sorted sample of `n`, at most `MAX_POINTS` of them, always including the last
/// so the curve still ends at the true maximum.
fn sample(n: usize) -> impl Iterator<Item = usize> {
    let m = n.min(MAX_POINTS);
    (0..m).map(move |k| if m == 1 { n - 1 } else { k * (n - 1) / (m - 1) })
}

/// Pads the data range and widens it to at least a factor of 4 so that identical latencies
/// still give a non-empty axis with a few tick marks on it.
fn log_bounds(lo: f64, hi: f64) -> (f64, f64) {
    let (lo, hi) = (lo / 1.2, hi * 1.2);
    if hi / lo >= 4.0 {
        return (lo, hi);
    }
    let mid = (lo * hi).sqrt();
    (mid / 2.0, mid * 2.0)
}

/// 1-2-5 ticks per decade, denser when the range is narrow, sparser when it is wide.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let ticks = |mantissas: &[f64]| -> Vec<f64> {
        let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        (first..=last)
            .flat_map(|e| mantissas.iter().map(move |m| m * 10f64.powi(e)))
            .filter(|t| (lo..=hi).contains(t))
            .collect()
    };
    match ticks(&[1.0, 2.0, 5.0]) {
        few if few.len() < 3 => ticks(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]),
        // Past ~4 decades 1-2-5 labels would overlap; powers of ten alone are enough.
        many if many.len() > 12 => ticks(&[1.0]),
        usual => usual,
    }
}

/// Rounds away float noise such as 0.30000000000000004 so tick labels stay short.
fn fmt_secs(v: f64) -> String {
    format!("{}", (v * 1e6).round() / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes the chart to a tempdir and returns the non-blank text nodes of the parsed SVG.
    fn render(data: &ChartData) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latency.svg");
        write_svg(data, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "non-finite coordinate in SVG");
        let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
        // Text nodes only: an element's .text() would repeat its child's string.
        let texts = doc.descendants().filter(|n| n.is_text()).filter_map(|n| n.text()).map(str::trim);
        texts.filter(|t| !t.is_empty()).map(str::to_string).collect()
    }

    fn spread(n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|i| scale * (1.0 + (i % 97) as f64 / 10.0)).collect()
    }

    #[test]
    fn three_classes_have_one_legend_entry_each_and_named_panels() {
        let classes = [("1K", 12), ("2K", 40), ("4K", 120)];
        let data = ChartData {
            latencies: classes.iter().map(|&(l, n)| (l.to_string(), spread(n, n as f64 / 6.0))).collect(),
            completions: (0..172).map(|i| 1_700_000_000.0 + (i * i) as f64 / 10.0).collect(),
        };
        let texts = render(&data);
        for (label, n) in classes {
            let entries: Vec<_> = texts.iter().filter(|t| t.starts_with(&format!("{label} ("))).collect();
            assert_eq!(entries, [&format!("{label} (N={n})")], "in {texts:?}");
        }
        let axes = ["latency (s, log scale)", "fraction of calls", "time since first image (s)", "images done"];
        for expected in [LATENCY_TITLE, THROUGHPUT_TITLE].iter().chain(&axes) {
            assert!(texts.iter().any(|t| t == expected), "missing {expected:?}");
        }
    }

    #[test]
    fn identical_and_non_positive_latencies_still_draw() {
        let texts = render(&ChartData { latencies: vec![("2K".into(), vec![3.0; 50])], completions: vec![5.0] });
        assert!(texts.iter().any(|t| t == "2K (N=50)"));
        let texts = render(&ChartData { latencies: vec![("1K".into(), vec![0.0, -1.0, 0.5])], completions: vec![] });
        assert!(texts.iter().any(|t| t == "1K (N=3)"));
        assert!(texts.iter().any(|t| t == "no completed images"));
    }

    #[test]
    fn empty_data_writes_a_caption() {
        assert_eq!(render(&ChartData { latencies: vec![], completions: vec![] }), ["no completed calls yet"]);
    }

    #[test]
    fn large_input_is_downsampled() {
        let latencies = ["1K", "2K", "4K"].iter().map(|l| (l.to_string(), spread(10_000, 1.0))).collect();
        let data = ChartData { latencies, completions: (0..30_000).map(f64::from).collect() };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latency.svg");
        write_svg(&data, &path).unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size < 150_000, "SVG is {size} bytes");
    }
}
