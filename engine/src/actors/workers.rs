//! The worker threads: one actix arbiter per core, started on a thread of their own so that the
//! engine runs the same whether or not the embedding program uses actix or tokio itself.

use actix::{Arbiter, ArbiterHandle, System};
use std::io;
use std::thread::JoinHandle;

/// A running set of arbiter threads.
pub struct Workers {
    system: System,
    arbiters: Vec<ArbiterHandle>,
    thread: Option<JoinHandle<()>>,
}

impl Workers {
    /// Starts `count` arbiters (at least one).
    pub fn start(count: usize) -> io::Result<Workers> {
        let count = count.max(1);
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new().name("leasehold-system".into()).spawn(move || {
            let system = System::new();
            let arbiters: Vec<Arbiter> = (0..count).map(|_| Arbiter::new()).collect();
            let handles = arbiters.iter().map(Arbiter::handle).collect::<Vec<_>>();
            // The receiver only goes away if `start` itself failed; then there is nobody to tell.
            let _ = started_tx.send((System::current(), handles));
            let _ = system.run();
            for arbiter in arbiters {
                arbiter.stop();
                let _ = arbiter.join();
            }
        })?;
        let (system, arbiters) =
            started_rx.recv().map_err(|_| io::Error::other("the actor system thread stopped while starting"))?;
        Ok(Workers { system, arbiters, thread: Some(thread) })
    }

    /// The arbiters, for spawning actors and tasks on them.
    pub fn arbiters(&self) -> &[ArbiterHandle] {
        &self.arbiters
    }

    /// The index of the worker that hosts work keyed by `key` (spreads keys evenly).
    pub fn index_for(&self, key: u64) -> usize {
        let n = self.arbiters.len() as u64;
        // `key % n` is below `n`, which came from a usize.
        usize::try_from(key % n).unwrap_or(0)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
