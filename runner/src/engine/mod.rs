//! The load engine: runs a plan's rows against an endpoint and hands each finished request and
//! row to the metric and output layers.
//!
//! - [`run`]: the whole plan, row after row, with files written as each row finishes;
//! - [`row`]: one row, from prepared requests to its summary;
//! - [`load`]: the closed and open load loops;
//! - [`arrival`]: open-loop send schedules;
//! - [`endpoint`]: resolving credentials or starting the in-process simulator;
//! - [`health`]: whether the client itself was the bottleneck;
//! - [`observer`]: progress hooks for the terminal and metrics;
//! - [`preflight`]: what must hold before anything is sent (writable folders, credentials),
//!   checked by `validate` too.

pub mod arrival;
pub mod endpoint;
pub mod health;
pub mod load;
pub mod observer;
pub mod preflight;
pub mod row;
pub mod run;
pub mod template_probe;
