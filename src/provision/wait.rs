//! Waiting on Hetzner, in one place: for an action to finish, and for a
//! server to run. Both are bounded by a deadline and poll at the client's
//! pace.

use super::Kind;
use std::time::Instant;

use super::cloud::{ActionState, Cloud, Server};
use super::{Failure, Spinner};

/// Wait for action `id` to succeed.
pub async fn action(
    cloud: &impl Cloud,
    id: i64,
    deadline: Instant,
    progress: &Spinner,
) -> Result<(), Failure> {
    loop {
        let a = cloud.action(id).await?;
        match a.state {
            ActionState::Success => return Ok(()),
            ActionState::Error { code, message } => {
                return Err(Failure::new(
                    Kind::Api,
                    format!(
                        "Hetzner action {} ({}) failed: {message} ({code})",
                        a.id, a.command
                    ),
                    "see the server in the Cloud Console; running the command again is safe",
                ));
            }
            ActionState::Running { progress: pct } => progress.say(&format!(
                "waiting for {} (action {}, {pct}%)",
                a.command, a.id
            )),
        }
        if Instant::now() >= deadline {
            return Err(Failure::new(
                Kind::Timeout,
                format!(
                    "Hetzner action {} ({}) is still running after the timeout",
                    a.id, a.command
                ),
                "raise --timeout, or check the server in the Cloud Console; running the command again is safe",
            ));
        }
        tokio::time::sleep(cloud.poll()).await;
    }
}

/// Wait for each of `ids`, in order.
pub async fn actions(
    cloud: &impl Cloud,
    ids: &[i64],
    deadline: Instant,
    progress: &Spinner,
) -> Result<(), Failure> {
    for id in ids {
        action(cloud, *id, deadline, progress).await?;
    }
    Ok(())
}

/// The server, once it runs.
pub async fn running(
    cloud: &impl Cloud,
    id: i64,
    deadline: Instant,
    progress: &Spinner,
) -> Result<Server, Failure> {
    loop {
        let s = super::server(cloud, id).await?;
        if s.running() {
            return Ok(s);
        }
        progress.say(&format!(
            "waiting for server {} to run (status: {})",
            s.name, s.status
        ));
        if Instant::now() >= deadline {
            return Err(Failure::new(
                Kind::Timeout,
                format!("server {} is not running after the timeout", s.name),
                "raise --timeout, or look at the server in the Cloud Console",
            ));
        }
        tokio::time::sleep(cloud.poll()).await;
    }
}
