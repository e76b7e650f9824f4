//! What the user sees while a run works. On a terminal (with colour on):
//! one live line per host (its stage, the time it has been working, its
//! last line of output), a stats line ("2 running, 3 done, 1 failed, 4
//! waiting"), and above them the `[host] …` history. Anywhere else (no
//! terminal, `NO_COLOR`, `--color never`, `-v`): the same `[host] …` lines,
//! plain, complete and one per event. Blocks of text printed during a run
//! (diffs, the question, the summary) go through [`block`] or [`suspend`],
//! so they never interleave with the live lines.
//!
//! indicatif draws the live lines (`MultiProgress`); this module is the one
//! place that decides whether there are any. The decision is a [`Display`],
//! made once per invocation (`command::run`) and handed to whatever shows
//! progress: no process-wide state.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// `--color`: when to use colour (and, on a terminal, the live display).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless `NO_COLOR` is set.
    #[default]
    Auto,
    Always,
    Never,
}

/// Where a host is in the run, for the stats line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Waiting,
    Running,
    Done,
    Failed,
}

struct Live {
    multi: MultiProgress,
    stats: ProgressBar,
    hosts: Mutex<BTreeMap<String, HostLine>>,
    /// The longest host name of the run (the live lines line up).
    width: AtomicUsize,
}

struct HostLine {
    bar: ProgressBar,
    stage: String,
    state: State,
}

struct Inner {
    color: bool,
    live: Option<Live>,
}

/// How this invocation shows progress (a cheap handle; clones share it).
#[derive(Clone)]
pub struct Display(Arc<Inner>);

impl Display {
    /// Decide how to show progress: colour and the live lines on a
    /// terminal (per `choice`, `NO_COLOR`); `verbose` (`-v`) keeps it plain,
    /// so tracing's lines are never drawn over.
    pub fn new(choice: ColorChoice, verbose: bool) -> Display {
        let terminal = std::io::stderr().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let color = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => terminal && !no_color,
        };
        let live = (terminal && color && !verbose).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let stats = multi.add(ProgressBar::new_spinner());
            stats.set_style(style("{msg}"));
            Live {
                multi,
                stats,
                hosts: Mutex::new(BTreeMap::new()),
                width: AtomicUsize::new(0),
            }
        });
        Display(Arc::new(Inner { color, live }))
    }

    /// Plain lines, no colour (unit tests, and what a pipe gets).
    pub fn plain() -> Display {
        Display(Arc::new(Inner {
            color: false,
            live: None,
        }))
    }

    /// Colour on stderr?
    pub fn color(&self) -> bool {
        self.0.color
    }

    /// Is the live display on?
    pub fn is_live(&self) -> bool {
        self.0.live.is_some()
    }

    /// Wrap `text` in an ANSI style (e.g. "1" bold, "31" red) when colour
    /// is on.
    pub fn paint(&self, style: &str, text: &str) -> String {
        if self.0.color {
            format!("\x1b[{style}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// The hosts of the run (in the order their live lines appear); each
    /// starts as "waiting".
    pub fn hosts<'a>(&self, names: impl IntoIterator<Item = &'a str> + Clone) {
        if let Some(live) = &self.0.live {
            let width = names.clone().into_iter().map(str::len).max().unwrap_or(0);
            live.width.fetch_max(width, Ordering::Relaxed);
            for h in names {
                live.line(h, |l| l.bar.set_message(l.stage.clone()));
            }
        }
    }

    /// A progress line for `host`: printed as `[host] msg` (above the live
    /// lines on a terminal), and the host's stage on its live line.
    pub fn say(&self, host: &str, msg: &str) {
        let text = format!("{} {msg}", self.paint("1", &format!("[{host}]")));
        match &self.0.live {
            Some(live) => {
                live.multi.println(&text).ok();
                live.line(host, |l| {
                    l.stage = msg.to_string();
                    l.bar.set_message(msg.to_string());
                });
            }
            None => eprintln!("{text}"),
        }
    }

    /// A line of output of a command `host` runs: shown after the stage on
    /// the host's live line (the derivation being built, the copy's
    /// progress). Plain output shows only the stages; the log has every
    /// line.
    pub fn output(&self, host: &str, line: &str) {
        let Some(live) = &self.0.live else { return };
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        live.line(host, |l| {
            l.bar.set_message(format!("{} · {line}", l.stage));
        });
    }

    /// The host's place in the run changed.
    pub fn state(&self, host: &str, state: State, word: &str) {
        if let Some(live) = &self.0.live {
            live.line(host, |l| {
                l.state = state;
                if matches!(state, State::Done | State::Failed) {
                    l.bar.finish_with_message(word.to_string());
                } else if state == State::Running {
                    l.bar.set_message(l.stage.clone());
                }
            });
        }
    }

    /// Run `f` (which writes to the terminal, e.g. asks a question) with
    /// the live lines hidden.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.0.live {
            Some(live) => live.multi.suspend(f),
            None => f(),
        }
    }

    /// The live lines are gone from the screen (and drawn nowhere) until
    /// the guard is dropped: for a question that waits on the user, during
    /// which nothing may hold the display (an interrupt must still get
    /// through).
    pub fn hidden(&self) -> Hidden {
        if let Some(live) = &self.0.live {
            live.multi.clear().ok();
            live.multi.set_draw_target(ProgressDrawTarget::hidden());
        }
        Hidden(self.clone())
    }

    /// Print a block of text on stderr without interleaving it with the
    /// live lines.
    pub fn block(&self, text: &str) {
        self.suspend(|| eprint!("{text}"));
    }

    /// The run is over: the live lines go, before the summary is printed.
    pub fn clear(&self) {
        if let Some(live) = &self.0.live {
            let hosts = live.hosts.lock().unwrap_or_else(|p| p.into_inner());
            for l in hosts.values() {
                l.bar.finish_and_clear();
            }
            live.stats.finish_and_clear();
            live.multi.clear().ok();
        }
    }

    /// One long-running step's progress (provisioning, validate): a
    /// spinner when the display is live, plain lines otherwise.
    pub fn spinner(&self) -> Spinner {
        let bar = self.is_live().then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.enable_steady_tick(Duration::from_millis(100));
            b
        });
        Spinner { bar, quiet: false }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

