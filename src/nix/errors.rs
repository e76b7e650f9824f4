//! Nix's evaluation errors as each Nix version prints them, reduced to what
//! a user needs: the error's own message and where in the user's files it
//! happened. Nix 2.8 prints `error: MESSAGE` first and, with
//! `--show-trace`, the frames after it; since 2.13 an error carries frames
//! even without `--show-trace`, printed before the message (`error:` alone,
//! `… while evaluating …` frames with their `at FILE:LINE:COL:` and code,
//! then the indented `error: MESSAGE`). Frames located in pantheros' own
//! `--apply` expression (`«string»`) are never the user's.

/// ANSI colour codes removed.
pub fn strip_ansi(s: &str) -> String {
    let mut plain = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        plain.push(c);
    }
    plain
}

/// One line of Nix's error output, classified.
#[derive(Debug, PartialEq)]
enum Line<'a> {
    /// `error:` with its text (empty for 2.13+'s header).
    Error(&'a str),
    /// `… while …`: a frame's title.
    Frame,
    /// `at LOCATION:` of a frame.
    At(&'a str),
    /// A code excerpt (`  81| …`, `    |   ^`).
    Code,
    /// Nix's advice about `--show-trace`.
    Boilerplate,
    Blank,
    /// Anything else: a continuation of the message.
    Text(&'a str),
}

fn classify(line: &str) -> Line<'_> {
    let t = line.trim();
    if t.is_empty() {
        Line::Blank
    } else if let Some(rest) = t.strip_prefix("error:") {
        Line::Error(rest.trim())
    } else if t.starts_with('…') {
        Line::Frame
    } else if let Some(at) = t.strip_prefix("at ") {
        Line::At(at.trim_end_matches(':'))
    } else if t.contains("--show-trace") {
        Line::Boilerplate
    } else if t
        .split_once('|')
        .is_some_and(|(n, _)| n.trim().chars().all(|c| c.is_ascii_digit()))
    {
        Line::Code
    } else {
        Line::Text(t)
    }
}

/// The short form: `error: MESSAGE` (with its continuation lines) and the
/// innermost location in the user's files, `at FILE:LINE:COL`. Falls back
/// to the text from the first `error:` line when the output has no shape
/// Nix gives its errors.
pub fn short(stderr: &str) -> String {
    let plain = strip_ansi(stderr);
    let lines: Vec<(Line, &str)> = plain.lines().map(|l| (classify(l), l)).collect();
    // The message: the last `error:` line with text (2.13+ prints it last,
    // 2.8 first and only), and the plain lines that follow it.
    let Some(at_msg) = lines
        .iter()
        .rposition(|(c, _)| matches!(c, Line::Error(t) if !t.is_empty()))
    else {
        return fallback(&plain);
    };
    let mut message = vec![format!("error: {}", text_of(&lines[at_msg].0))];
    for (c, _) in &lines[at_msg + 1..] {
        match c {
            Line::Text(t) => message.push(format!("       {t}")),
            Line::Blank | Line::Boilerplate => {}
            _ => break,
        }
    }
    // The user's location nearest to the message: before it (2.13+, frames
    // outermost first), else after it (2.8's --show-trace).
    let user_at = |(c, _): &(Line, &str)| match c {
        Line::At(a) if !a.starts_with('«') => Some(a.to_string()),
        _ => None,
    };
    let location = lines[..at_msg]
        .iter()
        .rev()
        .find_map(user_at)
        .or_else(|| lines[at_msg..].iter().find_map(user_at));
    if let Some(at) = location {
        message.push(format!("       at {at}"));
    }
    message.join("\n")
}

fn text_of(l: &Line) -> String {
    match l {
        Line::Error(t) | Line::Text(t) => t.to_string(),
        _ => String::new(),
    }
}

/// Everything from the first `error:` line, without Nix's advice and blank
/// lines: for output that is not shaped as Nix's errors are.
fn fallback(plain: &str) -> String {
    let lines: Vec<&str> = plain
        .lines()
        .filter(|l| !l.contains("--show-trace") && !l.trim().is_empty())
        .collect();
    let start = lines
        .iter()
        .position(|l| l.trim_start().starts_with("error:"))
        .unwrap_or(0);
    lines[start..].join("\n")
}

/// The whole trace (`--show-trace`): every frame, as Nix printed it,
/// without colour codes and with the message where the user reads it.
pub fn full(stderr: &str) -> String {
    let plain = strip_ansi(stderr);
    let lines: Vec<&str> = plain.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_start().starts_with("error:"))
        .unwrap_or(0);
    lines[start..].join("\n").trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded from real runs (tests/data/nix-errors/README.md): the same
    /// failing host (`throw "zephyrus is broken on purpose"`) evaluated by
    /// pantheros' --apply expression.
    const V2_8: &str = include_str!("../../tests/data/nix-errors/2.8/plain.stderr");
    const V2_8_TRACE: &str = include_str!("../../tests/data/nix-errors/2.8/trace.stderr");
    const V2_26: &str = include_str!("../../tests/data/nix-errors/2.26/plain.stderr");
    const V2_26_TRACE: &str = include_str!("../../tests/data/nix-errors/2.26/trace.stderr");
    const V2_34: &str = include_str!("../../tests/data/nix-errors/2.34/plain.stderr");
    const V2_34_TRACE: &str = include_str!("../../tests/data/nix-errors/2.34/trace.stderr");

    #[test]
    fn every_version_gives_the_same_short_error() {
        assert_eq!(short(V2_8), "error: zephyrus is broken on purpose");
        for (v, out) in [
            ("2.8 --show-trace", V2_8_TRACE),
            ("2.26", V2_26),
            ("2.26 --show-trace", V2_26_TRACE),
            ("2.34", V2_34),
            ("2.34 --show-trace", V2_34_TRACE),
        ] {
            let s = short(out);
            let lines: Vec<&str> = s.lines().collect();
            assert_eq!(lines[0], "error: zephyrus is broken on purpose", "{v}: {s}");
            assert_eq!(lines.len(), 2, "{v}: {s}");
            let at = lines[1].trim();
            assert!(
                at.starts_with("at /nix/store/")
                    && (at.ends_with("flake.nix:81:22") || at.ends_with("flake.nix:81:31")),
                "{v}: {s}"
            );
            assert!(
                !s.contains("«string»"),
                "{v}: pantheros' own expression shows: {s}"
            );
        }
    }

    /// With --show-trace the whole trace is kept, from its first line:
    /// never a tail cut in the middle of a frame.
    #[test]
    fn the_full_trace_is_kept_whole() {
        for (v, out) in [
            ("2.8", V2_8_TRACE),
            ("2.26", V2_26_TRACE),
            ("2.34", V2_34_TRACE),
        ] {
            let f = full(out);
            assert!(f.starts_with("error:"), "{v}: {f}");
            assert!(
                f.contains("while evaluating the attribute 'config'"),
                "{v}: {f}"
            );
            assert!(f.contains("zephyrus is broken on purpose"), "{v}: {f}");
            assert_eq!(f.lines().count(), out.trim_end().lines().count(), "{v}");
        }
    }

    #[test]
    fn output_of_another_shape_falls_back_to_its_error_lines() {
        assert_eq!(
            short(
                "warning: x\nerror: cannot connect to daemon\n(use '--show-trace' to show detailed location information)\n"
            ),
            "error: cannot connect to daemon"
        );
        assert_eq!(short("something odd\n"), "something odd");
        assert_eq!(short("\u{1b}[31;1merror:\u{1b}[0m boom\n"), "error: boom");
    }
}
