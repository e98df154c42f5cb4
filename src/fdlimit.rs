//! The open-file limit. Every call in flight holds a socket, so a high `-c` needs more
//! descriptors than the usual soft limit (1,024 on many Linux systems); running out shows
//! up as "Too many open files" on connects, i.e. as failing calls. Before any call, a run
//! raises its own soft limit as far as it needs, up to the hard limit (as servers and
//! Go's runtime do); when even the hard limit is too low, it stops and says what to do.

// rlim_t is u64 on Linux and macOS but not everywhere: the casts are kept on purpose.
#![allow(clippy::unnecessary_cast)]

/// Descriptors a run may hold besides its sockets: the checkpoint (database, WAL, shared
/// memory), the folder lock, the manifest, images being written, the runtime's own.
const RESERVE: u64 = 64;

/// What [`ensure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    pub from: u64,
    pub to: u64,
}

/// Descriptors a run with `concurrency` calls in flight may need: `sockets_per_call` each
/// (one; one more when results are fetched from URLs, whose host's connections are pooled
/// apart; one more for the server side when the simulator runs in the same process).
pub fn needed(concurrency: usize, sockets_per_call: u64) -> u64 {
    concurrency as u64 * sockets_per_call + RESERVE
}

/// Makes sure `needed` descriptors can be open at once, raising the soft limit when it
/// is lower. `Ok(None)`: nothing to do (or the limit cannot be read, as on Windows). The
/// error names `-c` (`concurrency`) and the `-c` that would fit.
#[cfg(unix)]
pub fn ensure(needed: u64, concurrency: usize, sockets_per_call: u64) -> Result<Option<Raised>, String> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Ok(None);
    }
    let (soft, hard) = (lim.rlim_cur as u64, lim.rlim_max as u64);
    let infinite = |v: libc::rlim_t| v == libc::RLIM_INFINITY;
    if infinite(lim.rlim_cur) || soft >= needed {
        return Ok(None);
    }
    let sockets = match sockets_per_call {
        1 => "a socket per call in flight".to_owned(),
        n => format!("{n} sockets per call in flight"),
    };
    let advice = |limit: u64| match limit.saturating_sub(RESERVE) / sockets_per_call.max(1) {
        0 => format!("raise the limit (at least {needed})"),
        fits => format!("lower -c (to about {fits}) or raise the limit"),
    };
    if !infinite(lim.rlim_max) && hard < needed {
        return Err(format!(
            "-c {concurrency} needs about {needed} open files ({sockets}, plus {RESERVE}), but this system allows \
             {hard} (the hard limit, `ulimit -Hn`); {}",
            advice(hard)
        ));
    }
    // As high as allowed, so that pooled connections beyond the estimate do not run out
    // either. Where the system refuses that (macOS caps the soft limit at
    // kern.maxfilesperproc, often 10,240 or more, below an infinite hard limit), 10,240,
    // then just what is needed.
    let highest = if infinite(lim.rlim_max) { needed.max(65_536) } else { hard };
    raise(lim, &[highest, needed.max(10_240).min(highest), needed]).map(Some).ok_or_else(|| {
        format!(
            "-c {concurrency} needs about {needed} open files ({sockets}, plus {RESERVE}), but the limit is {soft} \
             and the system refused to raise it ({}; on macOS the ceiling is `sysctl kern.maxfilesperproc`); {}",
            std::io::Error::last_os_error(),
            advice(soft)
        )
    })
}

/// Raises the soft limit to the hard one, as far as the system lets it (the simulator,
/// which serves as many connections as its clients open). None: nothing was raised.
#[cfg(unix)]
pub fn raise_to_hard() -> Option<Raised> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 || lim.rlim_cur == lim.rlim_max {
        return None;
    }
    let hard = if lim.rlim_max == libc::RLIM_INFINITY { 65_536 } else { lim.rlim_max as u64 };
    raise(lim, &[hard, 10_240])
}

/// Sets the soft limit to the first of `candidates` the system accepts (above the
/// current one).
#[cfg(unix)]
fn raise(current: libc::rlimit, candidates: &[u64]) -> Option<Raised> {
    let from = current.rlim_cur as u64;
    candidates.iter().filter(|to| **to > from).find_map(|&to| {
        let new = libc::rlimit { rlim_cur: to as libc::rlim_t, rlim_max: current.rlim_max };
        // SAFETY: setrlimit only reads the struct.
        (unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0).then_some(Raised { from, to })
    })
}

#[cfg(not(unix))]
pub fn raise_to_hard() -> Option<Raised> {
    None
}

#[cfg(not(unix))]
pub fn ensure(_needed: u64, _concurrency: usize, _sockets_per_call: u64) -> Result<Option<Raised>, String> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_call_in_flight_needs_its_sockets_and_a_reserve() {
        assert_eq!(needed(100, 1), 164);
        assert_eq!(needed(100, 2), 264);
    }

    #[cfg(unix)]
    #[test]
    fn a_limit_already_high_enough_is_left_alone() {
        assert_eq!(ensure(8, 1, 1), Ok(None));
    }
}
