//! `pantheros provision iso attach|detach HOST`.

use super::Kind;
use std::time::{Duration, Instant};

use super::cloud::{Cloud, Server};
use super::{Failure, IsoCommand, Spinner, exit, our_server, wait};

pub async fn iso(display: &crate::report::Display, cmd: &IsoCommand) -> Result<i32, Failure> {
    let cloud = super::connect().await?;
    let progress = display.spinner();
    match cmd {
        IsoCommand::Attach(crate::cli::IsoAttachArgs { host, iso, timeout }) => {
            let s = our_server(&cloud, host).await?;
            attach(&cloud, &s, iso, deadline(*timeout), &progress).await?;
            progress.done(&format!("ISO {iso} attached to {host}"));
        }
        IsoCommand::Detach(crate::cli::IsoDetachArgs { host, timeout }) => {
            let s = our_server(&cloud, host).await?;
            detach(&cloud, &s, deadline(*timeout), &progress).await?;
            progress.done(&format!("no ISO attached to {host}"));
        }
    }
    Ok(exit::OK)
}

fn deadline(seconds: u64) -> Instant {
    Instant::now() + Duration::from_secs(seconds)
}

/// Attach ISO `iso` (which must exist) to the server.
pub async fn attach(
    cloud: &impl Cloud,
    s: &Server,
    iso: &str,
    deadline: Instant,
    progress: &Spinner,
) -> Result<(), Failure> {
    if !cloud.iso_exists(iso).await? {
        return Err(Failure::new(
            Kind::Preflight,
            format!("ISO {iso} does not exist at Hetzner"),
            "list them in the Cloud Console (Servers → ISO Images)",
        ));
    }
    let action = cloud.attach_iso(s.id, iso).await?;
    wait::action(cloud, action, deadline, progress).await
}

/// Detach the server's ISO, if it has one.
pub async fn detach(
    cloud: &impl Cloud,
    s: &Server,
    deadline: Instant,
    progress: &Spinner,
) -> Result<(), Failure> {
    if !s.iso_attached {
        return Ok(());
    }
    let action = cloud.detach_iso(s.id).await?;
    wait::action(cloud, action, deadline, progress).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::fake::FakeCloud;

    #[tokio::test]
    async fn attach_checks_the_iso_and_detach_only_acts_when_one_is_attached() {
        let cloud = FakeCloud::new();
        let id = cloud.add_server("web", &[]);
        let s = cloud.state().servers[&id].clone();
        let d = Instant::now() + Duration::from_secs(5);
        let e = attach(&cloud, &s, "windows", d, &Spinner::silent())
            .await
            .unwrap_err();
        assert_eq!(e.kind, Kind::Preflight);
        assert_eq!(cloud.calls("attach_iso"), 0);
        detach(&cloud, &s, d, &Spinner::silent()).await.unwrap();
        assert_eq!(
            cloud.calls("detach_iso"),
            0,
            "nothing attached: nothing to do"
        );
        attach(&cloud, &s, "nixos-minimal", d, &Spinner::silent())
            .await
            .unwrap();
        let s = cloud.state().servers[&id].clone();
        assert!(s.iso_attached);
        detach(&cloud, &s, d, &Spinner::silent()).await.unwrap();
        assert!(!cloud.state().servers[&id].iso_attached);
    }
}
