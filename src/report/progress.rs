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
//! place that decides whether there are any.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
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

struct Display {
    color: bool,
    live: Option<Live>,
}

static DISPLAY: OnceLock<Display> = OnceLock::new();

/// Decide, once, how this process shows progress. `verbose` (`-v`) keeps
/// it plain, so tracing's lines are never drawn over.
pub fn init(choice: ColorChoice, verbose: bool) {
    let _ = DISPLAY.set(decide(choice, verbose));
}

fn decide(choice: ColorChoice, verbose: bool) -> Display {
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
    Display { color, live }
}

fn display() -> &'static Display {
    DISPLAY.get_or_init(|| decide(ColorChoice::Auto, false))
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// Colour on stderr?
pub fn color() -> bool {
    display().color
}

/// Is the live display on?
pub fn is_live() -> bool {
    display().live.is_some()
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

/// The hosts of the run (in the order their live lines appear); each
/// starts as "waiting".
pub fn hosts<'a>(names: impl IntoIterator<Item = &'a str> + Clone) {
    if let Some(live) = &display().live {
        let width = names.clone().into_iter().map(str::len).max().unwrap_or(0);
        live.width.fetch_max(width, Ordering::Relaxed);
        for h in names {
            live.line(h, |l| l.bar.set_message(l.stage.clone()));
        }
    }
}

/// A progress line for `host`: printed as `[host] msg` (above the live
/// lines on a terminal), and the host's stage on its live line.
pub fn say(host: &str, msg: &str) {
    let text = format!("{} {msg}", crate::report::paint("1", &format!("[{host}]")));
    match &display().live {
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

/// A line of output of a command `host` runs: shown after the stage on the
/// host's live line (the derivation being built, the copy's progress).
/// Plain output shows only the stages; the log has every line.
pub fn output(host: &str, line: &str) {
    let Some(live) = &display().live else { return };
    let line = line.trim();
    if line.is_empty() {
        return;
    }
    live.line(host, |l| {
        l.bar.set_message(format!("{} · {line}", l.stage));
    });
}

/// The host's place in the run changed.
pub fn state(host: &str, state: State, word: &str) {
    if let Some(live) = &display().live {
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

/// Run `f` (which writes to the terminal, e.g. asks a question) with the
/// live lines hidden.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    match &display().live {
        Some(live) => live.multi.suspend(f),
        None => f(),
    }
}

/// The live lines are gone from the screen (and drawn nowhere) until the
/// guard is dropped: for a question that waits on the user, during which
/// nothing may hold the display (an interrupt must still get through).
pub fn hidden() -> Hidden {
    if let Some(live) = &display().live {
        live.multi.clear().ok();
        live.multi.set_draw_target(ProgressDrawTarget::hidden());
    }
    Hidden(())
}

/// See [`hidden`].
pub struct Hidden(());

impl Drop for Hidden {
    fn drop(&mut self) {
        if let Some(live) = &display().live {
            live.multi.set_draw_target(ProgressDrawTarget::stderr());
        }
    }
}

/// Print a block of text on stderr without interleaving it with the live
/// lines.
pub fn block(text: &str) {
    suspend(|| eprint!("{text}"));
}

/// The run is over: the live lines go, before the summary is printed.
pub fn clear() {
    if let Some(live) = &display().live {
        let hosts = live.hosts.lock().unwrap_or_else(|p| p.into_inner());
        for l in hosts.values() {
            l.bar.finish_and_clear();
        }
        live.stats.finish_and_clear();
        live.multi.clear().ok();
    }
}

/// One long-running step's progress on stderr (provisioning, validate): a
/// spinner when the display is live, plain lines otherwise.
pub struct Spinner {
    bar: Option<indicatif::ProgressBar>,
    /// Says nothing (a wait inside a deploy, whose host lines tell it).
    quiet: bool,
}

impl Spinner {
    pub fn new() -> Spinner {
        // The one decision of the live display (`--color`, NO_COLOR, -v, a
        // terminal) holds here too.
        let bar = is_live().then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.enable_steady_tick(Duration::from_millis(100));
            b
        });
        Spinner { bar, quiet: false }
    }

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

impl Default for Spinner {
    fn default() -> Self {
        Spinner::new()
    }
}
