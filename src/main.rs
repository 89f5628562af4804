//! `coebench-operator`: the Kubernetes controller for `CoeBenchmark` and `CoeBenchmarkRun`.
//!
//! Placeholder until the operator core lands; it only reports its version.

fn main() {
    println!("coebench-operator {}", env!("CARGO_PKG_VERSION"));
}
