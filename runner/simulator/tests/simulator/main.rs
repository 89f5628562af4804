//! The simulator's integration tests, in one test binary, over real loopback HTTP with a plain
//! hyper client (never the engine's client, which the simulator is the oracle of): wire
//! formats, timing against its own ground truth, and injected faults.

mod faults;
mod support;
mod timing;
mod wire;
