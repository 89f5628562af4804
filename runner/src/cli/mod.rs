//! The command line's own layers: arguments, turning them into a plan, running the commands and
//! terminal output. Nothing here measures or computes a metric; it calls the library.

pub mod args;
pub mod inputs;
pub mod run;
pub mod simulate;
pub mod terminal;
