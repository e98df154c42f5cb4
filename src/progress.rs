//! Live progress of a run: counters the workers bump, and a display that reads them — a
//! bar on a terminal, a plain line every few seconds elsewhere (CI, `nohup`), nothing
//! with `--quiet`. Messages go through [`Progress::note`] so they never tear the bar.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use std::collections::VecDeque;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::ProgressMode;
use crate::cost::Usd;
use crate::error::ErrorClass;
use crate::report::Percentiles;
use crate::size::Resolution;

/// Live percentiles are over each class's latest calls: what the provider does now.
const LIVE_WINDOW: usize = 500;

#[derive(Default)]
pub struct Counters {
    pub done: AtomicU64,
    pub failed: AtomicU64,
    /// Calls in flight (a call of several images, `n`, is one).
    pub in_flight: AtomicU64,
    pub retry_waiting: AtomicU64,
    /// Rows in open batch jobs.
    pub in_batch: AtomicU64,
    /// Estimated spend of this run's done rows, in micro-USD.
    pub spend_micro_usd: AtomicU64,
    /// Failed calls (and failed batch lines) of this run, by error class, in the order of
    /// `ErrorClass::ALL`.
    errors: [AtomicU64; ErrorClass::ALL.len()],
}

pub struct Progress {
    pub counters: Counters,
    /// Rows of the checkpoint (images, with counts), and how many were already done or
    /// failed at the start.
    total: u64,
    settled_before: u64,
    /// The manifest asks for several images of some row (`--count`, a `count` column):
    /// what is settled is then images, not manifest rows, and the display says so.
    counting_images: AtomicBool,
    started: Instant,
    bar: Mutex<Option<ProgressBar>>,
    quiet: bool,
    /// The latest successful call latencies per class (1K, 2K, 4K), in seconds.
    recent: [Mutex<VecDeque<f64>>; 4],
    /// When the provider-wide hold ends (a 429's advice, an endpoint away), if one is on.
    hold: Mutex<Option<SystemTime>>,
    /// A simulated run's time scale: live latencies are shown in the provider time they
    /// stand for, as the report gives them (None: real time).
    time_scale: Mutex<Option<f64>>,
}

impl Progress {
    pub fn new(total: u64, settled_before: u64, mode: ProgressMode) -> Arc<Progress> {
        Arc::new(Progress {
            counters: Counters::default(),
            total,
            settled_before,
            counting_images: AtomicBool::new(false),
            started: Instant::now(),
            bar: Mutex::new(None),
            quiet: mode == ProgressMode::Quiet,
            recent: Default::default(),
            hold: Mutex::new(None),
            time_scale: Mutex::new(None),
        })
    }

    /// The run's manifest has a row of count > 1 (its images outnumber its rows): the bar
    /// and the plain line count "images settled" instead of "rows settled". Set before
    /// [`start`].
    pub fn counting_images(&self, yes: bool) {
        self.counting_images.store(yes, Ordering::Relaxed);
    }

