//! The gate every call passes through, in two steps around the row's pre-send commit:
//! [`Gate::admit`] takes a concurrency slot and waits out any provider-wide hold (after a
//! 429); [`Gate::pace`], called after the commit and just before the request is written,
//! takes the rate limiter's token. Retries pass through it like first attempts.
//!
//! Order matters. The FIFO semaphore queues waiters fairly, so only the few tasks that
//! hold a slot race for the limiter's next cell (governor does not queue its waiters).
//! The token comes last because anything between it and the request delays some calls
//! and not others: a commit that stalls for 165 ms would otherwise release every token
//! taken meanwhile at once, a bunch the provider counts in one window.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

pub struct Gate {
    slots: Arc<Semaphore>,
    rate: Option<DefaultDirectRateLimiter>,
    hold_until: Mutex<Option<Instant>>,
}

/// A slot to make one call; dropping it frees the slot.
pub struct Admission {
    pub permit: OwnedSemaphorePermit,
    /// Time spent waiting for the slot, the limiter and any hold.
    pub waited: Duration,
}

impl Gate {
    /// At most `starts_per_window` starts in any half-open `window` (None: no rate cap).
    pub fn new(concurrency: usize, rate: Option<(NonZeroU32, Duration)>) -> Gate {
        let rate = rate.map(|(starts, window)| RateLimiter::direct(quota(starts.get(), window)));
        Gate { slots: Arc::new(Semaphore::new(concurrency)), rate, hold_until: Mutex::new(None) }
    }

    /// A slot, then the end of any hold. The rate token comes later, from [`Gate::pace`].
    pub async fn admit(&self) -> Admission {
        let started = Instant::now();
        let permit = self.slots.clone().acquire_owned().await.expect("the gate's semaphore is never closed");
        self.wait_out_hold().await;
        Admission { permit, waited: started.elapsed() }
    }

    /// The rate limiter's token, taken as late as possible: right before the request is
    /// written. A hold set meanwhile still applies: the cell taken is simply spent, and
    /// the call queues again once the hold is over. The wait is added to the admission's.
    pub async fn pace(&self, admission: &mut Admission) {
        let started = Instant::now();
        loop {
            self.wait_out_hold().await;
            if let Some(rate) = &self.rate {
                rate.until_ready().await;
            }
            if self.current_hold().is_none() {
                break;
            }
        }
        admission.waited += started.elapsed();
    }

    /// No call starts, on any worker, until `delay` from now has passed. Returns the end
    /// of the hold when this call started a new one or moved its end later.
    pub fn hold_for(&self, delay: Duration) -> Option<Instant> {
        // An absurd delay (the caller caps advice at --max-wait, but be safe) holds for a
        // century rather than overflowing the clock.
        let now = Instant::now();
        let until = now.checked_add(delay).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400));
        let mut hold = self.hold_until.lock().expect("hold lock");
        if hold.is_none_or(|h| h < until) {
            *hold = Some(until);
            return Some(until);
        }
        None
    }

    fn current_hold(&self) -> Option<Instant> {
        let mut hold = self.hold_until.lock().expect("hold lock");
        match *hold {
            Some(until) if until > Instant::now() => Some(until),
            _ => {
                *hold = None;
                None
            }
        }
    }

    async fn wait_out_hold(&self) {
        while let Some(until) = self.current_hold() {
            tokio::time::sleep_until(until).await;
        }
    }
}

