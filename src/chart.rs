//! The run chart: an SVG with two panels drawn from the checkpoint.
//!
//! The left panel is the latency distribution (empirical CDF) per resolution class, because
//! the tail of that curve, not the mean, is what a user needs to pick a per-call timeout for
//! 1K vs 4K images; under it, a key gives each class's N, P50, P95 and P99 in figures. The
//! right panel is images completed over time, so throughput is the slope and stalls (rate
//! limits, an outage) show up as flat stretches.
//!
//! A folder is often run several times (interrupted, resumed the next morning). The idle time
//! between runs is cut out of the time axis and drawn as a narrow grey band that says how
//! long the pause was: shown to scale, a night's pause would squeeze the runs into slivers and
//! read as the longest stall of all, and shading it alone would still spend most of the
//! width on nothing. Each run is marked where it starts ("run 1", "run 2", ...).

use std::io;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// What the chart is drawn from (all from the checkpoint).
pub struct ChartData {
    /// Successful call latencies per resolution class, in the order the classes should
    /// appear. A class with no samples is left out by the caller.
    pub latencies: Vec<ClassLatency>,
    /// Below this many samples in a class its P95 and P99 are not shown (not meaningful).
    pub min_tail_samples: usize,
    /// Unix times (seconds) at which rows were completed (file in place), any order.
    pub completions: Vec<f64>,
    /// Every run on the folder as (started, ended) in unix seconds; no end when the run is
    /// still going or was killed.
    pub runs: Vec<(f64, Option<f64>)>,
    /// The last run was simulated at this time scale: latencies are in the provider time
    /// it stands for (the report's), completions in the real time it took.
    pub simulated: Option<f64>,
}

/// One class's latency samples (seconds) and its percentiles, computed by the caller so the
/// chart shows the very figures of the report.
pub struct ClassLatency {
    /// "1K", "2K", "4K"...
    pub label: String,
    pub samples: Vec<f64>,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult = Result<(), DrawingAreaErrorKind<io::Error>>;

const SIZE: (u32, u32) = (1200, 580);
/// The strip under the panels that holds the latency key and the note on runs: room for
/// four classes (512, 1K, 2K, 4K).
const KEY_HEIGHT: u32 = 115;
const KEY_ROW: i32 = 24;
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
/// Rough width of one character of TICK_FONT in pixels, for keeping labels apart (the SVG
/// backend measures no text; a viewer's sans-serif averages about this).
const CHAR_PX: i32 = 8;
const LABEL_ROW_PX: i32 = 18;
/// Rows of run labels stacked before they start again at the top.
const LABEL_ROWS: usize = 3;

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

/// A class's samples made drawable (finite, positive, sorted), with its figures.
struct Class<'a> {
    src: &'a ClassLatency,
    v: Vec<f64>,
    /// P95 and P99 are shown.
    tail: bool,
}

