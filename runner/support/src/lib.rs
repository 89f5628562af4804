//! Support code that the coebench engine and its endpoint simulator share, so the simulator (the
//! test oracle) needs none of the client it checks:
//! - [`timer`]: sub-millisecond sleeping to absolute deadlines on one timer thread;
//! - [`socket_time`]: TCP streams that note the kernel's receive time of what they read and the
//!   instant of their first write;
//! - [`sys`]: the few operating-system calls (the only unsafe code);
//! - [`tokenizer`]: token counting, embedded BPE or a Hugging Face `tokenizer.json`;
//! - [`base64`]: the one encoding both need.

pub mod base64;
pub mod socket_time;
pub mod sys;
pub mod timer;
pub mod tokenizer;
