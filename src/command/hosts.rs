//! `pantheros hosts`: the fleet as the flake declares it (one evaluation).

use std::io::Write;

use crate::cli;
use crate::error::{Result, exit};
use crate::{inventory, report};

pub fn hosts(inv: &inventory::Inventory, args: &cli::HostsArgs) -> Result<i32> {
    let selection = inv.select(&args.selectors)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        report::print_document(&serde_json::json!({
            "flake": inv.flake,
            "hosts": selection.hosts,
            "errors": selection.failed,
        }));
    } else {
        let _ = write!(out, "{}", report::hosts_table(&selection.hosts));
    }
    drop(out);
    // The healthy hosts are listed; the failed ones are reported after them.
    match selection.failure() {
        None => Ok(exit::OK),
        Some(err) => {
            report::print_error(&err);
            Ok(err.exit_code())
        }
    }
}
