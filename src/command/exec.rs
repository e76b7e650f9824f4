//! `pantheros exec SELECTOR... -- COMMAND [ARG...]`: one command on the
//! selected hosts, at most `-j` at once, over the run's one SSH connection
//! per host.
//!
//! The argv reaches the host as given: it is quoted once for the remote
//! login shell, which is the only shell that parses it (`ssh` joins its
//! arguments into one string; without quoting, `$HOME` or `a b` would be
//! parsed a second time). The per-host timeout runs on the host (coreutils
//! `timeout`), so a command that overruns is stopped there, not merely
//! abandoned by the SSH client; a local backstop covers a host that never
//! answers.

use super::app::App;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::ExecArgs;
use crate::error::{Error, Result, exit};
use crate::host::{self, Target};
use crate::inventory::{self, Host};
use crate::runner::{self, Cmd, Lines, Stream};

/// Exit status of coreutils `timeout` when the command ran out of time.
const TIMED_OUT: i32 = 124;
/// Exit status of `ssh` when it could not connect (or lost the connection).
const SSH_FAILED: i32 = 255;

/// What one host did with the command.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostRun {
    pub host: String,
    /// The command's exit code (None: it could not be run, see `error`).
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    /// Why there is no exit code, or why the exit code is SSH's own.
    pub error: Option<String>,
    pub seconds: f64,
}

impl HostRun {
    pub fn ok(&self) -> bool {
        self.exit_code == Some(0)
    }

    /// One line for the summary: how this host ended.
    pub fn outcome(&self) -> String {
        match (&self.error, self.exit_code) {
            (Some(e), _) => e.clone(),
            (None, Some(0)) => "ok".into(),
            (None, Some(c)) => format!("exit {c}"),
            (None, None) => "no exit code".into(),
        }
    }
}

/// The argv run on the host: the timeout, the escalation when `sudo`,
/// then the command as given (quoted once by [`Target::cmd`]).
pub fn remote_argv(command: &[String], timeout_secs: u64) -> Vec<String> {
    let mut argv = vec![
        "timeout".to_string(),
        "--kill-after=5".into(),
        format!("{timeout_secs}s"),
    ];
    argv.extend(command.iter().cloned());
    argv
}

/// The command for one host.
pub fn host_cmd(target: &Target, command: &[String], sudo: bool, timeout_secs: u64) -> Cmd {
    let argv = remote_argv(command, timeout_secs);
    let cmd = if sudo {
        target.root_cmd(&argv)
    } else {
        target.cmd(&argv)
    };
    // The backstop: the host's own timeout, its kill grace, and the time
    // a connection may take.
    cmd.timeout(Duration::from_secs(timeout_secs + 5 + 20))
}

/// Judge how a run ended: a remote timeout, SSH's failure, sudo wanting a
/// password, or the command's own exit code.
pub fn judge(
    host: &str,
    out: std::result::Result<runner::Output, String>,
    timeout_secs: u64,
    started: Instant,
) -> HostRun {
    let seconds = started.elapsed().as_secs_f64();
    match out {
        Err(how) => HostRun {
            host: host.into(),
            exit_code: None,
            stdout: String::new(),
            stderr: String::new(),
            timed_out: how.contains("timed out"),
            error: Some(format!("could not run it: {how}")),
            seconds,
        },
        Ok(o) => {
            let timed_out = o.code == Some(TIMED_OUT);
            let error = if timed_out {
                Some(format!(
                    "timed out after {timeout_secs} s (stopped on the host)"
                ))
            } else if o.code == Some(SSH_FAILED) {
                Some(format!(
                    "ssh failed (exit 255): {}",
                    runner::tail(&o.stderr, 1).join(" ")
                ))
            } else if o.code != Some(0) && host::needs_password(&o.stderr) {
                Some(
                    "sudo wants a password: give the SSH user password-less sudo, or connect as root"
                        .into(),
                )
            } else {
                None
            };
            HostRun {
                host: host.into(),
                exit_code: o.code,
                stdout: o.stdout,
                stderr: o.stderr,
                timed_out,
                error,
                seconds,
            }
        }
    }
}

/// Each line as it comes, prefixed with the host's name; stderr's to
/// stderr.
struct Prefixed(String);

impl Lines for Prefixed {
    fn line(&self, stream: Stream, line: &str) {
        match stream {
            Stream::Stdout => {
                let _ = writeln!(std::io::stdout().lock(), "[{}] {line}", self.0);
            }
            Stream::Stderr => {
                let _ = writeln!(std::io::stderr().lock(), "[{}] {line}", self.0);
            }
        }
    }
}

/// How each host runs the command.
#[derive(Debug, Clone, Copy)]
struct Run {
    sudo: bool,
    timeout: u64,
    json: bool,
}

