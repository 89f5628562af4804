//! The load engine: runs a plan's rows against an endpoint and hands each finished request and
//! row to the metric and output layers.

pub mod arrival;
pub mod health;
pub mod load;