    /// What the bar and the plain line count: "images" when the manifest uses counts,
    /// "rows" otherwise (where a row is one image).
    fn unit(&self) -> &'static str {
        if self.counting_images.load(Ordering::Relaxed) { "images" } else { "rows" }
    }

    /// "12/40 rows settled" (or images), as the plain line starts.
    fn settled(&self) -> String {
        format!("{}/{} {} settled", self.position(), self.total, self.unit())
    }

    /// The bar's template: the same words as [`Progress::settled`], drawn by indicatif.
    fn bar_template(&self) -> String {
        format!("{{elapsed_precise}} [{{wide_bar}}] {{pos}}/{{len}} {} settled\n{{msg}}", self.unit())
    }

    /// A simulated run (`--simulate`) at `scale`: latencies are shown divided by it.
    pub fn set_time_scale(&self, scale: Option<f64>) {
        *self.time_scale.lock().expect("scale lock") = scale.filter(|s| *s > 0.0);
    }

    /// Every call is held for `wait` from now, because of `why`. Shown in the progress
    /// line with its end time; a note when a hold begins (not each time one is extended,
    /// which a storm of 429s would do hundreds of times).
    pub fn held(&self, wait: Duration, why: &str) {
        let now = SystemTime::now();
        let Some(until) = now.checked_add(wait) else { return };
        let mut hold = self.hold.lock().expect("hold lock");
        let active = hold.filter(|end| *end > now);
        if active.is_some_and(|end| end >= until) {
            return;
        }
        *hold = Some(until);
        drop(hold);
        if active.is_none() {
            self.note(&format!(
                "bulkgen: every call is held for {} (until {}): {why}",
                human(wait.as_secs_f64()),
                clock(until)
            ));
        }
    }

    /// The hold in force, as the progress line shows it.
    fn hold_text(&self) -> String {
        let now = SystemTime::now();
        match *self.hold.lock().expect("hold lock") {
            Some(until) if until > now => {
                let left = until.duration_since(now).unwrap_or_default();
                format!("; every call held until {} ({} left)", clock(until), human(left.as_secs_f64()))
            }
            _ => String::new(),
        }
    }

    /// A successful call's latency, for the live percentiles.
    pub fn record_latency(&self, class: Resolution, secs: f64) {
        let secs = match *self.time_scale.lock().expect("scale lock") {
            Some(scale) => secs / scale,
            None => secs,
        };
        let mut recent = self.recent[class.index()].lock().expect("latency lock");
        if recent.len() == LIVE_WINDOW {
            recent.pop_front();
        }
        recent.push_back(secs);
    }

    /// "1K P50 45.2s P95 88.0s" for each class with calls, over its latest calls.
    fn live_latency(&self) -> String {
        let mut parts = Vec::new();
        for class in Resolution::ALL {
            let xs: Vec<f64> = self.recent[class.index()].lock().expect("latency lock").iter().copied().collect();
            if let Percentiles { p50: Some(p50), p95: Some(p95), .. } = Percentiles::of(xs) {
                parts.push(format!("{class} P50 {p50:.1}s P95 {p95:.1}s"));
            }
        }
        parts.join(", ")
    }

    /// A call (or a batch line) failed with `class`: counted for the progress line, so a
    /// run that makes no headway says why (a dead endpoint, a 429 storm).
    pub fn error(&self, class: ErrorClass) {
        if let Some(i) = ErrorClass::ALL.iter().position(|c| *c == class) {
            self.counters.errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// "; errors so far: rate_limited 12, timeout 1", or nothing.
    fn errors_text(&self) -> String {
        let parts: Vec<String> = ErrorClass::ALL
            .iter()
            .zip(&self.counters.errors)
            .filter_map(|(class, n)| {
                let n = n.load(Ordering::Relaxed);
                (n > 0).then(|| format!("{} {n}", class.as_str()))
            })
            .collect();
        if parts.is_empty() { String::new() } else { format!("; errors so far: {}", parts.join(", ")) }
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Ordering::Relaxed);
    }

    /// A message for the user, on stderr, printed above the bar when there is one.
    pub fn note(&self, msg: &str) {
        match self.bar.lock().expect("bar lock").as_ref() {
            Some(bar) => bar.println(msg),
            None if !self.quiet => eprintln!("{msg}"),
            None => {}
        }
    }

    fn line(&self) -> String {
        let c = &self.counters;
        let done = c.done.load(Ordering::Relaxed);
        let failed = c.failed.load(Ordering::Relaxed);
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-3);
        let per_min = done as f64 / elapsed * 60.0;
        let left = self.total.saturating_sub(self.position());
        let eta = if per_min > 0.0 && left > 0 {
            format!(", eta {}", human(left as f64 / per_min * 60.0))
        } else {
            String::new()
        };
        let spend = c.spend_micro_usd.load(Ordering::Relaxed) as f64 / 1e6;
        let spend = if spend > 0.0 && done > 0 {
            // The rows left at this run's average price per done row.
            let projected = spend + spend / done as f64 * left as f64;
            format!("; spent {} (projected total {})", Usd(spend), Usd(projected))
        } else {
            String::new()
        };
        let live = self.live_latency();
        let in_batch = c.in_batch.load(Ordering::Relaxed);
        let in_batch = if in_batch > 0 { format!("{in_batch} in batch jobs, ") } else { String::new() };
        format!(
            "{done} done, {failed} failed, {left} left; {in_batch}{} in flight, {} waiting to retry{}{}; {per_min:.1} \
             images/min{eta}{spend}{}",
            c.in_flight.load(Ordering::Relaxed),
            c.retry_waiting.load(Ordering::Relaxed),
            self.errors_text(),
            self.hold_text(),
            match (live.is_empty(), self.time_scale.lock().expect("scale lock").is_some()) {
                (true, _) => String::new(),
                (false, false) => format!("\n  latency (latest calls): {live}"),
                (false, true) => format!("\n  latency (latest calls, simulated: provider time): {live}"),
            }
        )
    }

    fn position(&self) -> u64 {
        let c = &self.counters;
        self.settled_before + c.done.load(Ordering::Relaxed) + c.failed.load(Ordering::Relaxed)
    }
}

