//! The documentation's commands are real: every `pantheros …` and
//! `nix run .#app -- …` command line shown in README.md and docs/*.md
//! (in code blocks and inline code) parses with pantheros' own CLI.

use std::path::Path;

/// Split a command line the way a shell would for these examples: words,
/// single or double quotes, and a trailing `# comment`.
fn words(line: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in line.chars() {
        match (quote, c) {
            (None, '#') if cur.is_empty() => break,
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (_, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `nix run .#deploy -- a b` is `pantheros deploy a b`.
fn as_pantheros(w: Vec<String>) -> Option<Vec<String>> {
    match w.first().map(String::as_str) {
        Some("pantheros") => Some(w),
        Some("nix") if w.get(1).map(String::as_str) == Some("run") => {
            let app = w.get(2)?.strip_prefix(".#")?.to_string();
            let mut v = vec!["pantheros".to_string(), app];
            if let Some(i) = w.iter().position(|x| x == "--") {
                v.extend(w[i + 1..].iter().cloned());
            }
            Some(v)
        }
        _ => None,
    }
}

/// Command lines of a Markdown file: whole lines in code blocks, and inline
/// `code` spans (marked false: prose may name a command without its
/// arguments). Alternatives (`a|b`) and elisions (`…`) are not commands.
fn commands(text: &str) -> Vec<(String, bool)> {
    let mut out = vec![];
    let mut in_block = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            out.push((line.trim().to_string(), true));
        } else {
            let spans = line.split('`').skip(1).step_by(2);
            out.extend(spans.map(|s| (s.trim().to_string(), false)));
        }
    }
    out.into_iter()
        .filter(|(c, _)| c.starts_with("pantheros ") || c.starts_with("nix run .#"))
        .filter(|(c, _)| {
            !c.contains('|') && !c.contains('…') && !c.contains("...") && !c.contains('[')
        })
        .collect()
}

#[test]
fn every_documented_command_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    for e in std::fs::read_dir(root.join("docs")).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "md") {
            files.push(e.path());
        }
    }
    let mut checked = 0;
    let mut bad = vec![];
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (c, block) in commands(&text) {
            let Some(argv) = as_pantheros(words(&c)) else {
                continue;
            };
            checked += 1;
            if let Err(e) = pantheros::cli::Cli::parse_words(&argv) {
                // Prose naming a command (`pantheros keys upload`) is no invocation.
                if !block && argv.len() <= 3 && e.contains("required arguments were not provided") {
                    continue;
                }
                let first = e.lines().next().unwrap_or_default().to_string();
                bad.push(format!(
                    "{}: `{c}`: {first}",
                    f.file_name().unwrap().to_string_lossy()
                ));
            }
        }
    }
    assert!(checked >= 30, "only {checked} documented commands found");
    assert!(
        bad.is_empty(),
        "documented commands that do not parse:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_splitter_reads_quotes_and_comments() {
    assert_eq!(
        words("pantheros deploy '*-vps' --dry-run   # comment"),
        ["pantheros", "deploy", "*-vps", "--dry-run"]
    );
    assert_eq!(
        as_pantheros(words("nix run .#rollback -- h --list")).unwrap(),
        ["pantheros", "rollback", "h", "--list"]
    );
    assert_eq!(
        as_pantheros(words("nix run .#hosts")).unwrap(),
        ["pantheros", "hosts"]
    );
}
