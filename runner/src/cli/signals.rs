//! SIGTERM and SIGINT (Ctrl-C) as one clean stop of a run, in stages.
//!
//! The first signal stops sending; requests in flight get the plan's grace
//! (`stopGraceSeconds`, `--stop-grace`) to finish, then are cut off and recorded as
//! `interrupted` with what they measured so far. A second signal cuts them off at once; either
//! way the engine then writes the row's files and `run.json` and the run exits 5. A third
//! signal exits at once (only for a run stuck writing its files).
//!
//! Kubernetes stops pods with SIGTERM and kills them `terminationGracePeriodSeconds` (30 s by
//! default) later, so the default grace is well under that. As PID 1 in a container a signal
//! without a handler is ignored; these handlers make the binary stop correctly there too.

use std::sync::Arc;
use std::time::Duration;

use coebench_plan::report::RunOutcome;
use coebench_runner::engine::load::StopSignal;
use coebench_runner::engine::run::exit_code;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::cli::messages;

/// SIGTERM and SIGINT, received as one stream.
struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    fn install() -> std::io::Result<Self> {
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next signal's name.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Installs the handlers (on the current runtime) and spawns the task that turns signals into
/// `stop`'s stages. Call from inside the runtime, before the run starts.
pub fn handle_stop_signals(stop: Arc<StopSignal>, grace: Duration) {
    let mut signals = match StopSignals::install() {
        Ok(signals) => signals,
        Err(e) => {
            messages::warn(&format!(
                "cannot handle SIGTERM/SIGINT ({e}): a signal will end the run without its files"
            ));
            return;
        }
    };
    tokio::spawn(async move {
        let name = signals.next().await;
        messages::warn(&format!(
            "{name}: stopping; no new requests, those in flight get {}s to finish (signal \
             again to cut them off now)",
            grace.as_secs_f64()
        ));
        stop.stop();
        tokio::select! {
            () = tokio::time::sleep(grace) => {
                messages::warn("the grace is over: cutting off the requests in flight");
            }
            name = signals.next() => {
                messages::warn(&format!("{name} again: cutting off the requests in flight"));
            }
        }
        stop.cut_off();
        let name = signals.next().await;
        messages::warn(&format!("{name} a third time: exiting at once"));
        std::process::exit(i32::from(exit_code(RunOutcome::Interrupted)));
    });
}
