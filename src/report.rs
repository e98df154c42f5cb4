//! The latency report, computed from the checkpoint alone (so it works during a run,
//! after a crash, after many resumes): per resolution class, per model and overall —
//! rows done / failed / pending, attempts per row, errors by class, exact nearest-rank
//! percentiles of the successful call latency (request sent to full body received), of
//! the end-to-end time per row and of the time waiting for a slot or the rate limiter,
//! throughput, spend, and the settings the observations call for.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::Path;

use serde::Serialize;

use crate::chart::{self, ChartData};
use crate::checkpoint::{Cell, ReportInputs};
use crate::cost::{Prices, Usd};
use crate::output::write_atomically;
use crate::size::Resolution;

/// The forms `bulkgen report` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Text,
    Md,
    Json,
    Csv,
}

pub const JSON_FILE: &str = "report.json";
pub const MD_FILE: &str = "report.md";
pub const SVG_FILE: &str = "latency.svg";
/// Version of the JSON report (schema/report.schema.json).
pub const VERSION: u32 = 2;
/// Below this many samples, P95 and P99 are not meaningful.
pub const MIN_TAIL_SAMPLES: usize = 20;

const PERCENTILE_METHOD: &str =
    "exact, nearest-rank: the P-th percentile of N sorted values is the value at rank ceil(P/100*N)";
const TIMEOUT_RULE: &str = "max(P99 x 1.5, max x 1.2) of the successful call latency, rounded up to 1 s (10 s \
                            above a minute); given with N >= 20";
const CONCURRENCY_RULE: &str = "Little's law: calls in flight = start rate x latency; ceil(rpm/60 x P50) keeps \
                                the rate cap busy (x P95 to absorb slow spells)";

