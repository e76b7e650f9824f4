//! Per-host log files: every command with its argv, timing and output.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::CommandFailure;
use crate::runner::{Cmd, Lines, Output, Stream};

pub struct HostLog {
    pub path: PathBuf,
    /// The host whose commands this log records ("" for a discarding log).
    host: String,
    file: Mutex<File>,
    redactor: super::redact::Redactor,
    /// Where a command's lines are shown as they arrive (none: only here).
    display: Option<super::Display>,
}

/// `YYYYmmdd-HHMMSS` in local time.
pub fn timestamp() -> String {
    chrono::Local::now().format("%Y%m%d-%H%M%S").to_string()
}

impl HostLog {
    /// Create `<dir>/<prefix>-<host>-<ts>.log`: mode 0600 from its first
    /// byte, in a directory that is 0700 (logs name hosts, paths, and the
    /// output of commands that ran on them).
    pub fn create(dir: &Path, prefix: &str, host: &str, ts: &str) -> std::io::Result<HostLog> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        // Two runs in the same second get their own files.
        for n in 1..100 {
            let suffix = if n == 1 {
                String::new()
            } else {
                format!("-{n}")
            };
            let path = dir.join(format!("{prefix}-{host}-{ts}{suffix}.log"));
            match OpenOptions::new()
                .create_new(true)
                .append(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(HostLog {
                        path,
                        host: host.to_string(),
                        file: Mutex::new(file),
                        redactor: Default::default(),
                        display: None,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other(format!(
            "too many logs named {prefix}-{host}-{ts}-N.log"
        )))
    }

    /// A log that keeps nothing (for read-only queries such as `--list`).
    pub fn discard() -> std::io::Result<HostLog> {
        let file = OpenOptions::new().append(true).open("/dev/null")?;
        Ok(HostLog {
            path: PathBuf::from("/dev/null"),
            host: String::new(),
            file: Mutex::new(file),
            redactor: Default::default(),
            display: None,
        })
    }

    /// Hide these secrets in everything this log records (and in what the
    /// host's run prints through [`HostLog::redact`]).
    pub fn with_redactor(mut self, r: super::redact::Redactor) -> HostLog {
        self.redactor = r;
        self
    }

    /// Show the lines of this host's commands on `display` as they arrive.
    pub fn with_display(mut self, display: super::Display) -> HostLog {
        self.display = Some(display);
        self
    }

    /// `text` without the host's secrets.
    pub fn redact(&self, text: &str) -> String {
        self.redactor.apply(text)
    }

    pub fn note(&self, msg: &str) {
        self.write_line(&format!(
            "[{}] {}",
            chrono::Local::now().format("%H:%M:%S%.3f"),
            self.redactor.apply(msg)
        ));
    }

    /// A timestamped line in the log.
    /// Lines as they are (no timestamp), without the host's secrets.
    pub fn text(&self, text: &str) {
        for line in text.lines() {
            self.write_line(&self.redactor.apply(line));
        }
    }

    /// One line, in one write: a command's lines arrive one by one while it
    /// runs (a build prints thousands), and the file is not buffered, so
    /// what is written is never half a line and costs one system call.
    fn write_line(&self, line: &str) {
        let mut text = String::with_capacity(line.len() + 1);
        text.push_str(line);
        text.push('\n');
        if let Ok(mut f) = self.file.lock() {
            let _ = f.write_all(text.as_bytes());
        }
    }

    /// A command is about to run: its line in the log (before it starts,
    /// so the log of a run that is killed has it), and the command as `-v`
    /// should show it (its secrets hidden; only a host with secrets needs
    /// its own rendering).
    pub fn started(&self, cmd: &Cmd) -> Option<Cmd> {
        let r = &self.redactor;
        self.write_line(&format!(
            "[{}] $ {}",
            chrono::Local::now().format("%H:%M:%S%.3f"),
            r.apply(&crate::report::shorten_argv(&cmd.argv))
        ));
        (!r.is_empty()).then(|| {
            let mut shown = cmd.clone();
            shown.shown = Some(r.apply(&crate::error::render_argv(&cmd.argv)));
            shown
        })
    }

    /// How the command that [`HostLog::started`] ended.
    pub fn ended(&self, out: &Result<Output, CommandFailure>) {
        match out {
            Ok(o) => self.write_line(&format!(
                "  -> exit {:?} in {} ms",
                o.code,
                o.duration.as_millis()
            )),
            Err(e) => self.write_line(&format!("  -> {}", self.redactor.apply(&e.how))),
        }
    }

    /// The log's lines, and each stdout line to `watch` too.
    pub fn watching<'a>(&'a self, watch: &'a (dyn Fn(&str) + Send + Sync)) -> impl Lines + 'a {
        Watching { log: self, watch }
    }
}

/// The log's lines, and each stdout line to a watcher too.
struct Watching<'a> {
    log: &'a HostLog,
    watch: &'a (dyn Fn(&str) + Send + Sync),
}

impl Lines for Watching<'_> {
    fn line(&self, stream: Stream, line: &str) {
        self.log.line(stream, line);
        if matches!(stream, Stream::Stdout) {
            (self.watch)(line);
        }
    }
}

/// A command's lines go to the log as they arrive, without the host's
/// secrets (`|` stdout, `!` stderr).
impl Lines for HostLog {
    fn line(&self, stream: Stream, line: &str) {
        let mark = match stream {
            Stream::Stdout => '|',
            Stream::Stderr => '!',
        };
        let line = self.redactor.apply(line);
        self.write_line(&format!("  {mark} {line}"));
        if let Some(d) = self.display.as_ref().filter(|_| !self.host.is_empty()) {
            d.output(&self.host, &line);
        }
    }
}
