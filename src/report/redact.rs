//! Keeping a host's secrets out of everything pantheros writes: stderr, the
//! log, `.info`, `--json`, `-v` and the reasons sent to the target. The
//! secrets are the values a host's metadata may carry: credentials in
//! health-check URLs (userinfo, token-like query values), `Authorization`
//! headers and token-like arguments in health-check commands, and the
//! values of `sshOptions`.

use crate::inventory::Deployment;

/// What a redacted value becomes.
pub const MASK: &str = "***";

/// The secrets of one host, and the function that hides them.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

/// Query keys whose values are credentials.
fn secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    [
        "token",
        "key",
        "secret",
        "pass",
        "auth",
        "sig",
        "credential",
    ]
    .iter()
    .any(|s| k.contains(s))
}

fn from_url(url: &str, out: &mut Vec<String>) {
    if let Some(rest) = url.split_once("://").map(|(_, r)| r) {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            out.push(userinfo.to_string());
            if let Some((_, pass)) = userinfo.split_once(':') {
                out.push(pass.to_string());
            }
        }
    }
    if let Some((_, query)) = url.split_once('?') {
        for pair in query.split(['&', '#']) {
            if let Some((k, v)) = pair.split_once('=') {
                if secret_key(k) && !v.is_empty() {
                    out.push(v.to_string());
                }
            }
        }
    }
}

fn from_command(cmd: &str, out: &mut Vec<String>) {
    // `Authorization: Bearer X`, `Authorization: Basic X`, `Bearer X`
    let lower = cmd.to_ascii_lowercase();
    for marker in ["authorization:", "bearer ", "basic ", "token "] {
        let mut from = 0;
        while let Some(i) = lower[from..].find(marker) {
            let start = from + i + marker.len();
            let value: String = cmd[start..]
                .trim_start()
                .split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
                .next()
                .unwrap_or("")
                .to_string();
            if value.len() >= 3
                && !["bearer", "basic"].contains(&value.to_ascii_lowercase().as_str())
            {
                out.push(value);
            }
            from = start;
        }
    }
    // key=value words with a credential-like key; -u/--user user:pass
    let words: Vec<&str> = cmd.split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        let w = w.trim_matches(|c| c == '"' || c == '\'');
        if let Some((k, v)) = w.split_once('=') {
            if secret_key(k.trim_start_matches('-')) && v.len() >= 3 {
                out.push(v.to_string());
            }
        }
        if (w == "-u" || w == "--user") && i + 1 < words.len() {
            let creds = words[i + 1].trim_matches(|c| c == '"' || c == '\'');
            out.push(creds.to_string());
            if let Some((_, pass)) = creds.split_once(':') {
                out.push(pass.to_string());
            }
        }
        if w.contains("://") {
            from_url(w, out);
        }
    }
}

impl Redactor {
    pub fn for_deployment(d: &Deployment) -> Redactor {
        let mut secrets = vec![];
        for url in &d.health_checks.http {
            from_url(url, &mut secrets);
        }
        for c in &d.health_checks.commands {
            from_command(c, &mut secrets);
        }
        // Values of sshOptions (not the flags themselves): they may carry
        // passwords (sshpass in a ProxyCommand) or identity paths.
        for o in &d.ssh_options {
            if !o.starts_with('-') || o.contains('=') {
                let v = o.split_once('=').map(|(_, v)| v).unwrap_or(o);
                if v.len() >= 3 {
                    secrets.push(v.to_string());
                }
            }
        }
        secrets.retain(|s| s.len() >= 3 && s != MASK);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    /// `text` with every secret replaced by [`MASK`].
    pub fn apply(&self, text: &str) -> String {
        let mut s = text.to_string();
        for secret in &self.secrets {
            if s.contains(secret.as_str()) {
                s = s.replace(secret.as_str(), MASK);
            }
        }
        s
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(http: &[&str], commands: &[&str], ssh: &[&str]) -> Redactor {
        let mut d = Deployment::default();
        d.health_checks.http = http.iter().map(|s| s.to_string()).collect();
        d.health_checks.commands = commands.iter().map(|s| s.to_string()).collect();
        d.ssh_options = ssh.iter().map(|s| s.to_string()).collect();
        Redactor::for_deployment(&d)
    }

    #[test]
    fn urls_lose_their_credentials_and_keep_the_rest() {
        let r = redactor(
            &["http://admin:hunter22@10.0.0.1:8080/health?token=s3cr3tT0k&x=1"],
            &[],
            &[],
        );
        let shown = r.apply(
            "http http://admin:hunter22@10.0.0.1:8080/health?token=s3cr3tT0k&x=1 answered 500",
        );
        assert!(
            !shown.contains("hunter22") && !shown.contains("s3cr3tT0k"),
            "{shown}"
        );
        assert!(
            shown.contains("10.0.0.1:8080/health") && shown.contains("x=1"),
            "{shown}"
        );
    }

    #[test]
    fn commands_lose_authorization_headers_and_token_arguments() {
        let r = redactor(
            &[],
            &[
                "curl -sf -H 'Authorization: Bearer abc.def.ghi' http://localhost/api",
                "check --api-key=KEY123456 --verbose",
                "curl -u deploy:pa55word http://x/",
            ],
            &[],
        );
        for secret in ["abc.def.ghi", "KEY123456", "pa55word"] {
            let shown = r.apply(&format!("command failed: ... {secret} ..."));
            assert!(!shown.contains(secret), "{secret}: {shown}");
        }
        assert_eq!(
            r.apply("service sshd is inactive"),
            "service sshd is inactive"
        );
    }

    #[test]
    fn ssh_option_values_are_hidden_but_not_the_flags() {
        let r = redactor(
            &[],
            &[],
            &[
                "-o",
                "ProxyCommand=sshpass -p topsecret ssh -W %h:%p jump",
                "-i",
                "/keys/id",
            ],
        );
        let shown =
            r.apply("ssh -o ProxyCommand=sshpass -p topsecret ssh -W %h:%p jump -i /keys/id host");
        assert!(
            !shown.contains("topsecret") && !shown.contains("/keys/id"),
            "{shown}"
        );
        assert!(shown.starts_with("ssh -o "), "{shown}");
    }
}