/// Exact percentiles by the nearest-rank method.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub n: usize,
    pub min: Option<f64>,
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Percentiles {
    pub fn of(mut values: Vec<f64>) -> Percentiles {
        values.retain(|v| v.is_finite());
        values.sort_by(f64::total_cmp);
        let n = values.len();
        if n == 0 {
            return Percentiles::default();
        }
        let rank = |p: f64| values[((p / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1];
        Percentiles {
            n,
            min: values.first().copied(),
            mean: Some(values.iter().sum::<f64>() / n as f64),
            p50: Some(rank(50.0)),
            p90: Some(rank(90.0)),
            p95: Some(rank(95.0)),
            p99: Some(rank(99.0)),
            max: values.last().copied(),
        }
    }
}

/// The figures of one group of rows: a resolution class, a model, or all rows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Group {
    /// `1K`, `2K`, `4K`, a model name, or `all`.
    pub name: String,
    pub rows: u64,
    pub done: u64,
    pub failed: u64,
    pub pending: u64,
    /// Calls made (generations and downloads), retries included, and calls whose outcome
    /// is unknown.
    pub attempts: u64,
    /// Generation calls whose outcome was never recorded: abandoned by a kill or a
    /// second Ctrl-C while in flight. They may have been billed.
    pub outcome_unknown: u64,
    /// How many rows needed 1, 2, 3... attempts.
    pub attempts_per_row: BTreeMap<u32, u64>,
    /// Failed calls by error class (each one was retried unless its class is final).
    pub errors: BTreeMap<String, u64>,
    pub call_latency_s: Percentiles,
    pub end_to_end_s: Percentiles,
    /// Rows made by the batch engine: first submission to image in place.
    pub batch_turnaround_s: Percentiles,
    pub wait_s: Percentiles,
    pub recommended_timeout_s: Option<f64>,
    pub recommended_concurrency: Option<u64>,
    /// Estimated spend on done rows; None when no done row has a known price.
    pub spend_usd: Option<f64>,
    /// Done rows whose model and class have no price.
    pub unpriced_done: u64,
    /// With calls of unknown outcome: `spend_usd` plus their price, as if each was billed
    /// (an upper bound); None when there are none, or none has a known price.
    pub spend_up_to_usd: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub version: u32,
    pub percentile_method: &'static str,
    pub timeout_rule: &'static str,
    pub concurrency_rule: &'static str,
    pub classes: Vec<Group>,
    pub models: Vec<Group>,
    /// By the engine that made the images (`online`, `batch`): spend at each engine's price.
    pub engines: Vec<Group>,
    pub overall: Group,
    pub runs: usize,
    /// Wall time of all runs on this folder added up.
    pub wall_time_s: f64,
    pub images_per_minute: Option<f64>,
    /// The last run was simulated at this time scale: durations and rates are in the
    /// provider time the simulation stands for, not the compressed time it took.
    pub simulated_time_scale: Option<f64>,
    /// The last run's rate cap, as starts per minute of real time.
    pub rate_cap_per_minute: Option<f64>,
    /// The manifest rows the images come from, when some row has a count over 1 (then
    /// each group's `rows` are images).
    pub manifest_rows: Option<u64>,
}

#[derive(Default)]
struct Acc {
    group: Group,
    latency: Vec<f64>,
    e2e: Vec<f64>,
    batch_e2e: Vec<f64>,
    wait: Vec<f64>,
    spend: f64,
    priced: u64,
    /// The price of the calls of unknown outcome that have one.
    unknown_spend: f64,
    unknown_priced: u64,
}

impl Acc {
    fn add(&mut self, cell: &Cell, price: Option<f64>) {
        let g = &mut self.group;
        g.rows += cell.done + cell.failed + cell.pending + cell.running;
        g.done += cell.done;
        g.failed += cell.failed;
        g.pending += cell.pending + cell.running;
        g.attempts += cell.calls;
        g.outcome_unknown += cell.unknown;
        if let Some(p) = price {
            self.unknown_spend += p * cell.unknown as f64;
            self.unknown_priced += cell.unknown;
        }
        for (n, rows) in &cell.attempts_per_row {
            *g.attempts_per_row.entry(*n).or_default() += rows;
        }
        for (class, n) in &cell.errors {
            *g.errors.entry(class.clone()).or_default() += n;
        }
        match price {
            Some(p) if cell.done > 0 => {
                self.spend += p * cell.done as f64;
                self.priced += cell.done;
            }
            Some(_) => {}
            None => g.unpriced_done += cell.done,
        }
        self.latency.extend(&cell.latency);
        self.e2e.extend(&cell.e2e);
        self.batch_e2e.extend(&cell.batch_e2e);
        self.wait.extend(&cell.wait);
    }

    fn finish(mut self, name: String, rate_per_s: Option<f64>) -> Group {
        let g = &mut self.group;
        g.name = name;
        g.call_latency_s = Percentiles::of(self.latency);
        g.end_to_end_s = Percentiles::of(self.e2e);
        g.batch_turnaround_s = Percentiles::of(self.batch_e2e);
        g.wait_s = Percentiles::of(self.wait);
        g.recommended_timeout_s = recommend_timeout(&g.call_latency_s);
        g.recommended_concurrency =
            rate_per_s.zip(g.call_latency_s.p50).map(|(rate, p50)| (rate * p50).ceil().max(1.0) as u64);
        g.spend_usd = (self.priced > 0).then_some(self.spend);
        g.spend_up_to_usd = (self.unknown_priced > 0).then_some(self.spend + self.unknown_spend);
        self.group
    }
}

/// Groups the cells by `key` and finishes each group (one grouping's samples are in
/// memory at a time).
fn grouped(inputs: &ReportInputs, prices: &Prices, key: impl Fn(&Cell) -> String) -> Vec<Group> {
    let mut accs: BTreeMap<String, Acc> = BTreeMap::new();
    for cell in &inputs.cells {
        let engine = crate::catalog::Engine::parse(&cell.engine).unwrap_or_default();
        let price = Resolution::parse(&cell.resolution).and_then(|r| prices.price(engine, &cell.model, r));
        accs.entry(key(cell)).or_default().add(cell, price);
    }
    accs.into_iter().map(|(name, acc)| acc.finish(name, inputs.rate_per_s)).collect()
}

pub fn build(inputs: &ReportInputs, prices: &Prices) -> Report {
    let classes = grouped(inputs, prices, |c| c.resolution.clone());
    let models = grouped(inputs, prices, |c| c.model.clone());
    let engines = grouped(inputs, prices, |c| c.engine.clone());
    let overall = grouped(inputs, prices, |_| "all".into())
        .pop()
        .unwrap_or_else(|| Acc::default().finish("all".into(), inputs.rate_per_s));
    // A fold from +0.0: an empty f64 `sum` is -0.0, which would print as "-0.0s".
    let wall_time_s: f64 =
        inputs.runs.iter().filter_map(|(start, end)| end.map(|e| (e - start).max(0.0))).fold(0.0, |a, b| a + b);
    let images_per_minute = (wall_time_s > 0.0).then(|| overall.done as f64 / wall_time_s * 60.0);
    Report {
        version: VERSION,
        percentile_method: PERCENTILE_METHOD,
        timeout_rule: TIMEOUT_RULE,
        concurrency_rule: CONCURRENCY_RULE,
        classes,
        models,
        engines,
        overall,
        runs: inputs.runs.len(),
        wall_time_s,
        images_per_minute,
        rate_cap_per_minute: inputs.rate_per_s.map(|r| r * 60.0),
        simulated_time_scale: inputs.time_scale,
        manifest_rows: inputs.manifest_rows,
    }
}

fn recommend_timeout(p: &Percentiles) -> Option<f64> {
    if p.n < MIN_TAIL_SAMPLES {
        return None;
    }
    let raw = (p.p99? * 1.5).max(p.max? * 1.2);
    let step = if raw >= 60.0 { 10.0 } else { 1.0 };
    Some(((raw / step).ceil() * step).max(1.0))
}

fn secs(v: Option<f64>) -> String {
    // A clock step can make a duration a hair below zero: never print "-0.0s".
    match v.map(|s| if s > 0.0 { s } else { 0.0 }) {
        None => "-".into(),
        Some(s) if s < 10.0 => format!("{s:.2}s"),
        Some(s) => format!("{s:.1}s"),
    }
}

fn table(out: &mut String, groups: &[&Group], pick: impl Fn(&Group) -> &Percentiles, md: bool) {
    if groups.iter().all(|g| pick(g).n == 0) {
        let _ = writeln!(out, "  none yet");
        return;
    }
    let header = ["group", "N", "min", "mean", "P50", "P90", "P95", "P99", "max"];
    let lines: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let p = pick(g);
            let mut cells = vec![g.name.clone(), p.n.to_string()];
            cells.extend([p.min, p.mean, p.p50, p.p90, p.p95, p.p99, p.max].map(secs));
            cells
        })
        .collect();
    if md {
        let _ = writeln!(out, "| {} |", header.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
        for l in &lines {
            let _ = writeln!(out, "| {} |", l.join(" | "));
        }
        return;
    }
    let width = groups.iter().map(|g| g.name.len()).max().unwrap_or(5).max(5) + 2;
    let row = |cells: &[String]| {
        let mut s = format!("  {:<width$}{:>7}", cells[0], cells[1]);
        for c in &cells[2..] {
            let _ = write!(s, "{c:>9}");
        }
        s
    };
    let _ = writeln!(out, "{}", row(&header.map(String::from)));
    for l in &lines {
        let _ = writeln!(out, "{}", row(l));
    }
}