impl Live {
    fn line<R>(&self, host: &str, f: impl FnOnce(&mut HostLine) -> R) -> R {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        let width = self.width.load(Ordering::Relaxed).max(host.len());
        let fresh = !hosts.contains_key(host);
        let line = hosts.entry(host.to_string()).or_insert_with(|| {
            let bar = self
                .multi
                .insert_before(&self.stats, ProgressBar::new_spinner());
            bar.set_style(style("{prefix:.bold} {spinner} {elapsed:>4} {wide_msg}"));
            bar.set_prefix(format!("[{host:<width$}]"));
            bar.enable_steady_tick(Duration::from_millis(120));
            HostLine {
                bar,
                stage: "waiting".into(),
                state: State::Waiting,
            }
        });
        let before = line.state;
        let r = f(line);
        // The stats line changes only when a host's place in the run does
        // (or a host joins), not on every line of output.
        if fresh || line.state != before {
            let n = |s: State| hosts.values().filter(|l| l.state == s).count();
            self.stats.set_message(format!(
                "{} running, {} done, {} failed, {} waiting",
                n(State::Running),
                n(State::Done),
                n(State::Failed),
                n(State::Waiting)
            ));
        }
        r
    }
}

/// See [`Display::hidden`].
pub struct Hidden(Display);

impl Drop for Hidden {
    fn drop(&mut self) {
        if let Some(live) = &(self.0).0.live {
            live.multi.set_draw_target(ProgressDrawTarget::stderr());
        }
    }
}

/// One long-running step's progress on stderr (provisioning, validate), made
/// by [`Display::spinner`]: a spinner when the display is live, plain lines
/// otherwise.
pub struct Spinner {
    bar: Option<indicatif::ProgressBar>,
    /// Says nothing (a wait inside a deploy, whose host lines tell it).
    quiet: bool,
}

impl Spinner {
    /// A spinner that shows nothing.
    pub fn silent() -> Spinner {
        Spinner {
            bar: None,
            quiet: true,
        }
    }

    pub fn say(&self, msg: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(b) => b.set_message(msg.to_string()),
            None => eprintln!("{msg}"),
        }
    }

    pub fn done(&self, msg: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(b) => b.finish_with_message(msg.to_string()),
            None => eprintln!("{msg}"),
        }
    }
}