/// The GCRA quota that keeps "at most `starts` in any half-open `window`" and still reaches
/// that rate when wakeups run late.
///
/// With burst 1 (one start every window/starts) a waiter that wakes δ late pushes every
/// later start back by δ: at 6,000/min (10 ms apart) a 0.25 ms mean lateness costs 2.5% of
/// the rate. A burst of b lets a late start be made up within (b-1) periods, but GCRA then
/// admits up to b + W'/T starts in a window W' < W (b at once from a fresh limiter), so
/// the period is stretched to T = (window + margin) / (starts - (b-1)). That keeps the
/// starts in any window at `starts` or fewer even when requests reach the provider up to
/// `margin` (window/600: 100 ms of a 60 s window) later relative to each other than they
/// left. The margin costs 0.17% of the rate, the burst (b-1)/starts. The burst is worth it
/// only at high rates: below 250 starts per window burst 1 loses less; from there, b - 1
/// periods cover 10 ms of lateness (b = 2 at 6,000/min), and never more than 1% of `starts`.
fn quota(starts: u32, window: Duration) -> Quota {
    const CATCH_UP: Duration = Duration::from_millis(10);
    let spacing = window / starts;
    let extra = if starts < 250 {
        0
    } else {
        let periods = CATCH_UP.as_nanos().div_ceil(spacing.as_nanos().max(1));
        u32::try_from(periods).unwrap_or(u32::MAX).min(starts / 100)
    };
    let span = window + window / 600;
    // Rounded up: a period a nanosecond short would let one start too many into a window.
    let period_ns = span.as_nanos().div_ceil(u128::from(starts - extra)).max(1);
    let period = Duration::from_nanos(u64::try_from(period_ns).unwrap_or(u64::MAX));
    let burst = NonZeroU32::new(extra + 1).expect("extra + 1 > 0");
    Quota::with_period(period).expect("period is non-zero").allow_burst(burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hold_delays_every_admission_until_it_ends() {
        let gate = Gate::new(4, None);
        gate.hold_for(Duration::from_millis(80));
        let t = Instant::now();
        let mut a = gate.admit().await;
        gate.pace(&mut a).await;
        assert!(t.elapsed() >= Duration::from_millis(80));
        assert!(a.waited >= Duration::from_millis(80));
    }

    #[tokio::test]
    async fn a_hold_set_while_waiting_for_a_token_is_waited_out() {
        let gate = Arc::new(Gate::new(2, Some((NonZeroU32::new(10).unwrap(), Duration::from_secs(1)))));
        let mut first = gate.admit().await;
        gate.pace(&mut first).await;
        let mut second = gate.admit().await;
        // The next token is 100 ms away; a hold of 250 ms begins meanwhile.
        let holder = gate.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            holder.hold_for(Duration::from_millis(250));
        });
        let t = Instant::now();
        gate.pace(&mut second).await;
        assert!(t.elapsed() >= Duration::from_millis(250), "{:?}", t.elapsed());
    }

    #[test]
    fn an_absurd_hold_does_not_overflow_the_clock() {
        let gate = Gate::new(1, None);
        assert!(gate.hold_for(Duration::MAX).is_some());
        assert!(gate.hold_for(Duration::from_secs(1)).is_none(), "a shorter hold never shortens a longer one");
    }

    #[tokio::test]
    async fn a_shorter_hold_never_shortens_a_longer_one() {
        let gate = Gate::new(1, None);
        gate.hold_for(Duration::from_millis(60));
        gate.hold_for(Duration::from_millis(1));
        let t = Instant::now();
        drop(gate.admit().await);
        assert!(t.elapsed() >= Duration::from_millis(60));
    }

    async fn start_times(gate: &Gate, n: usize) -> Vec<Instant> {
        let mut starts = Vec::with_capacity(n);
        for _ in 0..n {
            let mut a = gate.admit().await;
            gate.pace(&mut a).await;
            starts.push(Instant::now());
        }
        starts
    }

    #[tokio::test]
    async fn a_low_rate_is_spaced_evenly_even_when_fresh() {
        let gate = Gate::new(8, Some((NonZeroU32::new(20).unwrap(), Duration::from_secs(1))));
        let starts = start_times(&gate, 5).await;
        // 5 starts at 50 ms spacing: the last at >= 200 ms, and never two at once (the
        // times are read after each admission, so allow for a late read).
        assert!(starts[4] - starts[0] >= Duration::from_millis(195), "{:?}", starts[4] - starts[0]);
        assert!(starts.windows(2).all(|w| w[1] - w[0] >= Duration::from_millis(20)), "{starts:?}");
    }

    /// Starts admitted by `quota(starts, window)` on a fake clock when every waiter wakes
    /// `late` after the moment the limiter named, `n` of them back to back.
    fn admitted(starts: u32, window: Duration, late: Duration, n: usize) -> Vec<Duration> {
        use governor::clock::{Clock, FakeRelativeClock};
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::direct_with_clock(quota(starts, window), clock.clone());
        let mut times = Vec::with_capacity(n);
        while times.len() < n {
            match limiter.check() {
                Ok(()) => times.push(Duration::from(clock.now())),
                Err(not_until) => clock.advance(not_until.wait_time_from(clock.now()) + late),
            }
        }
        times
    }

    fn most_in(times: &[Duration], window: Duration) -> usize {
        let mut lo = 0;
        let mut most = 0;
        for (hi, t) in times.iter().enumerate() {
            while *t - times[lo] >= window {
                lo += 1;
            }
            most = most.max(hi + 1 - lo);
        }
        most
    }

    #[test]
    fn a_high_rate_makes_up_late_wakeups_and_never_passes_the_cap() {
        // 6,000 a minute; every waiter wakes 1 ms late (a tenth of the spacing).
        let minute = Duration::from_secs(60);
        let times = admitted(6000, minute, Duration::from_millis(1), 20_000);
        let most = most_in(&times, minute);
        assert!((5985..=6000).contains(&most), "{most} starts in the busiest minute");
        // Starts 2 .. 20,000 come one per period: at 0.998 of the cap (the margin and the
        // burst), where burst 1 would lose the lateness each time (0.91 of the cap).
        let rate = (times.len() - 2) as f64 / (times[times.len() - 1] - times[1]).as_secs_f64() * 60.0;
        assert!((5985.0..=6000.0).contains(&rate), "{rate} starts a minute");
        // A start that leaves up to the margin (100 ms) later than an earlier one still
        // keeps every window under the cap: shift a window's first starts late by 100 ms.
        let mut shifted = times.clone();
        for t in shifted.iter_mut().take(6000) {
            *t += Duration::from_millis(100);
        }
        shifted.sort();
        assert!(most_in(&shifted, minute) <= 6000, "{}", most_in(&shifted, minute));
    }

    #[test]
    fn a_low_rate_has_no_burst() {
        let times = admitted(60, Duration::from_secs(60), Duration::ZERO, 5);
        assert!(times.windows(2).all(|w| w[1] - w[0] >= Duration::from_secs(1)), "{times:?}");
    }

    #[test]
    fn the_quota_never_allows_more_than_the_cap_in_a_window() {
        for (starts, window) in [(1, 60_000), (60, 60_000), (249, 60_000), (250, 60_000), (6000, 60_000), (60, 600)] {
            let window = Duration::from_millis(window);
            let q = quota(starts, window);
            let burst = q.burst_size().get();
            // GCRA admits at most burst + floor(W'/T) in a window W' < W.
            let most = burst as u128 + (window.as_nanos() - 1) / q.replenish_interval().as_nanos();
            assert!(most <= starts as u128, "{starts}/{window:?}: burst {burst}, up to {most}");
            assert!(most + 1 + starts as u128 / 100 >= starts as u128, "{starts}/{window:?}: only {most}");
        }
    }
}