/// A duration as people read it: `7.5s`, `3m04s`, `2h10m`.
pub fn human(secs: f64) -> String {
    let secs = secs.max(0.0);
    match secs.round() as u64 {
        0..=59 => format!("{secs:.1}s"),
        s @ 60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// A moment as a UTC wall-clock time, `14:03:27 UTC` (`+2d` when it is days ahead).
pub fn clock(at: SystemTime) -> String {
    let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (at_s, today) = (secs(at), secs(SystemTime::now()) / 86_400);
    let time = format!("{:02}:{:02}:{:02} UTC", at_s % 86_400 / 3600, at_s % 3600 / 60, at_s % 60);
    match at_s / 86_400 - today.min(at_s / 86_400) {
        0 => time,
        days => format!("{time} +{days}d"),
    }
}

/// The display task; [`Display::finish`] stops it and prints a last line.
pub struct Display {
    task: Option<tokio::task::JoinHandle<()>>,
    progress: Arc<Progress>,
}

pub fn start(progress: Arc<Progress>, mode: ProgressMode) -> Display {
    let ProgressMode::Auto { interval } = mode else {
        return Display { task: None, progress };
    };
    let task = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(progress.total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(&progress.bar_template()).expect("valid template").progress_chars("=> "),
        );
        bar.set_position(progress.position());
        *progress.bar.lock().expect("bar lock") = Some(bar.clone());
        let p = progress.clone();
        tokio::spawn(async move {
            loop {
                bar.set_position(p.position());
                bar.set_message(p.line());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    } else {
        let p = progress.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
            tick.tick().await;
            loop {
                tick.tick().await;
                let t = p.started.elapsed().as_secs();
                eprintln!("[{:02}:{:02}] {}; {}", t / 60, t % 60, p.settled(), p.line());
            }
        })
    };
    Display { task: Some(task), progress }
}

impl Display {
    pub fn finish(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(bar) = self.progress.bar.lock().expect("bar lock").take() {
            bar.set_position(self.progress.position());
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_display_counts_rows_unless_the_manifest_uses_counts() {
        let p = Progress::new(12, 2, ProgressMode::Quiet);
        Progress::add(&p.counters.done, 3);
        assert_eq!(p.settled(), "5/12 rows settled");
        assert_eq!(p.bar_template(), "{elapsed_precise} [{wide_bar}] {pos}/{len} rows settled\n{msg}");
        p.counting_images(true);
        assert_eq!(p.settled(), "5/12 images settled");
        assert_eq!(p.bar_template(), "{elapsed_precise} [{wide_bar}] {pos}/{len} images settled\n{msg}");
        assert!(ProgressStyle::with_template(&p.bar_template()).is_ok());
    }
}