fn draw(root: &Area, data: &ChartData) -> DrawResult {
    root.fill(&WHITE)?;
    let classes: Vec<Class> = data
        .latencies
        .iter()
        .map(|c| {
            let mut v: Vec<f64> = c.samples.iter().filter(|x| x.is_finite()).map(|x| x.max(MIN_LATENCY)).collect();
            v.sort_by(f64::total_cmp);
            let tail = v.len() >= data.min_tail_samples;
            Class { src: c, v, tail }
        })
        .filter(|c| !c.v.is_empty())
        .collect();
    let mut done: Vec<f64> = data.completions.iter().copied().filter(|t| t.is_finite()).collect();
    done.sort_by(f64::total_cmp);
    if classes.is_empty() && done.is_empty() {
        return note(root, "no completed calls yet");
    }
    let (panels, key) = root.split_vertically(SIZE.1 - KEY_HEIGHT);
    let (left, right) = panels.split_horizontally(SIZE.0 / 2);
    let (left_key, right_key) = key.split_horizontally(SIZE.0 / 2);
    if classes.is_empty() {
        note(&left.margin(15, 15, 15, 15).titled(LATENCY_TITLE, ("sans-serif", TITLE_FONT))?, "no latency samples")?;
    } else {
        latency_panel(&left, &classes, data.simulated.is_some())?;
        latency_key(&left_key, &classes, data.min_tail_samples)?;
    }
    if done.is_empty() {
        note(&right.margin(15, 15, 15, 15).titled(THROUGHPUT_TITLE, ("sans-serif", TITLE_FONT))?, "no completed images")
    } else {
        let timeline = Timeline::new(&data.runs, &done);
        throughput_panel(&right, &done, &timeline, data.simulated.is_some())?;
        runs_key(&right_key, &timeline)
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

fn tick_style(color: RGBAColor, h: HPos, v: VPos) -> TextStyle<'static> {
    ("sans-serif", TICK_FONT).into_font().color(&color).pos(Pos::new(h, v))
}

fn latency_panel(area: &Area, classes: &[Class], simulated: bool) -> DrawResult {
    let lo = classes.iter().map(|c| c.v[0]).fold(f64::INFINITY, f64::min);
    let hi = classes.iter().map(|c| c.v[c.v.len() - 1]).fold(0.0, f64::max);
    let (lo, hi) = log_bounds(lo, hi);
    let mut chart = builder(area, LATENCY_TITLE)
        // Own tick list: plotters' log axis only ticks at powers of ten and shows none
        // when the data sits inside one decade, which is the common case here.
        .build_cartesian_2d((lo..hi).log_scale().with_key_points(log_ticks(lo, hi)), 0.0..1.06)?;
    chart
        .configure_mesh()
        .x_desc(if simulated { "latency (s, log scale; simulated: provider time)" } else { "latency (s, log scale)" })
        .y_desc("fraction of calls")
        .x_label_formatter(&|v| fmt_secs(*v))
        .y_label_formatter(&|v| format!("{v:.1}"))
        .light_line_style(TRANSPARENT)
        .label_style(("sans-serif", TICK_FONT))
        .axis_desc_style(("sans-serif", DESC_FONT))
        .draw()?;
    // Reference levels for reading P50/P95/P99 straight off each curve; P95 and P99 only when
    // some class has enough samples for them. P95 and P99 are only a few pixels apart, so
    // their names go on opposite sides of their lines.
    let any_tail = classes.iter().any(|c| c.tail);
    for (q, name, side) in [(0.5, "P50", VPos::Bottom), (0.95, "P95", VPos::Top), (0.99, "P99", VPos::Bottom)] {
        if q > 0.5 && !any_tail {
            continue;
        }
        chart.draw_series(DashedLineSeries::new([(lo, q), (hi, q)], 6, 4, BLACK.mix(0.35).into()))?;
        let style = tick_style(BLACK.mix(0.6), HPos::Left, side);
        chart.draw_series(std::iter::once(Text::new(name, (lo * 1.05, q), style)))?;
    }
    for (i, c) in classes.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let (v, n) = (&c.v, c.v.len());
        // The empirical CDF as the staircase it is: at a sample the curve climbs straight up by
        // its rank, so the nearest-rank percentile's dot sits on the curve where it crosses the
        // reference level (a diagonal would pass beside it when N is small). From y=0, so a
        // class whose calls all took the same time is a visible vertical step.
        let mut cdf = Vec::with_capacity(2 * MAX_POINTS);
        let mut prev = 0.0;
        for j in sample(n) {
            let y = (j + 1) as f64 / n as f64;
            cdf.extend([(v[j], prev), (v[j], y)]);
            prev = y;
        }
        chart.draw_series(LineSeries::new(cdf, color.stroke_width(2)))?;
        // A dot where the curve meets each reference level it has a figure for in the key.
        let marks = [(c.src.p50, 0.5), (c.src.p95.filter(|_| c.tail), 0.95), (c.src.p99.filter(|_| c.tail), 0.99)];
        let dots = marks.into_iter().filter_map(|(p, q)| p.filter(|p| p.is_finite()).map(|p| (p.max(MIN_LATENCY), q)));
        chart.draw_series(dots.map(|p| Circle::new(p, 4, color.filled())))?;
    }
    Ok(())
}

