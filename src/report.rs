//! The latency report, computed from the checkpoint alone: per resolution class and
//! overall, rows done / failed / pending, attempts, errors by class, and exact
//! nearest-rank percentiles of the successful call latency (request sent to full body
//! received), of the end-to-end time per row, and of the time spent waiting for a slot
//! or the rate limiter; plus a recommended timeout per class.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::Path;

use serde::Serialize;

use crate::checkpoint::ReportInputs;
use crate::output::write_atomically;

pub const JSON_FILE: &str = "report.json";
pub const MD_FILE: &str = "report.md";
/// Below this many samples, P95 and P99 are not meaningful.
pub const MIN_TAIL_SAMPLES: usize = 20;

/// Exact percentiles by the nearest-rank method: the P-th percentile of N sorted values
/// is the value at rank ceil(P/100 * N).
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

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClassReport {
    /// `1K`, `2K`, `4K`, or `all`.
    pub class: String,
    pub rows: u64,
    pub done: u64,
    pub failed: u64,
    pub pending: u64,
    pub attempts: u64,
    pub call_latency_s: Percentiles,
    pub end_to_end_s: Percentiles,
    pub wait_s: Percentiles,
    pub errors: BTreeMap<String, u64>,
    /// max(P99 x 1.5, max x 1.2), rounded up (1 s below a minute, 10 s above); only
    /// given with at least 20 successful calls.
    pub recommended_timeout_s: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub version: u32,
    pub percentile_method: &'static str,
    pub timeout_rule: &'static str,
    pub classes: Vec<ClassReport>,
    pub overall: ClassReport,
    /// Wall time of all runs on this folder added up.
    pub wall_time_s: f64,
    pub images_per_minute: Option<f64>,
}

