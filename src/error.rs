//! The error classes of product.md and what the runner does with each.
//!
//! Every failed call is turned into a [`CallError`] whose [`ErrorClass`] decides, by a
//! `match`, whether the row is retried, fails for good, or stops the whole run.

use std::fmt;
use std::time::Duration;

/// The classes a failed call falls into (product.md, "Errors and what happens").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorClass {
    /// No connection at all (DNS, refused, TLS handshake): the call reached nobody, so
    /// it costs nothing and spends none of the row's attempts.
    Unreachable,
    Timeout,
    Network,
    RateLimited,
    Overloaded,
    Server,
    BadResponse,
    Download,
    Refused,
    InvalidRequest,
    Auth,
    Quota,
    NotFound,
    /// Gemini 403 PERMISSION_DENIED naming an uploaded `files/...` reference (expired or
    /// deleted): the reference is uploaded again once and the row retried; not a bad key.
    FileGone,
}

/// What the runner does after an error of a given class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Transient: wait (backoff or the server's advice) and try again.
    Retry,
    /// Final for this row only; the run goes on.
    FailRow,
    /// Retrying cannot help and every row would fail the same way: stop the run.
    StopRun,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 14] = [
        ErrorClass::Unreachable,
        ErrorClass::Timeout,
        ErrorClass::Network,
        ErrorClass::RateLimited,
        ErrorClass::Overloaded,
        ErrorClass::Server,
        ErrorClass::BadResponse,
        ErrorClass::Download,
        ErrorClass::Refused,
        ErrorClass::InvalidRequest,
        ErrorClass::Auth,
        ErrorClass::Quota,
        ErrorClass::NotFound,
        ErrorClass::FileGone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Unreachable => "unreachable",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Network => "network",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::Overloaded => "overloaded",
            ErrorClass::Server => "server",
            ErrorClass::BadResponse => "bad_response",
            ErrorClass::Download => "download",
            ErrorClass::Refused => "refused",
            ErrorClass::InvalidRequest => "invalid_request",
            ErrorClass::Auth => "auth",
            ErrorClass::Quota => "quota",
            ErrorClass::NotFound => "not_found",
            ErrorClass::FileGone => "file_gone",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorClass> {
        ErrorClass::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn disposition(self) -> Disposition {
        match self {
            ErrorClass::Unreachable
            | ErrorClass::Timeout
            | ErrorClass::Network
            | ErrorClass::RateLimited
            | ErrorClass::Overloaded
            | ErrorClass::Server
            | ErrorClass::BadResponse
            | ErrorClass::Download
            | ErrorClass::FileGone => Disposition::Retry,
            ErrorClass::Refused | ErrorClass::InvalidRequest => Disposition::FailRow,
            ErrorClass::Auth | ErrorClass::Quota | ErrorClass::NotFound => Disposition::StopRun,
        }
    }

    /// What the user should do when this class stops the run.
    pub fn advice(self) -> &'static str {
        match self {
            ErrorClass::Auth => {
                "check the API key in the environment variable named by --api-key-env, and that it may use this model"
            }
            ErrorClass::Quota => {
                "the account's quota or billing is exhausted: add credit or wait for the quota to reset, then run the same command again"
            }
            ErrorClass::NotFound => {
                "check --model / the manifest's model column and --base-url: the provider does not know this model or endpoint"
            }
            _ => "",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One failed call, classified. The message is free of the API key: [`CallError::new`]
/// masks every key of the process before it cuts the text (`secret::cut`), so no error
/// made anywhere can carry the key or a part of it cut short.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{class}{}: {message}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
pub struct CallError {
    pub class: ErrorClass,
    pub status: Option<u16>,
    pub message: String,
    /// The server's advice on when to try again (Retry-After, retry-after-ms, RetryInfo).
    pub retry_after: Option<Duration>,
    /// The server's `x-should-retry` header, when it sent `true` or `false`: it overrides
    /// the class's retry decision (see [`CallError::disposition`]).
    pub should_retry: Option<bool>,
    /// The fix for this very error when it is more specific than the class's advice
    /// (see [`CallError::advice`]).
    pub advice: Option<&'static str>,
}

impl CallError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        CallError {
            class,
            status: None,
            message: crate::secret::cut(&message.into(), MAX_MESSAGE),
            retry_after: None,
            should_retry: None,
            advice: None,
        }
    }

    pub fn with_should_retry(mut self, should_retry: Option<bool>) -> Self {
        self.should_retry = should_retry;
        self
    }

    pub fn with_advice(mut self, advice: &'static str) -> Self {
        self.advice = Some(advice);
        self
    }

    /// What the user should do: the advice for this error, else the class's ("" when
    /// the class needs none).
    pub fn advice(&self) -> &'static str {
        self.advice.unwrap_or_else(|| self.class.advice())
    }

    /// What the runner does: the class's disposition, with the server's `x-should-retry`
    /// on top, as openai-python's `BaseClient._should_retry` obeys it before looking at
    /// the status. `true` retries even a class that would fail the row (within the
    /// row's attempts); `false` does not retry now, so the row fails for this run with
    /// its transient class. A class that stops the run stops it whatever the header says:
    /// one server's hint must not send every row into a dead account.
    pub fn disposition(&self) -> Disposition {
        match (self.class.disposition(), self.should_retry) {
            (Disposition::StopRun, _) => Disposition::StopRun,
            (_, Some(true)) => Disposition::Retry,
            (_, Some(false)) => Disposition::FailRow,
            (by_class, None) => by_class,
        }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn with_retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }

    /// The message with the HTTP status in front, as results.csv shows it.
    pub fn detail(&self) -> String {
        match self.status {
            Some(s) => format!("HTTP {s}: {}", self.message),
            None => self.message.clone(),
        }
    }
}

