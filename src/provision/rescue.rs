//! `pantheros provision rescue HOST`: boot the server into Hetzner's rescue
//! system, reachable with your SSH key.

use super::Kind;
use std::time::{Duration, Instant};

use super::cloud::{Cloud, Server};
use super::create::ensure_ssh_key;
use super::{Failure, Spinner, exit, our_server, sshkey, wait};

pub async fn rescue(
    display: &crate::report::Display,
    host: &str,
    ssh_key: Option<&std::path::Path>,
    timeout: u64,
) -> Result<i32, Failure> {
    let cloud = super::connect().await?;
    let key = sshkey::choose(ssh_key)?;
    let s = our_server(&cloud, host).await?;
    let (key_id, _) = ensure_ssh_key(&cloud, &key, false).await?;
    let progress = display.spinner();
    boot(
        &cloud,
        &s,
        key_id,
        Instant::now() + Duration::from_secs(timeout),
        &progress,
    )
    .await?;
    progress.done(&format!(
        "{host} is booting Hetzner's rescue system: ssh root@{} (your key {})",
        s.address().unwrap_or_default(),
        key.fingerprint
    ));
    Ok(exit::OK)
}

/// Enable rescue with the key and reset into it. Every failure here is a
/// rescue failure (exit 30).
pub async fn boot(
    cloud: &impl Cloud,
    s: &Server,
    key_id: Option<i64>,
    deadline: Instant,
    progress: &Spinner,
) -> Result<(), Failure> {
    let as_rescue = |f: Failure| Failure {
        kind: Kind::Rescue,
        ..f
    };
    let enabled = cloud
        .enable_rescue(s.id, key_id)
        .await
        .map_err(|e| Failure::api(Kind::Rescue, "enabling the rescue system failed", e))?;
    if let Some(a) = enabled {
        wait::action(cloud, a, deadline, progress)
            .await
            .map_err(as_rescue)?;
    }
    let reset = cloud
        .reset(s.id)
        .await
        .map_err(|e| Failure::api(Kind::Rescue, "resetting into the rescue system failed", e))?;
    wait::action(cloud, reset, deadline, progress)
        .await
        .map_err(as_rescue)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::fake::{FakeCloud, api_error};

    #[tokio::test]
    async fn rescue_enables_then_resets_and_its_failures_are_exit_30() {
        let cloud = FakeCloud::new();
        let id = cloud.add_server("web", &[]);
        let s = cloud.state().servers[&id].clone();
        let deadline = Instant::now() + Duration::from_secs(5);
        boot(&cloud, &s, Some(7), deadline, &Spinner::silent())
            .await
            .unwrap();
        assert_eq!(cloud.calls("enable_rescue"), 1);
        assert_eq!(cloud.calls("reset"), 1);
        cloud.fail("reset", api_error("POST reset", 423, "locked"));
        let e = boot(&cloud, &s, None, deadline, &Spinner::silent())
            .await
            .unwrap_err();
        assert_eq!(e.kind, Kind::Rescue);
        assert!(e.hint.contains("another action"), "{}", e.hint);
    }
}
