//! bulkgen: a resumable, rate-limited batch runner for slow image-generation APIs.
//!
//! A row flows one way: `manifest` (read, validated) -> `checkpoint` (the SQLite state)
//! -> `runner` (dispatch through `limits`, call through `http` + `provider`, retry per
//! `error` and `retry`) -> `output` (the image file) -> `checkpoint` -> `report`.
//! `sim` is the simulated provider the tests and `--simulate` talk to. See
//! ARCHITECTURE.md.

pub mod attach;
pub mod catalog;
pub mod chart;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod cost;
pub mod error;
pub mod exit;
pub mod fdlimit;
pub mod flags;
pub mod http;
pub mod inspect;
pub mod limits;
pub mod manifest;
pub mod output;
pub mod params;
pub mod plan;
pub mod preflight;
pub mod progress;
pub mod provider;
pub mod refs;
pub mod repair;
pub mod report;
pub mod retry;
pub mod runner;
pub mod secret;
pub mod sim;
pub mod size;
