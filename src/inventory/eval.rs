//! The one evaluation of a flake's hosts: what to ask for
//! ([`EvalOptions`]) and the `--apply` expression that asks it. The Nix
//! lives in `eval.nix`; what varies from run to run reaches it as JSON,
//! never spliced into its text.

use serde::Serialize;
use serde_json::json;

use super::select;

const EVAL_NIX: &str = include_str!("eval.nix");

/// What to evaluate.
#[derive(Debug, Clone, Default)]
pub struct EvalOptions {
    /// Also return the toplevel's drvPath (which instantiates its closure)
    /// for the hosts these selectors pick; `Some(vec![])` means every host.
    pub drv_for: Option<Vec<String>>,
    /// With `drv_for`: also the derivation of disko's script
    /// (`system.build.diskoScript`), for an installation.
    pub disko: bool,
    /// Also the platform (`nixpkgs.hostPlatform.system`, as `system`) of the
    /// hosts these selectors pick, without evaluating their systems (a
    /// system built elsewhere is checked against it).
    pub platform_for: Option<Vec<String>>,
    /// Named functions of a host's `config` a command needs evaluated in
    /// the same pass (validate's Flashpods summary); each value lands in
    /// [`super::Host::extras`] under its name.
    pub extras: Vec<Extra>,
    /// Evaluate the systems (`drv_for`) in this many `nix eval` processes at
    /// once: 1, one process for the whole fleet; 0, chosen by the number of
    /// systems and cores (the default). See [`super::load`].
    pub jobs: usize,
    /// Read only these hosts (by name); the others are not evaluated at
    /// all (an evaluation worker's share). None: every host.
    pub only: Option<Vec<String>>,
    /// Told of each share's evaluated hosts as soon as its worker returns
    /// them (only with workers): a deploy starts their builds then.
    pub on_evaluated: Option<OnEvaluated>,
    /// Each worker's memory, in MiB (its data segment, `prlimit --data`):
    /// a worker past it fails alone instead of the machine swapping.
    pub max_memory_mib: Option<u64>,
}

/// A function told of evaluated hosts ([`EvalOptions::on_evaluated`]).
#[derive(Clone)]
pub struct OnEvaluated(pub std::sync::Arc<dyn Fn(Vec<super::Host>) + Send + Sync>);

impl std::fmt::Debug for OnEvaluated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnEvaluated(..)")
    }
}

/// One extra value per host: `nix` is a Nix function from a host's
/// `config` to any JSON-able value, evaluated for the hosts `for_hosts`
/// picks (selectors; empty: every host).
#[derive(Debug, Clone)]
pub struct Extra {
    pub name: &'static str,
    pub nix: &'static str,
    pub for_hosts: Vec<String>,
}

/// A selector as `eval.nix` reads it.
#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum NixSelector {
    Name(String),
    Regex(String),
    Tag(String),
}

fn selectors(list: &[String]) -> Vec<NixSelector> {
    list.iter()
        .map(|s| match select::Selector::parse(s) {
            select::Selector::Name(n) => NixSelector::Name(n),
            select::Selector::Glob(g) => NixSelector::Regex(glob_to_regex(&g)),
            select::Selector::Tag(t) => NixSelector::Tag(t),
        })
        .collect()
}

/// The `--apply` expression: for every host (`one` None, each under
/// `tryEval`, so a host that throws does not hide the others) or for the
/// host `one` (without `tryEval`, so that Nix prints the real error).
pub fn apply(opts: &EvalOptions, one: Option<&str>) -> String {
    let args = json!({
        "one": one,
        "drvFor": opts.drv_for.as_deref().map(selectors),
        "disko": opts.disko,
        "platformFor": opts.platform_for.as_deref().map(selectors),
        "only": opts.only,
        "extras": opts
            .extras
            .iter()
            .map(|e| (e.name, selectors(&e.for_hosts)))
            .collect::<std::collections::BTreeMap<_, _>>(),
    });
    let extras: Vec<String> = opts
        .extras
        .iter()
        .map(|e| format!("{} = (\n{}\n);", nix_string(e.name), e.nix))
        .collect();
    format!(
        "(\n{EVAL_NIX}\n) {{ args = builtins.fromJSON {}; extras = {{ {} }}; }}",
        nix_string(&args.to_string()),
        extras.join(" ")
    )
}

/// A Nix regular expression (POSIX ERE, for `builtins.match`) equivalent
/// to a selector glob.
pub(super) fn glob_to_regex(glob: &str) -> String {
    let mut re = String::new();
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            '[' => {
                re.push('[');
                if chars.peek() == Some(&'!') {
                    chars.next();
                    re.push('^');
                }
                for d in chars.by_ref() {
                    re.push(d);
                    if d == ']' {
                        break;
                    }
                }
            }
            c if ".+()|^${}\\".contains(c) => {
                re.push('\\');
                re.push(c);
            }
            c => re.push(c),
        }
    }
    re
}

/// A Nix string literal for `s`.
pub(super) fn nix_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' => out.push_str("\\$"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