/// Which figures of a group a table shows.
type Pick = fn(&Group) -> &Percentiles;

/// The report as aligned text (`md` false) or Markdown.
pub fn render(r: &Report, md: bool) -> String {
    let mut out = String::new();
    let o = &r.overall;
    let h = if md { "## " } else { "" };
    if md {
        let _ = writeln!(out, "# bulkgen latency report\n");
    }
    let rows = match r.manifest_rows {
        Some(from) => format!("{} images from {from} manifest rows", o.rows),
        None => format!("{} rows", o.rows),
    };
    let _ = writeln!(
        out,
        "{rows}: {} done, {} failed, {} pending; {} calls over {} run(s), {:.1}s{}",
        o.done,
        o.failed,
        o.pending,
        o.attempts,
        r.runs,
        r.wall_time_s,
        r.images_per_minute.map(|v| format!("; {v:.1} images/min")).unwrap_or_default()
    );
    if let Some(scale) = r.simulated_time_scale.filter(|s| *s > 0.0) {
        let _ = writeln!(
            out,
            "simulated (--simulate, time scale {scale}): the durations, rates and advice below are in the provider \
             time the run stands for (its real time x {:.0}); the wall time above is real",
            1.0 / scale
        );
    }
    if let Some(line) = unknown_text(o) {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "spend: {}", spend_text(o));
    if r.engines.iter().any(|g| g.name == "batch" && g.done > 0) {
        for g in &r.engines {
            let _ = writeln!(out, "  made {}: {}", g.name, spend_text(g));
        }
    }
    let mut groups: Vec<&Group> = r.classes.iter().collect();
    if r.models.len() > 1 {
        groups.extend(&r.models);
    }
    if groups.len() > 1 {
        groups.push(o);
    }
    let sections: [(&str, Pick); 3] = [
        ("Successful call latency (request sent to full body received)", |g| &g.call_latency_s),
        ("End-to-end time per row (first dispatch to file in place, retries and backoff included)", |g| {
            &g.end_to_end_s
        }),
        ("Time each call waited for a slot or the rate limiter", |g| &g.wait_s),
    ];
    for (title, pick) in sections {
        let _ = writeln!(out, "\n{h}{title}");
        table(&mut out, &groups, pick, md);
    }
    if o.batch_turnaround_s.n > 0 {
        let _ = writeln!(
            out,
            "\n{h}Batch turnaround per row (first submission to file in place; --batch-deadline bounds it)"
        );
        table(&mut out, &groups, |g| &g.batch_turnaround_s, md);
    }
    let _ = writeln!(out, "\n{h}Attempts and errors");
    for g in &groups {
        let per_row: Vec<String> = g.attempts_per_row.iter().map(|(n, rows)| format!("{n}x: {rows}")).collect();
        let errors: Vec<String> = g.errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            out,
            "{}{}: rows by attempts [{}]; errors [{}]",
            if md { "- " } else { "  " },
            g.name,
            per_row.join(", "),
            if errors.is_empty() { "none".into() } else { errors.join(", ") }
        );
    }
    let _ = writeln!(out, "\n{h}Recommended settings");
    let timeouts: Vec<String> = r
        .classes
        .iter()
        .filter_map(|c| c.recommended_timeout_s.map(|t| format!("--timeout {}={}s", c.name, t)))
        .collect();
    if timeouts.is_empty() {
        let _ = writeln!(out, "timeouts: not enough successful calls yet (need {MIN_TAIL_SAMPLES} per class)");
    } else {
        let _ = writeln!(out, "timeouts: {} ({})", timeouts.join(" "), r.timeout_rule);
    }
    match (r.rate_cap_per_minute, o.recommended_concurrency) {
        (Some(rate), Some(c)) => {
            let p95 = o.call_latency_s.p95.map(|p| (rate / 60.0 * p).ceil() as u64).unwrap_or(c);
            let _ = writeln!(
                out,
                "concurrency: --concurrency {c} (up to {p95} for slow spells) keeps {rate:.0} starts/min busy ({})",
                r.concurrency_rule
            );
        }
        (Some(rate), None) => {
            let _ = writeln!(
                out,
                "concurrency: the rate cap is {rate:.0} starts/min; sizing --concurrency to it needs successful calls \
                 (none yet)"
            );
        }
        _ => {
            let _ = writeln!(out, "concurrency: no rate cap was set, so the API's own limits decide it");
        }
    }
    if r.classes.iter().chain([o]).any(|c| c.call_latency_s.n > 0 && c.call_latency_s.n < MIN_TAIL_SAMPLES) {
        let _ = writeln!(
            out,
            "\nnote: percentiles are {}; where N < {MIN_TAIL_SAMPLES}, P95 and P99 are not meaningful",
            r.percentile_method
        );
    }
    out
}

