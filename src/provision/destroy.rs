//! `pantheros provision destroy HOST`: delete the server pantheros created
//! for a host, after the user typed its name (or `--yes`).

use super::Kind;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use super::cloud::Cloud;
use super::{Failure, Spinner, exit, our_server, wait};

pub async fn destroy(
    display: &crate::report::Display,
    host: &str,
    yes: bool,
    timeout: u64,
) -> Result<i32, Failure> {
    let cloud = super::connect().await?;
    let s = our_server(&cloud, host).await?;
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(Failure::new(
                Kind::NotConfirmed,
                format!("refusing to delete {host} without confirmation: stdin is not a terminal"),
                "pass --yes",
            ));
        }
        let answer: String = dialoguer::Input::new()
            .with_prompt(format!(
                "Delete server {host} ({}, {})? Type its name to confirm",
                s.id,
                s.ipv4.clone().unwrap_or_default()
            ))
            .interact_text()
            .unwrap_or_default();
        if answer.trim() != host {
            return Err(Failure::new(
                Kind::NotConfirmed,
                "not confirmed; nothing was deleted",
                "type the server's name",
            ));
        }
    }
    let progress = display.spinner();
    delete(
        &cloud,
        s.id,
        Instant::now() + Duration::from_secs(timeout),
        &progress,
    )
    .await?;
    progress.done(&format!("server {host} (id {}) deleted", s.id));
    Ok(exit::OK)
}

/// Delete server `id` and wait for the deletion.
pub async fn delete(
    cloud: &impl Cloud,
    id: i64,
    deadline: Instant,
    progress: &Spinner,
) -> Result<(), Failure> {
    if let Some(action) = cloud.delete_server(id).await? {
        wait::action(cloud, action, deadline, progress).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::cloud::{LABEL_HOST, LABEL_MANAGED};
    use crate::provision::fake::FakeCloud;

    #[tokio::test]
    async fn only_pantheros_servers_are_found_and_deleted() {
        let cloud = FakeCloud::new();
        let ours = cloud.add_server("web", &[(LABEL_MANAGED, "pantheros"), (LABEL_HOST, "web")]);
        cloud.add_server("db", &[]);
        let e = our_server(&cloud, "db").await.unwrap_err();
        assert_eq!(e.kind, Kind::ForeignServer);
        let e = our_server(&cloud, "nope").await.unwrap_err();
        assert_eq!(e.kind, Kind::NoServer);
        let s = our_server(&cloud, "web").await.unwrap();
        assert_eq!(s.id, ours);
        let d = Instant::now() + Duration::from_secs(5);
        delete(&cloud, s.id, d, &Spinner::silent()).await.unwrap();
        assert!(!cloud.state().servers.contains_key(&ours));
        assert_eq!(cloud.state().servers.len(), 1, "the other server stays");
    }
}