async fn run_one(target: Target, command: Arc<Vec<String>>, run: Run) -> HostRun {
    let Run {
        sudo,
        timeout,
        json,
    } = run;
    let started = Instant::now();
    if sudo {
        if let Err(why) = target.settle_password().await {
            target.close().await;
            return judge(&target.name, Err(why), timeout, started);
        }
    }
    let cmd = host_cmd(&target, &command, sudo, timeout);
    let out = if json {
        runner::run(&cmd).await
    } else {
        runner::run_streaming(&cmd, &Prefixed(target.name.clone())).await
    };
    target.close().await;
    judge(&target.name, out.map_err(|f| f.how), timeout, started)
}

pub async fn exec(app: &App, args: ExecArgs) -> Result<i32> {
    let flake = app.flake()?;
    let nix = app.nix()?;
    let inv = inventory::load(&nix, &flake, &inventory::EvalOptions::default()).await?;
    let selection = inv.select(&args.selectors)?;
    if let Some(err) = selection.failure() {
        return Err(err);
    }
    let hosts: Vec<&Host> = selection.hosts.clone();
    let control =
        host::control_dir().map_err(|e| Error::io("creating the SSH control directory", e))?;
    let command = Arc::new(args.command.clone());
    let settings = Run {
        sudo: args.sudo,
        timeout: args.timeout.max(1),
        json: args.json,
    };
    let password = if args.sudo {
        args.password.sudo_password()?
    } else {
        None
    };
    let permits = Arc::new(tokio::sync::Semaphore::new(args.jobs.max(1)));
    let mut tasks = Vec::new();
    for h in &hosts {
        let target = Target::for_host(h, control.path(), false).with_password(password.clone());
        let (command, permits) = (command.clone(), permits.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            run_one(target, command, settings).await
        }));
    }
    let mut runs = Vec::new();
    for (h, t) in hosts.iter().zip(tasks) {
        runs.push(t.await.unwrap_or_else(|e| HostRun {
            host: h.name.clone(),
            exit_code: None,
            stdout: String::new(),
            stderr: String::new(),
            timed_out: false,
            error: Some(format!("its task ended abnormally: {e}")),
            seconds: 0.0,
        }));
    }
    let failed: Vec<&str> = runs
        .iter()
        .filter(|r| !r.ok())
        .map(|r| r.host.as_str())
        .collect();
    if args.json {
        crate::report::print_document(&serde_json::json!({
            "command": *command,
            "sudo": args.sudo,
            "hosts": runs,
            "failed": failed,
        }));
    } else {
        let mut err = std::io::stderr().lock();
        for r in &runs {
            let _ = writeln!(err, "[{}] {} ({:.1} s)", r.host, r.outcome(), r.seconds);
        }
        let _ = writeln!(
            err,
            "exec: {} host(s): {} succeeded, {} failed{}",
            runs.len(),
            runs.len() - failed.len(),
            failed.len(),
            if failed.is_empty() {
                String::new()
            } else {
                format!(" ({})", failed.join(", "))
            }
        );
    }
    Ok(if failed.is_empty() {
        exit::OK
    } else {
        exit::EXEC_FAILED
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(code: i32, stdout: &str, stderr: &str) -> runner::Output {
        runner::Output {
            stdout: stdout.into(),
            stderr: stderr.into(),
            code: Some(code),
            duration: Duration::ZERO,
        }
    }

    #[test]
    fn the_remote_argv_puts_the_timeout_before_the_command_as_given() {
        let cmd: Vec<String> = ["printf", "%s|", "a b", "$HOME", "it's"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            remote_argv(&cmd, 30),
            [
                "timeout",
                "--kill-after=5",
                "30s",
                "printf",
                "%s|",
                "a b",
                "$HOME",
                "it's"
            ]
        );
    }

    #[test]
    fn a_run_is_judged_by_its_exit_the_remote_timeout_ssh_and_sudo() {
        let t = Instant::now();
        let r = judge("a", Ok(out(0, "hi\n", "")), 5, t);
        assert!(r.ok() && r.error.is_none() && r.outcome() == "ok");
        let r = judge("a", Ok(out(3, "", "boom\n")), 5, t);
        assert!(!r.ok() && r.outcome() == "exit 3");
        let r = judge("a", Ok(out(124, "", "")), 5, t);
        assert!(r.timed_out && r.outcome().contains("timed out after 5 s"));
        let r = judge(
            "a",
            Ok(out(
                255,
                "",
                "ssh: connect to host x port 22: Connection refused\n",
            )),
            5,
            t,
        );
        assert!(r.outcome().contains("ssh failed") && r.outcome().contains("Connection refused"));
        let r = judge("a", Ok(out(1, "", "sudo: a password is required\n")), 5, t);
        assert!(r.outcome().contains("password"));
        let r = judge("a", Err("timed out after 30s".into()), 5, t);
        assert!(r.timed_out && r.exit_code.is_none());
    }
}