pub fn build(inputs: &ReportInputs) -> Report {
    let mut classes: BTreeMap<String, (ClassReport, [Vec<f64>; 3])> = BTreeMap::new();
    let mut overall = (ClassReport { class: "all".into(), ..ClassReport::default() }, [vec![], vec![], vec![]]);
    for (res, state, e2e) in &inputs.rows {
        let entry = classes.entry(res.clone()).or_insert_with(|| {
            (ClassReport { class: res.clone(), ..ClassReport::default() }, [vec![], vec![], vec![]])
        });
        for c in [&mut entry.0, &mut overall.0] {
            c.rows += 1;
            match state.as_str() {
                "done" => c.done += 1,
                "failed" => c.failed += 1,
                _ => c.pending += 1,
            }
        }
        if let Some(e) = e2e {
            entry.1[1].push(*e);
            overall.1[1].push(*e);
        }
    }
    for (res, kind, ok, duration, wait, class) in &inputs.attempts {
        let Some(entry) = classes.get_mut(res) else {
            continue;
        };
        for (c, series) in [(&mut entry.0, &mut entry.1), (&mut overall.0, &mut overall.1)] {
            c.attempts += 1;
            if kind == "generate" {
                series[2].push(*wait);
                if *ok {
                    series[0].push(*duration);
                }
            }
            if let Some(class) = class {
                *c.errors.entry(class.clone()).or_default() += 1;
            }
        }
    }
    let finish = |(mut c, [lat, e2e, wait]): (ClassReport, [Vec<f64>; 3])| {
        c.call_latency_s = Percentiles::of(lat);
        c.end_to_end_s = Percentiles::of(e2e);
        c.wait_s = Percentiles::of(wait);
        c.recommended_timeout_s = recommend_timeout(&c.call_latency_s);
        c
    };
    let wall_time_s: f64 = inputs.runs.iter().filter_map(|(start, end)| end.map(|e| (e - start).max(0.0))).sum();
    let overall = finish(overall);
    let images_per_minute = (wall_time_s > 0.0).then(|| overall.done as f64 / wall_time_s * 60.0);
    Report {
        version: 1,
        percentile_method: "nearest-rank: the P-th percentile of N sorted values is the value at rank ceil(P/100*N)",
        timeout_rule: "max(P99 x 1.5, max x 1.2) of the successful call latency, rounded up to 1 s (10 s above a minute); needs N >= 20",
        classes: classes.into_values().map(finish).collect(),
        overall,
        wall_time_s,
        images_per_minute,
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
    match v {
        None => "-".into(),
        Some(s) if s < 10.0 => format!("{s:.2}s"),
        Some(s) => format!("{s:.1}s"),
    }
}

fn table(out: &mut String, rows: &[&ClassReport], pick: impl Fn(&ClassReport) -> &Percentiles, md: bool) {
    let header = ["class", "N", "P50", "P90", "P95", "P99", "max"];
    let lines: Vec<[String; 7]> = rows
        .iter()
        .map(|c| {
            let p = pick(c);
            [c.class.clone(), p.n.to_string(), secs(p.p50), secs(p.p90), secs(p.p95), secs(p.p99), secs(p.max)]
        })
        .collect();
    if md {
        let _ = writeln!(out, "| {} |", header.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
        for l in &lines {
            let _ = writeln!(out, "| {} |", l.join(" | "));
        }
    } else {
        let _ = writeln!(
            out,
            "  {:<6}{:>7}{:>9}{:>9}{:>9}{:>9}{:>9}",
            header[0], header[1], header[2], header[3], header[4], header[5], header[6]
        );
        for l in &lines {
            let _ = writeln!(out, "  {:<6}{:>7}{:>9}{:>9}{:>9}{:>9}{:>9}", l[0], l[1], l[2], l[3], l[4], l[5], l[6]);
        }
    }
}

/// The report as text (`md` for Markdown, otherwise aligned plain text).
pub fn render(r: &Report, md: bool) -> String {
    let mut out = String::new();
    let o = &r.overall;
    let h = if md { "## " } else { "" };
    if md {
        let _ = writeln!(out, "# bulkgen latency report\n");
    }
    let _ = writeln!(
        out,
        "{} rows: {} done, {} failed, {} pending; {} calls{}",
        o.rows,
        o.done,
        o.failed,
        o.pending,
        o.attempts,
        r.images_per_minute
            .map(|v| format!("; {v:.1} images/min over {:.1}s of runs", r.wall_time_s))
            .unwrap_or_default()
    );
    let mut rows: Vec<&ClassReport> = r.classes.iter().collect();
    if r.classes.len() > 1 {
        rows.push(o);
    }
    let _ = writeln!(out, "\n{h}Successful call latency (request sent to full body received)");
    table(&mut out, &rows, |c| &c.call_latency_s, md);
    let _ = writeln!(out, "\n{h}End-to-end time per row (first dispatch to file in place, retries included)");
    table(&mut out, &rows, |c| &c.end_to_end_s, md);
    let _ = writeln!(out, "\n{h}Time waiting for a slot or the rate limiter, per call");
    table(&mut out, &rows, |c| &c.wait_s, md);
    if !o.errors.is_empty() {
        let errors: Vec<String> = o.errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(out, "\nerrors by class: {}", errors.join(", "));
    }
    let recs: Vec<String> = r
        .classes
        .iter()
        .filter_map(|c| c.recommended_timeout_s.map(|t| format!("--timeout {}={}s", c.class, t)))
        .collect();
    if !recs.is_empty() {
        let _ = writeln!(out, "\nrecommended timeouts ({}): {}", r.timeout_rule, recs.join(" "));
    }
    if r.classes.iter().any(|c| c.call_latency_s.n < MIN_TAIL_SAMPLES) {
        let _ = writeln!(
            out,
            "\nnote: percentiles are exact ({}); where N < {MIN_TAIL_SAMPLES}, P95 and P99 are not meaningful",
            r.percentile_method
        );
    }
    out
}

/// Writes `report.json` and `report.md` into the output folder.
pub fn write_files(r: &Report, dir: &Path) -> io::Result<()> {
    let json = serde_json::to_string_pretty(r).map_err(io::Error::other)?;
    write_atomically(&dir.join(JSON_FILE), |w| w.write_all(json.as_bytes()))?;
    let md = render(r, true);
    write_atomically(&dir.join(MD_FILE), |w| w.write_all(md.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // P99 = 100 -> 150; max 100 -> 120; rounded up to 10 s.
        let p = Percentiles::of((1..=100).map(f64::from).collect());
        assert_eq!(recommend_timeout(&p), Some(150.0));
        let p = Percentiles::of((1..=20).map(|v| f64::from(v) / 10.0).collect());
        assert_eq!(recommend_timeout(&p), Some(3.0), "2.0 x 1.5 = 3.0");
    }

    #[test]
    fn report_counts_rows_and_calls_per_class() {
        let inputs = ReportInputs {
            rows: vec![
                ("1K".into(), "done".into(), Some(2.0)),
                ("1K".into(), "failed".into(), None),
                ("4K".into(), "pending".into(), None),
            ],
            attempts: vec![
                ("1K".into(), "generate".into(), true, 1.5, 0.1, None),
                ("1K".into(), "generate".into(), false, 0.5, 0.0, Some("refused".into())),
                ("1K".into(), "generate".into(), false, 0.5, 0.0, Some("server".into())),
            ],
            runs: vec![(100.0, Some(160.0))],
        };
        let r = build(&inputs);
        assert_eq!(r.classes.len(), 2);
        let k1 = &r.classes[0];
        assert_eq!((k1.class.as_str(), k1.rows, k1.done, k1.failed, k1.attempts), ("1K", 2, 1, 1, 3));
        assert_eq!(k1.call_latency_s.p50, Some(1.5));
        assert_eq!(k1.errors.get("refused"), Some(&1));
        assert_eq!(r.overall.pending, 1);
        assert_eq!(r.images_per_minute, Some(1.0));
        let text = render(&r, false);
        assert!(text.contains("3 rows: 1 done, 1 failed, 1 pending; 3 calls"), "{text}");
    }
}
