//! `pantheros provision`: Hetzner Cloud servers and NixOS on them.

use super::app::App;
use super::{flake_host, selected_hosts};
use crate::error::Result;
use crate::inventory;

pub async fn provision(app: &App, cmd: crate::cli::ProvisionCommand) -> Result<i32> {
    use crate::cli::ProvisionCommand as C;
    use crate::provision as p;
    let res = match cmd {
        C::List(a) => p::list(a.json).await,
        C::Destroy(a) => p::destroy(&app.display, &a.host, a.yes, a.timeout).await,
        C::Iso(a) => p::iso(&app.display, &a).await,
        C::Rescue(a) => p::rescue(&app.display, &a.host, a.ssh_key.as_deref(), a.timeout).await,
        C::Install(a) => {
            let flake_ref = app.flake()?;
            let nix = app.nix()?;
            // One evaluation; pantheros builds both store paths itself, and
            // nixos-anywhere installs exactly those (it evaluates nothing).
            let hosts = selected_hosts(
                &app.display,
                &nix,
                &flake_ref,
                std::slice::from_ref(&a.host),
                true,
            )
            .await?;
            // The installation records the host key; the addresses must be there.
            inventory::refuse_unfilled(&hosts, inventory::facts::FROM_INSTALL)?;
            let built =
                super::build_for_install(&nix, &hosts[0], &app.log_root(&flake_ref, None)).await?;
            p::install::install(&app.display, &hosts[0], &flake_ref, &a, &built).await
        }
        C::Create(a) => {
            let (host, _) = flake_host(app, Some(&a.host)).await?;
            inventory::refuse_unfilled([&host], inventory::facts::FROM_CREATE)?;
            let flake_ref = app.flake()?;
            p::create(&app.display, &host, &flake_ref, &a).await
        }
    };
    res.map_err(|f| f.into_error())
}
