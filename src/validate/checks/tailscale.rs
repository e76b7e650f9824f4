//! The Tailscale row: the host joined its tailnet (with the auth key
//! pantheros delivers, `services.tailscale.authKeyFile`).

use super::{Tagged, host_text};

use crate::host::scripts::validate as script;
use crate::validate::{Row, Seat};

pub const TAILSCALE: (&str, &str) = ("tailscale", "Tailscale is joined to its tailnet");

pub async fn tailscale(seat: &Seat<'_>) -> Row {
    let r = seat.host(script::tailscale()).await;
    judge_tailscale(host_text(&r))
}

/// `tailscale status --peers=false` exits 0 with the host's own line once
/// it is logged in and running; otherwise it says why ("Logged out.",
/// "NeedsLogin", "Tailscale is stopped.").
pub fn judge_tailscale(text: Result<&str, String>) -> Row {
    let (id, check) = TAILSCALE;
    let hint = "the auth key: services.tailscale.authKeyFile (the example delivers it with \
                `pantheros keys upload`, key tailscale-auth-key), and `systemctl status tailscaled \
                tailscaled-autoconnect` on the host";
    let t = match text {
        Ok(t) => Tagged::parse(t),
        Err(e) => return Row::failed(id, check, e, hint),
    };
    let first = t
        .out
        .iter()
        .map(|l| l.trim())
        .find(|l| !l.is_empty())
        .unwrap_or("no output")
        .to_string();
    if t.ok() {
        Row::passed(id, check, format!("tailscale status: {first}"))
    } else {
        Row::failed(id, check, format!("tailscale status: {}", t.last()), hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Outcome;

    #[test]
    fn the_tailscale_row_reads_its_status() {
        let r = judge_tailscale(Ok(
            "EXIT 0\nOUT 100.64.0.7   hetzner-vps   me@   linux   -\n",
        ));
        assert!(r.is_passed() && r.evidence.contains("100.64.0.7"), "{r:?}");
        let r = judge_tailscale(Ok("EXIT 1\nOUT Logged out.\n"));
        assert_eq!(r.result, Outcome::Failed);
        assert!(r.evidence.contains("Logged out.") && r.hint.unwrap().contains("authKeyFile"));
        let r = judge_tailscale(Ok("EXIT 127\nOUT sh: tailscale: not found\n"));
        assert_eq!(r.result, Outcome::Failed);
    }
}
