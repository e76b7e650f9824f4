//! The one place that runs external commands.
//!
//! Every command is an argv vector. The runner logs it (tracing, `-v`),
//! streams its output line by line to whoever listens ([`Lines`]: the
//! host's log, the progress display) while keeping all of it, enforces a
//! timeout, and turns a failure into a [`CommandFailure`] that carries the
//! argv, how it ended and its last lines.

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

/// Which of a command's outputs a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Where a command's lines go while it runs (a host's log, the progress
/// display), each as soon as it is printed: a run that is killed keeps
/// what its commands had printed.
pub trait Lines: Send + Sync {
    fn line(&self, stream: Stream, line: &str);
}

/// Lines that go nowhere but into the [`Output`].
pub struct Quiet;

impl Lines for Quiet {
    fn line(&self, _: Stream, _: &str) {}
}

/// Run a command to completion. A non-zero exit is not an error here:
/// use [`run_ok`] for that.
pub async fn run(cmd: &Cmd) -> Result<Output, CommandFailure> {
    run_streaming(cmd, &Quiet).await
}

/// Read `pipe` to its end, handing each line to `lines` as it arrives;
/// returns everything read.
async fn pump<R>(pipe: Option<R>, stream: Stream, lines: &dyn Lines) -> Vec<u8>
where
    R: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncBufReadExt;
    let Some(pipe) = pipe else { return vec![] };
    let mut reader = tokio::io::BufReader::new(pipe);
    let mut all = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                all.extend_from_slice(&line);
                let text = String::from_utf8_lossy(&line);
                lines.line(stream, text.trim_end_matches(['\n', '\r']));
            }
        }
    }
    all
}

/// Run a command to completion, handing every line of its stdout and
/// stderr to `lines` as it arrives (and keeping all of it in the
/// [`Output`]). A non-zero exit is not an error here.
pub async fn run_streaming(cmd: &Cmd, lines: &dyn Lines) -> Result<Output, CommandFailure> {
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
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    // Input is written while the output is read, so neither side can fill
    // a pipe and wait for the other.
    let feed = async {
        use tokio::io::AsyncWriteExt;
        if let (Some(input), Some(mut w)) = (&cmd.stdin, stdin) {
            // A child that exits without reading its stdin is not our failure.
            let _ = w.write_all(input).await;
        }
    };
    let everything = async {
        let ((), out, err) = tokio::join!(
            feed,
            pump(stdout, Stream::Stdout, lines),
            pump(stderr, Stream::Stderr, lines)
        );
        (out, err, child.wait().await)
    };
    let (out, err, status) = match cmd.timeout {
        Some(t) => match tokio::time::timeout(t, everything).await {
            Ok(r) => r,
            Err(_) => {
                return Err(CommandFailure {
                    argv: cmd.argv.clone(),
                    how: format!("timed out after {}s and was killed", t.as_secs()),
                    tail: vec![],
                });
            }
        },
        None => everything.await,
    };
    let status = status.map_err(|e| CommandFailure {
        argv: cmd.argv.clone(),
        how: format!("could not collect its exit status: {e}"),
        tail: vec![],
    })?;
    let output = Output {
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
        code: status.code(),
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

    /// Records each line with the moment it arrived.
    struct Seen(std::sync::Mutex<Vec<(Stream, String, Instant)>>);

    impl Lines for Seen {
        fn line(&self, stream: Stream, line: &str) {
            self.0
                .lock()
                .unwrap()
                .push((stream, line.to_string(), Instant::now()));
        }
    }

    /// Each line reaches the listener when it is printed, not when the
    /// command ends; the Output still has all of it; input is fed while
    /// output is read (128 KiB each way would deadlock otherwise).
    #[tokio::test]
    async fn lines_stream_while_the_command_runs() {
        let seen = Seen(Default::default());
        let cmd = Cmd::new([
            "sh",
            "-c",
            "echo first; sleep 0.5; echo second >&2; printf tail",
        ]);
        let out = run_streaming(&cmd, &seen).await.unwrap();
        let ended = Instant::now();
        let got = seen.0.lock().unwrap().clone();
        let words: Vec<(Stream, &str)> = got.iter().map(|(s, l, _)| (*s, l.as_str())).collect();
        assert_eq!(
            words,
            [
                (Stream::Stdout, "first"),
                (Stream::Stderr, "second"),
                (Stream::Stdout, "tail")
            ]
        );
        assert!(
            ended.duration_since(got[0].2) >= Duration::from_millis(400),
            "the first line came only at the end"
        );
        assert_eq!(out.stdout, "first\ntail");
        assert_eq!(out.stderr, "second\n");

        let big = vec![b'x'; 128 * 1024];
        let mut cmd = Cmd::new(["cat"]);
        cmd.stdin = Some(big.clone());
        let out = run_streaming(&cmd, &Quiet).await.unwrap();
        assert_eq!(out.stdout.len(), big.len());
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
