//! The command line's own layers: arguments, turning them into a plan, running the commands,
//! stop signals and terminal output. Nothing here measures or computes a metric; it calls the library.

pub mod args;
pub mod compare;
pub mod distributed;
pub mod inputs;
pub mod messages;
pub mod report;
pub mod run;
pub mod signals;
pub mod simulate;
pub mod terminal;
