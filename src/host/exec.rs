//! Where a host's commands run. [`Target`](super::Target) turns each step
//! into an argv (local, or over SSH); an [`Executor`] runs it. The real one
//! starts processes; the fake one (`fake.rs`, tests only) answers the target
//! protocol from memory, so the pipeline's state machine, its rollback paths
//! and the fleet's phases are unit-tested without root, SSH or Nix.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::CommandFailure;
use crate::runner::{self, Cmd, Lines, Output};

pub type Running<'a> = Pin<Box<dyn Future<Output = Result<Output, CommandFailure>> + Send + 'a>>;

pub trait Executor: Send + Sync {
    /// Run `cmd`, handing its output lines to `lines` as they arrive.
    fn run<'a>(&'a self, cmd: &'a Cmd, lines: &'a dyn Lines) -> Running<'a>;
}

/// Runs commands as processes on this machine.
pub struct Processes;

impl Executor for Processes {
    fn run<'a>(&'a self, cmd: &'a Cmd, lines: &'a dyn Lines) -> Running<'a> {
        Box::pin(runner::run_streaming(cmd, lines))
    }
}

/// The executor of a real run.
pub fn processes() -> Arc<dyn Executor> {
    Arc::new(Processes)
}