/// The longest message kept, in bytes (then `…`).
pub const MAX_MESSAGE: usize = 500;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_round_trips_through_its_name() {
        for class in ErrorClass::ALL {
            assert_eq!(ErrorClass::parse(class.as_str()), Some(class));
        }
        assert_eq!(ErrorClass::parse("nope"), None);
    }

    #[test]
    fn fatal_classes_stop_the_run_and_final_ones_fail_the_row() {
        assert_eq!(ErrorClass::Auth.disposition(), Disposition::StopRun);
        assert_eq!(ErrorClass::Quota.disposition(), Disposition::StopRun);
        assert_eq!(ErrorClass::NotFound.disposition(), Disposition::StopRun);
        assert_eq!(ErrorClass::Refused.disposition(), Disposition::FailRow);
        assert_eq!(ErrorClass::InvalidRequest.disposition(), Disposition::FailRow);
        assert_eq!(ErrorClass::RateLimited.disposition(), Disposition::Retry);
        assert_eq!(ErrorClass::Download.disposition(), Disposition::Retry);
    }

    #[test]
    fn x_should_retry_overrides_the_class_but_never_a_stop() {
        let e = |class, hint| CallError::new(class, "x").with_should_retry(hint);
        assert_eq!(e(ErrorClass::Refused, None).disposition(), Disposition::FailRow);
        assert_eq!(e(ErrorClass::InvalidRequest, Some(true)).disposition(), Disposition::Retry);
        assert_eq!(e(ErrorClass::Refused, Some(true)).disposition(), Disposition::Retry);
        assert_eq!(e(ErrorClass::Server, Some(true)).disposition(), Disposition::Retry);
        assert_eq!(e(ErrorClass::Server, Some(false)).disposition(), Disposition::FailRow);
        assert_eq!(e(ErrorClass::RateLimited, Some(false)).disposition(), Disposition::FailRow);
        assert_eq!(e(ErrorClass::Refused, Some(false)).disposition(), Disposition::FailRow);
        for stop in [ErrorClass::Auth, ErrorClass::Quota, ErrorClass::NotFound] {
            for hint in [None, Some(true), Some(false)] {
                assert_eq!(e(stop, hint).disposition(), Disposition::StopRun, "{stop} {hint:?}");
            }
        }
    }

    #[test]
    fn specific_advice_wins_over_the_class_advice() {
        let plain = CallError::new(ErrorClass::Quota, "x");
        assert_eq!(plain.advice(), ErrorClass::Quota.advice());
        let specific = plain.clone().with_advice("enable billing");
        assert_eq!(specific.advice(), "enable billing");
        assert_eq!(CallError::new(ErrorClass::Server, "x").advice(), "");
    }

    #[test]
    fn a_key_straddling_the_cut_leaves_no_part_of_it_in_the_message() {
        let key = "sk-err-Hq2Wm9Xc4Vb7Nz1Lk8Jf3Gd6Sa5Pt0";
        let _registered = crate::secret::ApiKey::new(key);
        for before in [8, 16, 30] {
            let text = format!("{}{key} and more text after it, past the cut", "m".repeat(MAX_MESSAGE - before));
            let e = CallError::new(ErrorClass::InvalidRequest, text);
            for part in key.as_bytes().windows(crate::secret::MIN_PARTIAL) {
                let part = std::str::from_utf8(part).unwrap();
                assert!(!e.message.contains(part), "{before}: {part} in {}", e.message);
                assert!(!e.to_string().contains(part) && !e.detail().contains(part));
            }
            assert!(e.message.ends_with('…') && !e.message.contains("[api k…"), "{}", e.message);
        }
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let e = CallError::new(ErrorClass::Server, "é".repeat(400));
        assert!(e.message.len() <= 504);
        assert!(e.message.ends_with('…'));
    }
}