/// The line about a group's calls of unknown outcome, when it has any.
pub fn unknown_text(g: &Group) -> Option<String> {
    (g.outcome_unknown > 0).then(|| {
        format!(
            "{} image(s) from calls with outcome unknown (abandoned by a kill or a second Ctrl-C; they may have been billed)",
            g.outcome_unknown
        )
    })
}

/// The spend line of a group: the estimate, and what has no known price. Calls of
/// unknown outcome are counted as billed: the spend is then "up to" the sum.
pub fn spend_text(g: &Group) -> String {
    let known = g.spend_usd.map(|s| format!("{} estimated for {} done image(s)", Usd(s), g.done - g.unpriced_done));
    let text = match (known, g.unpriced_done) {
        (Some(k), 0) => k,
        (Some(k), n) => format!("{k}; {n} more with no known price (give --price MODEL:RES=USD)"),
        (None, 0) if g.outcome_unknown == 0 => "nothing yet".into(),
        (None, 0) => "nothing for done images yet".into(),
        (None, n) => format!("unknown: no price for the models of {n} done image(s) (give --price MODEL:RES=USD)"),
    };
    match (g.outcome_unknown, g.spend_up_to_usd) {
        (0, _) => text,
        (n, Some(up_to)) => format!(
            "up to {}: {text}, plus {} for {n} image(s) from calls with outcome unknown",
            Usd(up_to),
            Usd(up_to - g.spend_usd.unwrap_or(0.0))
        ),
        (n, None) => format!("{text}, plus {n} image(s) from calls with outcome unknown and no known price"),
    }
}

