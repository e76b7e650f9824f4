//! Ctrl-C and SIGTERM. The first one asks every host's pipeline to stop:
//! stages before the activation end at once (their commands are killed) and
//! release what they hold; a host that is activating is left to its
//! watchdog and reported. A second one exits immediately.

use tokio::sync::watch;

/// A host's view of the run's interrupt: cheap to clone, and to wait on.
#[derive(Clone)]
pub struct Interrupt {
    rx: watch::Receiver<Option<&'static str>>,
}

impl Interrupt {
    /// An interrupt that never fires (for callers that install no handler).
    pub fn never() -> Interrupt {
        let (tx, rx) = watch::channel(None);
        // The sender lives as long as the program: nothing ever fires.
        std::mem::forget(tx);
        Interrupt { rx }
    }

    /// Which signal arrived, if one did.
    pub fn fired(&self) -> Option<&'static str> {
        *self.rx.borrow()
    }

    /// Wait until a signal arrives (forever, if none does).
    pub async fn wait(&self) -> &'static str {
        let mut rx = self.rx.clone();
        loop {
            if let Some(s) = *rx.borrow_and_update() {
                return s;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Install the handler for SIGINT and SIGTERM (once per run).
pub fn install(display: &crate::report::Display) -> Interrupt {
    let display = display.clone();
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        let mut count = 0;
        loop {
            let name = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
            count += 1;
            if count > 1 {
                eprintln!("\n{name} again: exiting now; hosts may still hold their locks");
                std::process::exit(crate::error::exit::INTERRUPTED);
            }
            display.block(&format!(
                "\n{name}: stopping. Hosts that have not started activating release their locks; \
                 a host that is activating is left to its watchdog. Press Ctrl-C again to exit at once.\n"
            ));
            let _ = tx.send(Some(name));
        }
    });
    Interrupt { rx }
}