/// The key under the latency panel: per class its colour, N and the percentiles in figures
/// (the curve alone makes the reader estimate them off a log axis).
fn latency_key(area: &Area, classes: &[Class], min_tail: usize) -> DrawResult {
    let style = |h| tick_style(BLACK.into(), h, VPos::Center);
    let (swatch, name, p50, p95, p99) = (100, 128, 265, 375, 485);
    for (i, c) in classes.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let y = 14 + i as i32 * KEY_ROW;
        area.draw(&PathElement::new([(swatch, y), (swatch + 20, y)], color.stroke_width(3)))?;
        area.draw(&Circle::new((swatch + 10, y), 4, color.filled()))?;
        area.draw(&Text::new(format!("{} (N={})", c.src.label, c.v.len()), (name, y), style(HPos::Left)))?;
        if let Some(p) = c.src.p50 {
            area.draw(&Text::new(format!("P50 {}", fmt_latency(p)), (p50, y), style(HPos::Left)))?;
        }
        if !c.tail {
            let text = format!("P95/P99 need {min_tail} calls");
            area.draw(&Text::new(text, (p95, y), tick_style(BLACK.mix(0.6), HPos::Left, VPos::Center)))?;
            continue;
        }
        for (p, name, x) in [(c.src.p95, "P95", p95), (c.src.p99, "P99", p99)] {
            if let Some(p) = p {
                area.draw(&Text::new(format!("{name} {}", fmt_latency(p)), (x, y), style(HPos::Left)))?;
            }
        }
    }
    Ok(())
}

/// The note under the throughput panel, when pauses were cut out of its axis.
fn runs_key(area: &Area, timeline: &Timeline) -> DrawResult {
    if timeline.cuts() == 0 {
        return Ok(());
    }
    let style = tick_style(BLACK.mix(0.7), HPos::Left, VPos::Center);
    let lines = [
        "Grey bands: time between runs, cut out of the time axis",
        "(each labelled with the length of the pause, where it fits).",
    ];
    for (i, line) in lines.iter().enumerate() {
        area.draw(&Text::new(*line, (100, 14 + i as i32 * KEY_ROW), style.clone()))?;
    }
    Ok(())
}