/// One CSV line per group (classes, models, all) with the main figures.
pub fn render_csv(r: &Report) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let pct = ["n", "min", "mean", "p50", "p90", "p95", "p99", "max"];
    let mut header = vec!["kind".to_owned(), "group".into(), "rows".into(), "done".into(), "failed".into()];
    header.extend(["pending", "attempts", "errors", "spend_usd", "recommended_timeout_s"].map(String::from));
    for prefix in ["latency", "end_to_end", "wait"] {
        header.extend(pct.iter().map(|p| format!("{prefix}_{p}")));
    }
    header.extend(["outcome_unknown", "spend_up_to_usd"].map(String::from));
    let _ = w.write_record(&header);
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
    let groups = r.classes.iter().map(|g| ("class", g)).chain(r.models.iter().map(|g| ("model", g)));
    for (kind, g) in groups.chain([("all", &r.overall)]) {
        let errors: u64 = g.errors.values().sum();
        let mut rec = vec![kind.to_owned(), g.name.clone()];
        rec.extend([g.rows, g.done, g.failed, g.pending, g.attempts, errors].map(|v| v.to_string()));
        rec.push(opt(g.spend_usd));
        rec.push(opt(g.recommended_timeout_s));
        for p in [&g.call_latency_s, &g.end_to_end_s, &g.wait_s] {
            rec.push(p.n.to_string());
            rec.extend([p.min, p.mean, p.p50, p.p90, p.p95, p.p99, p.max].map(opt));
        }
        rec.push(g.outcome_unknown.to_string());
        rec.push(opt(g.spend_up_to_usd));
        let _ = w.write_record(&rec);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

pub fn render_json(r: &Report) -> String {
    serde_json::to_string_pretty(r).expect("the report serializes")
}

/// Writes `report.json`, `report.md` and the chart `latency.svg` into the output folder.
pub fn write_files(r: &Report, inputs: &ReportInputs, dir: &Path) -> io::Result<()> {
    let json = render_json(r);
    write_atomically(&dir.join(JSON_FILE), |w| w.write_all(json.as_bytes()))?;
    let md = render(r, true);
    write_atomically(&dir.join(MD_FILE), |w| w.write_all(md.as_bytes()))?;
    let mut by_class: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for cell in &inputs.cells {
        by_class.entry(cell.resolution.clone()).or_default().extend(&cell.latency);
    }
    // The chart's percentile figures are the report's own, computed the same way.
    let latencies = by_class
        .into_iter()
        .filter(|(_, xs)| !xs.is_empty())
        .map(|(label, samples)| {
            let p = Percentiles::of(samples.clone());
            chart::ClassLatency { label, samples, p50: p.p50, p95: p.p95, p99: p.p99 }
        })
        .collect();
    let data = ChartData {
        latencies,
        min_tail_samples: MIN_TAIL_SAMPLES,
        completions: inputs.completions.clone(),
        runs: inputs.runs.clone(),
        simulated: inputs.time_scale.filter(|s| *s > 0.0),
    };
    chart::write_svg(&data, &dir.join(SVG_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_never_printed_negative() {
        assert_eq!(secs(Some(-0.0)), "0.00s");
        assert_eq!(secs(Some(-0.0004)), "0.00s");
        assert_eq!(secs(Some(1.234)), "1.23s");
        assert_eq!(secs(None), "-");
    }

    #[test]
    fn nearest_rank_percentiles_match_hand_computed_values() {
        // 1..=10: P50 is rank 5 -> 5; P90 rank 9 -> 9; P95 rank ceil(9.5)=10 -> 10.
        let p = Percentiles::of((1..=10).rev().map(f64::from).collect());
        assert_eq!(
            (p.n, p.min, p.p50, p.p90, p.p95, p.p99, p.max),
            (10, Some(1.0), Some(5.0), Some(9.0), Some(10.0), Some(10.0), Some(10.0))
        );
        assert_eq!(p.mean, Some(5.5));
        // 1..=200: P95 rank 190, P99 rank 198.
        let p = Percentiles::of((1..=200).map(f64::from).collect());
        assert_eq!((p.p50, p.p95, p.p99), (Some(100.0), Some(190.0), Some(198.0)));
        let one = Percentiles::of(vec![3.0]);
        assert_eq!((one.p50, one.p99), (Some(3.0), Some(3.0)));
        assert_eq!(Percentiles::of(vec![]).n, 0);
    }

    #[test]
    fn timeouts_are_only_recommended_with_enough_samples() {
        assert_eq!(recommend_timeout(&Percentiles::of(vec![1.0; 19])), None);
        // P99 = 99 -> 148.5; max 100 -> 120; rounded up to 10 s.
        let p = Percentiles::of((1..=100).map(f64::from).collect());
        assert_eq!(recommend_timeout(&p), Some(150.0));
        let p = Percentiles::of((1..=20).map(|v| f64::from(v) / 10.0).collect());
        assert_eq!(recommend_timeout(&p), Some(3.0), "2.0 x 1.5 = 3.0");
    }

    fn cell(res: &str, model: &str, done: u64, failed: u64, pending: u64) -> Cell {
        Cell { resolution: res.into(), model: model.into(), done, failed, pending, ..Cell::default() }
    }

    #[test]
    fn the_report_groups_by_class_and_model_and_prices_done_rows() {
        let g3 = "gemini-3-pro-image";
        let inputs = ReportInputs {
            cells: vec![
                Cell {
                    attempts_per_row: BTreeMap::from([(1, 1)]),
                    calls: 1,
                    latency: vec![1.5],
                    e2e: vec![2.0],
                    wait: vec![0.1],
                    ..cell("1K", g3, 1, 0, 0)
                },
                Cell {
                    attempts_per_row: BTreeMap::from([(2, 1)]),
                    calls: 2,
                    errors: BTreeMap::from([("refused".into(), 1), ("server".into(), 1)]),
                    wait: vec![0.1, 0.1],
                    ..cell("1K", "other", 0, 1, 0)
                },
                Cell {
                    attempts_per_row: BTreeMap::from([(2, 1)]),
                    calls: 2,
                    errors: BTreeMap::from([("overloaded".into(), 1)]),
                    latency: vec![8.0],
                    e2e: vec![9.0],
                    wait: vec![0.1, 0.1],
                    running: 1,
                    ..cell("4K", g3, 1, 0, 0)
                },
            ],
            completions: vec![150.0, 158.0],
            runs: vec![(100.0, Some(160.0))],
            rate_per_s: Some(1.0),
            time_scale: None,
            manifest_rows: None,
        };
        let r = build(&inputs, &Prices::with_overrides(&crate::catalog::Catalog::built_in(), &[]).unwrap());
        let k1 = &r.classes[0];
        assert_eq!((k1.name.as_str(), k1.rows, k1.done, k1.failed, k1.attempts), ("1K", 2, 1, 1, 3));
        assert_eq!(k1.call_latency_s.p50, Some(1.5));
        assert_eq!(k1.errors.get("refused"), Some(&1));
        assert_eq!(k1.recommended_concurrency, Some(2), "1 start/s x 1.5 s");
        assert_eq!(r.models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), vec![g3, "other"]);
        assert_eq!(r.models[0].attempts_per_row, BTreeMap::from([(1, 1), (2, 1)]));
        assert_eq!(r.overall.pending, 1, "a running row counts as pending");
        assert_eq!(r.overall.spend_usd, Some(0.134 + 0.24));
        assert_eq!(r.images_per_minute, Some(2.0));
        let text = render(&r, false);
        assert!(text.contains("4 rows: 2 done, 1 failed, 1 pending; 5 calls over 1 run(s)"), "{text}");
        assert!(text.contains("spend: $0.374 estimated for 2 done image(s)"), "{text}");
        assert!(text.contains("where N < 20, P95 and P99 are not meaningful"), "{text}");
        let csv = render_csv(&r);
        assert_eq!(csv.lines().count(), 1 + 2 + 2 + 1, "{csv}");
        assert!(csv.lines().nth(1).unwrap().starts_with("class,1K,2,1,1,0,3,2,"), "{csv}");
    }

    #[test]
    fn calls_of_unknown_outcome_are_counted_and_priced_as_an_upper_bound() {
        let inputs = ReportInputs {
            cells: vec![Cell { calls: 5, unknown: 2, latency: vec![1.0, 1.0, 1.0], ..cell("1K", "m", 3, 0, 1) }],
            ..ReportInputs::default()
        };
        let prices = Prices::with_overrides(&crate::catalog::Catalog::built_in(), &["m:1K=0.05".into()]).unwrap();
        let r = build(&inputs, &prices);
        assert_eq!((r.overall.attempts, r.overall.outcome_unknown), (5, 2));
        let (spend, up_to) = (r.overall.spend_usd.unwrap(), r.overall.spend_up_to_usd.unwrap());
        assert!((spend - 0.15).abs() < 1e-9 && (up_to - 0.25).abs() < 1e-9, "{spend} {up_to}");
        let text = render(&r, false);
        assert!(!text.contains("-0.0s"), "{text}");
        assert!(
            text.contains(
                "2 image(s) from calls with outcome unknown (abandoned by a kill or a second Ctrl-C; they may have been billed)"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "spend: up to $0.250: $0.150 estimated for 3 done image(s), plus $0.100 for 2 image(s) from calls with \
                 outcome unknown"
            ),
            "{text}"
        );
        let unpriced = build(&inputs, &Prices::with_overrides(&crate::catalog::Catalog::built_in(), &[]).unwrap());
        assert_eq!(unpriced.overall.spend_up_to_usd, None);
        assert!(
            spend_text(&unpriced.overall)
                .ends_with("plus 2 image(s) from calls with outcome unknown and no known price")
        );
        let none = build(&ReportInputs::default(), &prices);
        assert_eq!((none.overall.outcome_unknown, none.overall.spend_up_to_usd), (0, None));
        assert!(!render(&none, false).contains("outcome unknown"));
    }
}
