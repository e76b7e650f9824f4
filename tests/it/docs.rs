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

/// README's exit-code table is the code's table (`exit::TABLE`, which
/// `--help` prints too): the same codes, in order, with the same words.
#[test]
fn the_readme_exit_code_table_is_the_one_in_the_code() {
    let readme = std::fs::read_to_string(testworld::project_root().join("README.md")).unwrap();
    let start = readme
        .find("### Exit codes")
        .expect("README has an exit-code section");
    let section = &readme[start..];
    let section = &section[..section[4..].find("\n## ").map_or(section.len(), |i| i + 4)];
    let rows: Vec<(i32, String)> = section
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.trim().trim_matches('|').split(" | ").collect();
            let code = cells.first()?.trim().parse().ok()?;
            Some((code, cells.get(1)?.trim().to_string()))
        })
        .collect();
    let table: Vec<(i32, String)> = pantheros::error::exit::TABLE
        .iter()
        .map(|(c, m)| (*c, m.to_string()))
        .collect();
    assert_eq!(rows, table);
    // Distinct, in order, and every kind of provisioning failure is in it.
    assert!(table.windows(2).all(|w| w[0].0 < w[1].0));
    use pantheros::error::Provisioning as P;
    for k in [
        P::Token,
        P::SshKey,
        P::Preflight,
        P::Api,
        P::Timeout,
        P::ForeignServer,
        P::NoServer,
        P::NotConfirmed,
        P::Rescue,
        P::Install,
        P::Reboot,
        P::Verify,
    ] {
        assert!(table.iter().any(|(c, _)| *c == k.exit_code()), "{k:?}");
    }
    // And `--help` lists every code.
    let help = pantheros::cli::exit_codes_help();
    for (code, _) in &table {
        assert!(
            help.contains(&format!("{code:>2}  ")),
            "{code} missing from --help"
        );
    }
}

/// Every message docs/troubleshooting.md quotes as pantheros' own (the
/// first cell of each table above the "from ssh and Nix" section), and
/// every one docs/rollback.md's errors table quotes, occurs
/// in pantheros' source (Rust, target scripts, modules): the guide cannot
/// drift from what the tool prints.
#[test]
fn every_message_the_troubleshooting_guide_quotes_is_in_the_source() {
    let root = testworld::project_root();
    let guide = std::fs::read_to_string(root.join("docs/troubleshooting.md")).unwrap();
    // And the errors table of docs/rollback.md.
    let rollback = std::fs::read_to_string(root.join("docs/rollback.md")).unwrap();
    let ours = format!(
        "{}\n{}",
        guide
            .split("## Messages from ssh and Nix")
            .next()
            .unwrap_or_default(),
        rollback.split("## Errors").nth(1).unwrap_or_default()
    );
    let mut source = String::new();
    for dir in ["src", "modules"] {
        for entry in walk(&root.join(dir)) {
            if let Ok(text) = std::fs::read_to_string(&entry) {
                source.push_str(&text);
            }
        }
    }
    let mut quoted = 0;
    let mut missing = vec![];
    for line in ours.lines().filter(|l| l.starts_with("| `")) {
        let cell = line
            .trim_start_matches("| ")
            .split(" | ")
            .next()
            .unwrap_or("");
        // `message`, or `` message with `backticks` `` (a double-tick span).
        let inner = match cell.strip_prefix("`` ") {
            Some(rest) => rest.split(" ``").next().unwrap_or(""),
            None => cell.split('`').nth(1).unwrap_or(""),
        };
        for fragment in inner.split('…').map(str::trim).filter(|f| f.len() >= 6) {
            quoted += 1;
            if !source.contains(fragment) {
                missing.push(fragment.to_string());
            }
        }
    }
    assert!(quoted >= 20, "only {quoted} messages quoted?");
    assert!(
        missing.is_empty(),
        "quoted but not in the source: {missing:#?}"
    );
}

/// The other way round: every error message pantheros' source builds (a
/// stage's `StageError`, an `Error` variant, a usage error, a coded or a
/// provisioning failure) is quoted in docs/troubleshooting.md or
/// docs/rollback.md, by its longest fixed part. Messages with no fixed part
/// of 12 characters or more (an I/O error's "reading {}: {e}") are too
/// generic to look up and are skipped.
#[test]
fn every_error_pantheros_builds_is_in_the_guides() {
    let root = testworld::project_root();
    let guides = ["docs/troubleshooting.md", "docs/rollback.md"]
        .iter()
        .map(|f| std::fs::read_to_string(root.join(f)).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let builders = [
        r#"StageError::(?:new|cmd)\(\s*(?:&?format!\(\s*)?"((?:[^"\\]|\\.)*)""#,
        r#"#\[error\("((?:[^"\\]|\\.)*)""#,
        r#"Error::Usage\(\s*(?:format!\(\s*)?"((?:[^"\\]|\\.)*)""#,
        r#"message:\s*(?:format!\(\s*)?"((?:[^"\\]|\\.)*)""#,
        r#"Failure::new\(\s*[A-Za-z:]+,\s*(?:format!\(\s*)?"((?:[^"\\]|\\.)*)""#,
    ]
    .map(|p| regex::Regex::new(p).unwrap());
    let split = regex::Regex::new(r#"\{[^}]*\}|\\n|\\""#).unwrap();
    let mut checked = 0;
    let mut missing = vec![];
    for file in walk(&root.join("src")) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".rs") || name == "fake.rs" || name == "fake_runs.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        // Not the unit tests' own messages.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for re in &builders {
            for c in re.captures_iter(code) {
                let message = &c[1];
                let Some(fixed) = split
                    .split(message)
                    .map(str::trim)
                    .max_by_key(|f| f.len())
                    .filter(|f| f.len() >= 12)
                else {
                    continue;
                };
                checked += 1;
                if !guides.contains(fixed) {
                    missing.push(format!("{}: {message}", name));
                }
            }
        }
    }
    assert!(
        checked >= 60,
        "only {checked} messages found: is the scan broken?"
    );
    assert!(
        missing.is_empty(),
        "errors the guides do not quote ({} of {checked}):\n{}",
        missing.len(),
        missing.join("\n")
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
