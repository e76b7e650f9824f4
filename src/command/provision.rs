//! `pantheros provision`: Hetzner Cloud servers and NixOS on them.

use super::{build_toplevel, flake_host, log_root, selected_hosts};
use crate::error::{Error, Result};
use crate::{inventory, nix};

pub async fn provision(
    flake: Option<&str>,
    cwd: &std::path::Path,
    args: crate::provision::ProvisionArgs,
) -> Result<i32> {
    use crate::provision::{self as p, ProvisionCmd};
    let res = match args.action {
        Some(ProvisionCmd::List { json }) => p::list(json).await,
        Some(ProvisionCmd::Destroy { host, yes, timeout }) => p::destroy(&host, yes, timeout).await,
        Some(ProvisionCmd::Iso { action }) => p::iso(&action).await,
        Some(ProvisionCmd::Rescue {
            host,
            ssh_key,
            timeout,
        }) => p::rescue(&host, ssh_key.as_deref(), timeout).await,
        Some(ProvisionCmd::Install(a)) => {
            let flake_ref = inventory::flake::resolve(flake, cwd)?;
            let nix = nix::Nix::locate()?;
            let hosts = selected_hosts(&nix, &flake_ref, std::slice::from_ref(&a.host)).await?;
            inventory::refuse_unfilled(&hosts)?;
            let host = &hosts[0];
            let toplevel = build_toplevel(host, &log_root(&flake_ref, cwd, None)).await?;
            let attr = flake_ref.attr(&host.name);
            p::install::install(&a, &attr, &toplevel).await
        }
        None => {
            let Some(name) = args.create.host.clone() else {
                return Err(Error::Usage(
                    "provision needs a HOST (or list, destroy, iso, rescue, install)".into(),
                ));
            };
            let (host, _) = flake_host(flake, cwd, Some(&name)).await?;
            inventory::refuse_unfilled([&host])?;
            p::create(&host, &args.create).await
        }
    };
    res.map_err(|f| f.into_error())
}
