//! `coebench run --workers N` on one machine: the running process is the coordinator and worker
//! 0, and starts workers 1 to N-1 as processes of its own binary (`coebench worker --coordinator
//! 127.0.0.1:<port> --index <i>`), each pinned to a core where the system allows, connected over
//! loopback with the same protocol as Pods on Kubernetes. Workers run in their own process
//! group, so a terminal's Ctrl-C interrupts the run through the coordinator, as for one process.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The worker processes of a local distributed run.
pub struct LocalWorkers {
    children: Vec<(u32, Child)>,
}

impl LocalWorkers {
    /// Starts workers 1 to `workers - 1` of `exe`, each told to reach `coordinator` within
    /// `rendezvous`, with `extra` arguments after its own; worker `i` is pinned to core
    /// `i mod cores` (the coordinator keeps core 0 with worker 0's load).
    pub fn spawn(
        exe: &Path,
        coordinator: SocketAddr,
        workers: u32,
        rendezvous: Duration,
        extra: &[String],
    ) -> std::io::Result<LocalWorkers> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let mut started = LocalWorkers {
            children: Vec::new(),
        };
        for index in 1..workers {
            let child = Command::new(exe)
                .arg("worker")
                .arg("--coordinator")
                .arg(coordinator.to_string())
                .arg("--index")
                .arg(index.to_string())
                .arg("--rendezvous-timeout")
                .arg(rendezvous.as_secs().to_string())
                .args(extra)
                // Its own process group: a terminal's Ctrl-C reaches the coordinator only,
                // which stops the row on every worker as it stops its own.
                .process_group(0)
                .spawn()?;
            if cores > 1 && !coebench_support::sys::pin_to_core(child.id(), index as usize % cores)
            {
                tracing::debug!(worker = index, "cannot pin the worker to a core");
            }
            started.children.push((index, child));
        }
        Ok(started)
    }

    /// Each worker's index and process id.
    pub fn pids(&self) -> Vec<(u32, u32)> {
        self.children.iter().map(|(i, c)| (*i, c.id())).collect()
    }

    /// Waits up to `grace` for every worker to exit (they do once told the run is over), then
    /// kills those still running. Blocking.
    pub fn wait(mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        for (index, child) in &mut self.children {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        tracing::debug!(worker = *index, %status, "worker exited");
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        self.children.clear();
    }
}

impl Drop for LocalWorkers {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