fn throughput_panel(area: &Area, done: &[f64], tl: &Timeline, simulated: bool) -> DrawResult {
    let n = done.len();
    let marked = tl.segs.len() > 1;
    // Headroom over the last image for the run labels, so they never sit on the curve.
    let top = if marked { n + n / 5 + 2 } else { (n + n / 20).max(n + 1) };
    let x_end = tl.x_end();
    let unit = Unit::for_span(tl.active());
    let ticks = tl.ticks(unit);
    let x_desc = match (tl.known_runs, marked) {
        (false, _) => format!("time since first image ({})", unit.name),
        (true, false) => format!("time since the run started ({})", unit.name),
        (true, true) => format!("time in runs ({}), pauses between runs cut out", unit.name),
    };
    let x_desc = if simulated { format!("{x_desc}; real time of the simulation") } else { x_desc };
    let label = |x: &f64| fmt_tick(tl.active_at(*x) / unit.secs);
    let mut chart =
        builder(area, THROUGHPUT_TITLE).build_cartesian_2d(TimeAxis { end: x_end * 1.02, ticks }, 0..top)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc("images done")
        .x_label_formatter(&label)
        .light_line_style(TRANSPARENT)
        .label_style(("sans-serif", TICK_FONT))
        .axis_desc_style(("sans-serif", DESC_FONT))
        .draw()?;
    // A staircase, not a diagonal: a stall must read as a flat run, not as a slow slope.
    let mut prev = 0;
    let mut steps = Vec::with_capacity(2 * MAX_POINTS + 2);
    for j in sample(n) {
        let x = tl.x(done[j]);
        steps.push((x, prev));
        steps.push((x, j + 1));
        prev = j + 1;
    }
    // Images done at axis position x, to keep a band's label off the curve.
    let level = |x: f64| steps[..steps.partition_point(|s| s.0 <= x)].last().map_or(0, |s| s.1);
    for w in tl.segs.windows(2) {
        let pause = w[1].start - w[0].end;
        if pause <= 0.0 {
            continue;
        }
        let (x0, x1) = (w[0].x0 + w[0].len(), w[1].x0);
        chart.draw_series(std::iter::once(Rectangle::new([(x0, 0), (x1, top)], BLACK.mix(0.12).filled())))?;
        // The label goes upright in the taller of the spaces above and below the curve.
        let lvl = level(x0);
        let (px_lo, px_lvl, px_top) =
            (chart.backend_coord(&(x0, 0)).1, chart.backend_coord(&(x0, lvl)).1, chart.backend_coord(&(x0, top)).1);
        let (room, mid) =
            if px_lo - px_lvl > px_lvl - px_top { (px_lo - px_lvl, (lvl, 0)) } else { (px_lvl - px_top, (lvl, top)) };
        let long = format!("between runs {}", fmt_duration(pause));
        let text = if long.len() as i32 * CHAR_PX + 10 < room { long } else { fmt_duration(pause) };
        let band_px = chart.backend_coord(&(x1, 0)).0 - chart.backend_coord(&(x0, 0)).0;
        if band_px >= LABEL_ROW_PX && (text.len() as i32 * CHAR_PX) < room {
            let style = tick_style(BLACK.mix(0.75), HPos::Center, VPos::Center).transform(FontTransform::Rotate270);
            let y = (mid.0 + mid.1) / 2;
            chart.draw_series(std::iter::once(Text::new(text, ((x0 + x1) / 2.0, y), style)))?;
        }
    }
    if marked {
        let line = BLACK.mix(0.55).stroke_width(1);
        let mut row_end = [i32::MIN; LABEL_ROWS];
        let right = chart.backend_coord(&(x_end * 1.02, 0)).0;
        for (i, seg) in tl.segs.iter().enumerate() {
            chart.draw_series(std::iter::once(PathElement::new([(seg.x0, 0), (seg.x0, top)], line)))?;
            let text = format!("run {}", i + 1);
            let width = text.len() as i32 * CHAR_PX;
            let line_px = chart.backend_coord(&(seg.x0, top)).0;
            // Right of its line, unless that would run off the panel (a short last run).
            let px = (line_px + 4).min(right - 2 - width);
            // Stack labels of runs too close together instead of printing them over each other;
            // past LABEL_ROWS deep a run keeps its line but goes unnamed (dozens of resumes).
            let Some(row) = (0..LABEL_ROWS).find(|&r| px >= row_end[r] + 6) else { continue };
            row_end[row] = px + width;
            let style = tick_style(BLACK.mix(0.8), HPos::Left, VPos::Top);
            let offset = (px - line_px, 3 + row as i32 * LABEL_ROW_PX);
            chart.plotting_area().draw(&(EmptyElement::at((seg.x0, top)) + Text::new(text, offset, style)))?;
        }
    }
    chart.draw_series(LineSeries::new(steps, COLORS[0].stroke_width(2)))?;
    Ok(())
}

/// One run on the time axis: its span in unix seconds and where it begins on the axis.
struct Segment {
    start: f64,
    end: f64,
    /// Axis position (seconds) of `start`.
    x0: f64,
    /// Running time of the runs before this one (seconds).
    a0: f64,
}

impl Segment {
    fn len(&self) -> f64 {
        self.end - self.start
    }
}

/// The throughput panel's time axis: the runs laid end to end, each pause between them
/// replaced by a band of fixed width. Axis positions are seconds of running time plus the
/// bands before them; tick labels give running time alone.
struct Timeline {
    segs: Vec<Segment>,
    /// False when the checkpoint recorded no run: the axis starts at the first image.
    known_runs: bool,
}

