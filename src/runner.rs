//! The one place that runs external commands.
//!
//! Every command is an argv vector. The runner logs it (tracing, `-v`),
//! captures its output, enforces a timeout, and turns a failure into a
//! [`CommandFailure`] that carries the argv, how it ended and its last lines.

use std::ffi::OsString;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use crate::error::CommandFailure;

/// How many lines of output an error keeps.
pub const TAIL_LINES: usize = 20;

/// A command to run. Its Debug form never shows what goes on stdin (a
/// key's value may).
#[derive(Clone)]
pub struct Cmd {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub timeout: Option<Duration>,
    pub stdin: Option<Vec<u8>>,
    /// How `-v` shows the command, when it must not show the argv as it is
    /// (a host's secrets redacted).
    pub shown: Option<String>,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cmd")
            .field("argv", &self.argv)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field(
                "stdin",
                &self.stdin.as_ref().map(|b| format!("<{} bytes>", b.len())),
            )
            .finish()
    }
}

impl Cmd {
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cmd {
            argv: argv.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            timeout: None,
            stdin: None,
            shown: None,
        }
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.argv.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn envs(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        self.env.extend(vars);
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }
}

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub code: Option<i32>,
    pub duration: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// The last `n` non-empty lines of `s`.
pub fn tail(s: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].iter().map(|l| l.to_string()).collect()
}

/// Run a command to completion. A non-zero exit is not an error here:
/// use [`run_ok`] for that.
pub async fn run(cmd: &Cmd) -> Result<Output, CommandFailure> {
    let started = Instant::now();
    let shown = cmd
        .shown
        .clone()
        .unwrap_or_else(|| crate::error::render_argv(&cmd.argv));
    tracing::debug!(argv = %shown, "run");
    let Some((program, rest)) = cmd.argv.split_first() else {
        return Err(CommandFailure {
            argv: vec![],
            how: "empty command".into(),
            tail: vec![],
        });
    };
    let mut c = Command::new(program);
    c.args(rest.iter().map(OsString::from))
        .stdin(if cmd.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in &cmd.env {
        c.env(k, v);
    }
    let mut child = c.spawn().map_err(|e| CommandFailure {
        argv: cmd.argv.clone(),
        how: format!("could not start: {e}"),
        tail: vec![],
    })?;
    if let Some(input) = &cmd.stdin {
        use tokio::io::AsyncWriteExt;
        if let Some(mut w) = child.stdin.take() {
            // A child that exits without reading its stdin is not our failure.
            let _ = w.write_all(input).await;
        }
    }
    let wait = child.wait_with_output();
    let out = match cmd.timeout {
        Some(t) => match tokio::time::timeout(t, wait).await {
            Ok(r) => r,
            Err(_) => {
                return Err(CommandFailure {
                    argv: cmd.argv.clone(),
                    how: format!("timed out after {}s and was killed", t.as_secs()),
                    tail: vec![],
                });
            }
        },
        None => wait.await,
    }
    .map_err(|e| CommandFailure {
        argv: cmd.argv.clone(),
        how: format!("could not collect its output: {e}"),
        tail: vec![],
    })?;
    let output = Output {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
        duration: started.elapsed(),
    };
    tracing::debug!(
        code = ?output.code,
        ms = output.duration.as_millis() as u64,
        "finished"
    );
    Ok(output)
}

/// Run a command and require exit status 0.
pub async fn run_ok(cmd: &Cmd) -> Result<Output, CommandFailure> {
    let out = run(cmd).await?;
    if out.success() {
        Ok(out)
    } else {
        Err(failure_of(cmd, &out))
    }
}

/// Describe a finished, failed command.
pub fn failure_of(cmd: &Cmd, out: &Output) -> CommandFailure {
    let how = match out.code {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".to_string(),
    };
    let source = if out.stderr.trim().is_empty() {
        &out.stdout
    } else {
        &out.stderr
    };
    CommandFailure {
        argv: cmd.argv.clone(),
        how,
        tail: tail(source, TAIL_LINES),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn captures_output_and_status() {
        let out = run(&Cmd::new(["sh", "-c", "echo out; echo err >&2; exit 3"]))
            .await
            .unwrap();
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.code, Some(3));
    }

    #[tokio::test]
    async fn failure_carries_argv_status_and_tail() {
        let cmd = Cmd::new([
            "sh",
            "-c",
            "for i in $(seq 30); do echo line$i >&2; done; exit 7",
        ]);
        let f = run_ok(&cmd).await.unwrap_err();
        assert_eq!(f.argv[0], "sh");
        assert_eq!(f.how, "exit status 7");
        assert_eq!(f.tail.len(), TAIL_LINES);
        assert_eq!(f.tail.last().unwrap(), "line30");
    }

    #[tokio::test]
    async fn timeout_kills() {
        let cmd = Cmd::new(["sleep", "5"]).timeout(Duration::from_millis(200));
        let started = Instant::now();
        let f = run(&cmd).await.unwrap_err();
        assert!(f.how.contains("timed out"), "{}", f.how);
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn missing_program_is_reported() {
        let f = run(&Cmd::new(["/nonexistent/prog"])).await.unwrap_err();
        assert!(f.how.starts_with("could not start"), "{}", f.how);
    }

    #[test]
    fn argv_rendering_quotes_what_needs_it() {
        let s =
            crate::error::render_argv(&["nix".into(), "eval".into(), "a b".into(), "it's".into()]);
        assert_eq!(s, r"nix eval 'a b' 'it'\''s'");
    }
}
