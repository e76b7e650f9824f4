//! The token exchange rows: each job type's JWT-SVID presented to the token
//! service (names of the tokens only, never their values).

use super::Tagged;

use crate::validate::Row;
use crate::validate::spec::{Flashpods, Spire, TokenService};

pub const TOKEN_EXCHANGE: (&str, &str) = ("token-exchange", "token exchange for a job's SVID");

/// The row when the exchange cannot run: no token service, or no SPIRE.
pub fn token_exchange_not_run(spec: &Flashpods) -> Row {
    let (id, check) = TOKEN_EXCHANGE;
    Row::not_run(
        id,
        check,
        if spec.token_service.is_none() {
            "no token service is configured (services.flashpods.tokenService.package)"
        } else {
            "SPIRE is off (services.flashpods.spire.enable): no job can get a JWT-SVID"
        },
    )
}

/// What the host printed: the SVID's ID, the token service's status and
/// the names (never the values) of the tokens it returned.
pub fn judge_token(
    spire: &Spire,
    tokens: &TokenService,
    job_type: &str,
    text: Result<&str, String>,
) -> Row {
    let id = format!("token-{job_type}");
    let check = format!("a {job_type} job exchanges its JWT-SVID for tokens");
    let want = spire.expected_id(job_type);
    let hint = format!(
        "systemctl status flashpods-token-service on the host (socket {}, audience {} from \
         services.flashpods.tokenService.audience, the secrets file services.flashpods.secretsFile)",
        tokens.socket, tokens.audience
    );
    let t = match text {
        Ok(t) => Tagged::parse(t),
        Err(e) => return Row::failed(&id, &check, e, hint),
    };
    if let Some(err) = t.tag("ERROR").next() {
        return Row::failed(&id, &check, err.to_string(), hint);
    }
    if t.exit.is_some_and(|c| c != 0) {
        return Row::failed(
            &id,
            &check,
            format!("no JWT-SVID for {}: {}", tokens.audience, t.last()),
            format!(
                "the agent and the entry for {want}: systemctl status spire-agent pantheros-spire-entries"
            ),
        );
    }
    let svid = t.tag("SVID").next().unwrap_or("").trim().to_string();
    let status = t.tag("STATUS").next().unwrap_or("000").trim().to_string();
    let keys: Vec<&str> = t.tag("KEY").collect();
    if svid != want {
        return Row::failed(
            &id,
            &check,
            format!("the job's JWT-SVID is {svid}, expected {want}"),
            format!("the registration entry for {want} (services.flashpods.spire.entries)"),
        );
    }
    if status == "200" && !keys.is_empty() {
        Row::passed(
            &id,
            &check,
            format!(
                "JWT-SVID {svid}; token service: HTTP 200 with {} (values not shown)",
                keys.join(", ")
            ),
        )
    } else {
        let why = if t.out.is_empty() {
            String::new()
        } else {
            format!(": {}", t.last())
        };
        Row::failed(
            &id,
            &check,
            format!(
                "JWT-SVID {svid}; token service: HTTP {status}, {} tokens{why}",
                keys.len()
            ),
            hint,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Outcome;
    use crate::validate::checks::fixtures::*;
    use crate::validate::spec::*;

    #[test]
    fn the_token_rows_name_the_tokens_never_their_values() {
        let mut s = spec();
        assert_eq!(token_exchange_not_run(&s).result, Outcome::NotRun);
        s.spire = None;
        s.token_service = Some(TokenService {
            socket: "/run/flashpods/token.sock".into(),
            audience: "flashpods-token-service".into(),
        });
        assert!(token_exchange_not_run(&s).evidence.contains("SPIRE is off"));
        let (sp, ts) = (spire_conf(), s.token_service.clone().unwrap());
        let ok = "SVID spiffe://flashpods.local/agent\nSTATUS 200\nKEY ANTHROPIC_API_KEY\nKEY GITHUB_TOKEN\n";
        let r = judge_token(&sp, &ts, "agent", Ok(ok));
        assert!(r.is_passed(), "{r:?}");
        assert!(
            r.evidence
                .contains("ANTHROPIC_API_KEY, GITHUB_TOKEN (values not shown)")
        );
        let r = judge_token(&sp, &ts, "worker", Ok(ok));
        assert!(
            r.evidence
                .contains("expected spiffe://flashpods.local/worker"),
            "{r:?}"
        );
        let r = judge_token(
            &sp,
            &ts,
            "agent",
            Ok("SVID spiffe://flashpods.local/agent\nSTATUS 403\n"),
        );
        assert!(
            r.evidence.contains("HTTP 403, 0 tokens")
                && r.hint.as_deref().unwrap_or("").contains("audience"),
            "{r:?}"
        );
        let r = judge_token(
            &sp,
            &ts,
            "agent",
            Ok(
                "SVID spiffe://flashpods.local/agent\nSTATUS 000\nOUT curl: (7) Failed to connect\n",
            ),
        );
        assert!(r.evidence.contains("curl: (7)"), "{r:?}");
        let r = judge_token(
            &sp,
            &ts,
            "agent",
            Ok("EXIT 1\nOUT rpc error: no identity issued\n"),
        );
        assert!(r.evidence.contains("no JWT-SVID"), "{r:?}");
    }
}