impl Timeline {
    /// `done` is sorted and not empty.
    fn new(runs: &[(f64, Option<f64>)], done: &[f64]) -> Timeline {
        let mut runs: Vec<(f64, Option<f64>)> = runs.iter().copied().filter(|(s, _)| s.is_finite()).collect();
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let known_runs = !runs.is_empty();
        if !known_runs {
            runs.push((done[0], Some(done[done.len() - 1])));
        }
        let mut spans: Vec<(f64, f64)> = Vec::with_capacity(runs.len());
        for (i, &(start, end)) in runs.iter().enumerate() {
            let next = runs.get(i + 1).map_or(f64::INFINITY, |r| r.0);
            // A run that was killed (or is still going) has no end: its last image is its end.
            // One that ended before its last recorded image (clock step) is stretched to it.
            let upto = done.partition_point(|&t| t < next);
            let last = done[..upto].last().copied().filter(|&t| t >= start);
            let end = end.filter(|e| e.is_finite()).unwrap_or(start).max(last.unwrap_or(start)).min(next);
            spans.push((start, end.max(start)));
        }
        // Images from before the first run (a repaired checkpoint) count as the first run's.
        spans[0].0 = spans[0].0.min(done[0]);
        let active: f64 = spans.iter().map(|(s, e)| e - s).sum();
        let cuts = spans.windows(2).filter(|w| w[1].0 > w[0].1).count();
        // Wide enough for an upright label, narrow enough that many resumes leave the runs
        // most of the axis.
        let band = active.max(1.0) * if cuts == 0 { 0.0 } else { (0.3 / cuts as f64).min(0.06) };
        let (mut x, mut a) = (0.0, 0.0);
        let mut segs = Vec::with_capacity(spans.len());
        for (i, &(start, end)) in spans.iter().enumerate() {
            if i > 0 && start > spans[i - 1].1 {
                x += band;
            }
            segs.push(Segment { start, end, x0: x, a0: a });
            x += end - start;
            a += end - start;
        }
        Timeline { segs, known_runs }
    }

    fn cuts(&self) -> usize {
        self.segs.windows(2).filter(|w| w[1].start > w[0].end).count()
    }

    /// Total running time in seconds.
    fn active(&self) -> f64 {
        self.segs.last().map_or(0.0, |s| s.a0 + s.len())
    }

    /// The right end of the data on the axis; at least 1 s so the axis is never empty.
    fn x_end(&self) -> f64 {
        self.segs.last().map_or(0.0, |s| s.x0 + s.len()).max(1.0)
    }

    /// Axis position of unix time `t`.
    fn x(&self, t: f64) -> f64 {
        let i = self.segs.partition_point(|s| s.start <= t).saturating_sub(1);
        let s = &self.segs[i];
        s.x0 + (t.clamp(s.start, s.end) - s.start)
    }

    /// Running time at axis position `x` (a band counts as the end of the run before it).
    fn active_at(&self, x: f64) -> f64 {
        let i = self.segs.partition_point(|s| s.x0 <= x).saturating_sub(1);
        let s = &self.segs[i];
        s.a0 + (x - s.x0).clamp(0.0, s.len())
    }

    /// Tick positions at round amounts of running time in `unit`.
    fn ticks(&self, unit: Unit) -> Vec<f64> {
        let total = self.active().max(1.0);
        let step = nice_step(total / unit.secs / 6.0) * unit.secs;
        let count = (total / step + 1e-9).floor() as usize;
        (0..=count)
            .filter_map(|k| {
                let a = k as f64 * step;
                let s = self.segs.iter().find(|s| a <= s.a0 + s.len() + 1e-9)?;
                Some(s.x0 + (a - s.a0).max(0.0))
            })
            .collect()
    }
}

/// A linear axis from 0 with the given ticks. plotters' own `with_key_points` cannot take a
/// label formatter on an f64 axis, and the ticks must be the Timeline's round running times.
struct TimeAxis {
    end: f64,
    ticks: Vec<f64>,
}

