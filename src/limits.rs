//! The gate every call passes through: a concurrency slot, then the rate limiter, then any
//! provider-wide hold (after a 429). Retries pass through it like first attempts.
//!
//! Order matters: the FIFO semaphore queues waiters fairly, so only the few tasks that
//! hold a slot race for the limiter's next cell (governor does not queue its waiters).

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
    /// `starts_per_window` starts in any `window` (None: no rate cap), spaced evenly: one
    /// start every `window / starts_per_window`, burst 1, so even a fresh limiter never
    /// lets a burst through.
    pub fn new(concurrency: usize, rate: Option<(NonZeroU32, Duration)>) -> Gate {
        let rate = rate.map(|(starts, window)| {
            let period = (window / starts.get()).max(Duration::from_nanos(1));
            let quota = Quota::with_period(period).expect("period is non-zero").allow_burst(NonZeroU32::MIN);
            RateLimiter::direct(quota)
        });
        Gate { slots: Arc::new(Semaphore::new(concurrency)), rate, hold_until: Mutex::new(None) }
    }

    pub async fn admit(&self) -> Admission {
        let started = Instant::now();
        let permit = self.slots.clone().acquire_owned().await.expect("the gate's semaphore is never closed");
        loop {
            self.wait_out_hold().await;
            if let Some(rate) = &self.rate {
                rate.until_ready().await;
            }
            // A hold set while we waited on the limiter still applies: the cell we took is
            // simply spent, and we queue again once the hold is over.
            if self.current_hold().is_none() {
                break;
            }
        }
        Admission { permit, waited: started.elapsed() }
    }

    /// No call starts, on any worker, until `delay` from now has passed.
    pub fn hold_for(&self, delay: Duration) {
        let until = Instant::now() + delay;
        let mut hold = self.hold_until.lock().expect("hold lock");
        if hold.is_none_or(|h| h < until) {
            *hold = Some(until);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hold_delays_every_admission_until_it_ends() {
        let gate = Gate::new(4, None);
        gate.hold_for(Duration::from_millis(80));
        let t = Instant::now();
        let a = gate.admit().await;
        assert!(t.elapsed() >= Duration::from_millis(80));
        assert!(a.waited >= Duration::from_millis(80));
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

    #[tokio::test]
    async fn starts_are_spaced_by_the_rate_even_when_fresh() {
        let gate = Gate::new(8, Some((NonZeroU32::new(20).unwrap(), Duration::from_secs(1))));
        let t = Instant::now();
        for _ in 0..5 {
            drop(gate.admit().await);
        }
        // 5 starts at 50 ms spacing: the last at >= 200 ms.
        assert!(t.elapsed() >= Duration::from_millis(195), "{:?}", t.elapsed());
    }
}