impl Ranged for TimeAxis {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let f = if self.end > 0.0 { v / self.end } else { 0.0 };
        limit.0 + (f * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<H: plotters::coord::ranged1d::KeyPointHint>(&self, _hint: H) -> Vec<f64> {
        self.ticks.clone()
    }

    fn range(&self) -> std::ops::Range<f64> {
        0.0..self.end
    }
}

/// The unit of the throughput panel's time axis, by the length of what it shows.
#[derive(Clone, Copy)]
struct Unit {
    name: &'static str,
    secs: f64,
}

impl Unit {
    fn for_span(secs: f64) -> Unit {
        match secs {
            s if s < 180.0 => Unit { name: "s", secs: 1.0 },
            s if s < 3.0 * 3600.0 => Unit { name: "min", secs: 60.0 },
            _ => Unit { name: "h", secs: 3600.0 },
        }
    }
}

/// The 1-2-5 step at or above `raw`.
fn nice_step(raw: f64) -> f64 {
    let p = 10f64.powf(raw.max(1e-9).log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * p).find(|s| *s >= raw * (1.0 - 1e-9)).unwrap_or(10.0 * p)
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

/// A tick of the time axis in its unit: steps are 1-2-5, so three decimals are plenty.
fn fmt_tick(v: f64) -> String {
    format!("{}", (v * 1e3).round() / 1e3)
}

/// A latency as the report prints it, so the figures on the chart and in report.md agree.
fn fmt_latency(s: f64) -> String {
    if s < 10.0 { format!("{s:.2}s") } else { format!("{s:.1}s") }
}

/// A pause between runs, to the unit a person would say it in.
fn fmt_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
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

    /// A class with nearest-rank percentiles, as the report computes them.
    fn class(label: &str, samples: Vec<f64>) -> ClassLatency {
        let mut v = samples.clone();
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| v.get(((p / 100.0 * v.len() as f64).ceil() as usize).max(1) - 1).copied();
        ClassLatency { label: label.into(), p50: rank(50.0), p95: rank(95.0), p99: rank(99.0), samples }
    }

    fn data(latencies: Vec<ClassLatency>, completions: Vec<f64>, runs: Vec<(f64, Option<f64>)>) -> ChartData {
        ChartData { latencies, min_tail_samples: 20, completions, runs, simulated: None }
    }

    const T0: f64 = 1_700_000_000.0;

    /// One image every `every` seconds through each run.
    fn images(runs: &[(f64, Option<f64>)], every: f64) -> Vec<f64> {
        let spans = runs.iter().map(|&(s, e)| (s, e.unwrap_or(s + 600.0)));
        spans.flat_map(|(s, e)| (1..).map(move |k| s + k as f64 * every).take_while(move |t| *t <= e)).collect()
    }

    fn has(texts: &[String], expected: &str) -> bool {
        texts.iter().any(|t| t == expected)
    }

    #[test]
    fn three_classes_have_one_key_entry_each_and_named_panels() {
        let classes = [("1K", 12), ("2K", 40), ("4K", 120)];
        let data = data(
            classes.iter().map(|&(l, n)| class(l, spread(n, n as f64 / 6.0))).collect(),
            (0..172).map(|i| T0 + (i * i) as f64 / 10.0).collect(),
            vec![],
        );
        let texts = render(&data);
        for (label, n) in classes {
            let entries: Vec<_> = texts.iter().filter(|t| t.starts_with(&format!("{label} ("))).collect();
            assert_eq!(entries, [&format!("{label} (N={n})")], "in {texts:?}");
        }
        let axes = ["latency (s, log scale)", "fraction of calls", "time since first image (min)", "images done"];
        for expected in [LATENCY_TITLE, THROUGHPUT_TITLE].iter().chain(&axes) {
            assert!(has(&texts, expected), "missing {expected:?} in {texts:?}");
        }
    }

    #[test]
    fn the_time_axis_unit_follows_the_span() {
        for (span, unit, last_tick, absent) in
            [(100.0, "s", "100", "6000"), (3600.0, "min", "60", "3600"), (10.0 * 3600.0, "h", "10", "36000")]
        {
            let runs = vec![(T0, Some(T0 + span))];
            let texts = render(&data(vec![], images(&runs, span / 50.0), runs));
            assert!(has(&texts, &format!("time since the run started ({unit})")), "{span} s: {texts:?}");
            assert!(has(&texts, last_tick) && !has(&texts, absent), "{span} s: ticks in {unit}: {texts:?}");
            assert!(!texts.iter().any(|t| t.starts_with("run ")), "one run needs no marker: {texts:?}");
        }
    }

    #[test]
    fn two_runs_are_marked_and_the_night_between_them_is_cut_out() {
        // An hour, ten hours' pause, half an hour: 90 minutes of running time.
        let runs = vec![(T0, Some(T0 + 3600.0)), (T0 + 39_600.0, Some(T0 + 41_400.0))];
        let texts = render(&data(vec![class("1K", spread(30, 1.0))], images(&runs, 60.0), runs));
        for expected in ["run 1", "run 2", "between runs 10h 00m", "time in runs (min), pauses between runs cut out"] {
            assert!(has(&texts, expected), "missing {expected:?} in {texts:?}");
        }
        // The ticks count running time only: the time axis ends at 90 minutes, not at 690
        // (the other numbers are the 90 images' axis, up to 110, and latencies).
        let ticks: Vec<f64> = texts.iter().filter_map(|t| t.parse().ok()).collect();
        assert!(ticks.contains(&80.0) && ticks.iter().all(|t| *t <= 110.0), "{ticks:?}");
    }

    #[test]
    fn a_killed_run_ends_at_its_last_image() {
        // Run 1 was killed (no end) ten minutes after its last image; run 2 resumed later.
        let runs = vec![(T0, None), (T0 + 2000.0, Some(T0 + 2300.0))];
        let done = vec![T0 + 100.0, T0 + 400.0, T0 + 2100.0, T0 + 2200.0];
        let texts = render(&data(vec![], done, runs));
        assert!(has(&texts, "run 1") && has(&texts, "run 2"), "{texts:?}");
        assert!(has(&texts, "between runs 26m 40s"), "pause from the last image of run 1: {texts:?}");
    }

    #[test]
    fn p95_and_p99_need_twenty_samples() {
        let texts = render(&data(vec![class("1K", (1..=19).map(f64::from).collect())], vec![T0], vec![]));
        assert!(has(&texts, "1K (N=19)") && has(&texts, "P50 10.0s"), "{texts:?}");
        assert!(has(&texts, "P95/P99 need 20 calls"), "{texts:?}");
        assert!(!texts.iter().any(|t| t.starts_with("P95") && t != "P95/P99 need 20 calls"), "{texts:?}");
        assert!(!texts.iter().any(|t| t.starts_with("P99")), "{texts:?}");
    }

    #[test]
    fn percentiles_are_given_with_their_values_per_class() {
        // Nearest rank over 1..=40 s: P50 rank 20, P95 rank 38, P99 rank 40; 4K gets tenths.
        let classes = vec![
            class("1K", (1..=40).map(f64::from).collect()),
            class("4K", (1..=40).map(|v| f64::from(v) / 10.0).collect()),
            class("2K", vec![5.0; 3]),
        ];
        let texts = render(&data(classes, vec![T0], vec![]));
        for expected in ["P50 20.0s", "P95 38.0s", "P99 40.0s", "P50 2.00s", "P95 3.80s", "P99 4.00s"] {
            assert!(has(&texts, expected), "missing {expected:?} in {texts:?}");
        }
        assert!(has(&texts, "P50 5.00s") && has(&texts, "P95/P99 need 20 calls"), "2K has 3 samples: {texts:?}");
    }

    #[test]
    fn identical_and_non_positive_latencies_still_draw() {
        let texts = render(&data(vec![class("2K", vec![3.0; 50])], vec![5.0], vec![(5.0, None)]));
        assert!(has(&texts, "2K (N=50)"));
        let texts = render(&data(vec![class("1K", vec![0.0, -1.0, 0.5])], vec![], vec![(5.0, Some(6.0))]));
        assert!(has(&texts, "1K (N=3)"));
        assert!(has(&texts, "no completed images"));
    }

    #[test]
    fn empty_data_writes_a_caption() {
        assert_eq!(render(&data(vec![], vec![], vec![])), ["no completed calls yet"]);
        assert_eq!(render(&data(vec![], vec![], vec![(T0, None)])), ["no completed calls yet"]);
    }

    #[test]
    fn odd_runs_do_not_break_the_axis() {
        // Out of order, overlapping, ending before they start, images outside every run.
        let runs = vec![(T0 + 500.0, Some(T0 + 400.0)), (T0, Some(T0 + 900.0)), (f64::NAN, None), (T0 + 5000.0, None)];
        let done = vec![T0 - 50.0, T0 + 10.0, T0 + 950.0, T0 + 6000.0];
        let texts = render(&data(vec![], done, runs));
        assert!(has(&texts, "run 3") && !has(&texts, "run 4"), "{texts:?}");
    }

    #[test]
    fn large_input_is_downsampled() {
        let latencies = ["1K", "2K", "4K"].iter().map(|l| class(l, spread(10_000, 1.0))).collect();
        let runs: Vec<_> = (0..30).map(|r| (T0 + r as f64 * 5000.0, Some(T0 + r as f64 * 5000.0 + 4000.0))).collect();
        let data = data(latencies, images(&runs, 1.2), runs);
        assert!(data.completions.len() > 99_000);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latency.svg");
        write_svg(&data, &path).unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size < 150_000, "SVG is {size} bytes");
    }
}
