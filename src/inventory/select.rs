//! Host selectors: exact names, globs (`*-vps`) and `@tag`. Several
//! selectors combine as a union; the result keeps the inventory's order.

use crate::error::{Error, Result};

/// Anything that can be selected: a name and tags.
pub trait Selectable {
    fn name(&self) -> &str;
    fn tags(&self) -> &[String];
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Name(String),
    Glob(String),
    Tag(String),
}

impl Selector {
    pub fn parse(s: &str) -> Selector {
        if let Some(tag) = s.strip_prefix('@') {
            Selector::Tag(tag.to_string())
        } else if s.contains(['*', '?', '[']) {
            Selector::Glob(s.to_string())
        } else {
            Selector::Name(s.to_string())
        }
    }
}

/// Indices of the selected items, in inventory order. No selectors selects all.
pub fn select<T: Selectable>(items: &[T], selectors: &[String]) -> Result<Vec<usize>> {
    let known: Vec<String> = items.iter().map(|i| i.name().to_string()).collect();
    if selectors.is_empty() {
        return Ok((0..items.len()).collect());
    }
    let mut chosen = vec![false; items.len()];
    for raw in selectors {
        match Selector::parse(raw) {
            Selector::Name(n) => match items.iter().position(|i| i.name() == n) {
                Some(ix) => chosen[ix] = true,
                None => {
                    return Err(Error::UnknownHost {
                        suggestions: closest(&n, &known),
                        name: n,
                        known,
                    });
                }
            },
            Selector::Glob(g) => {
                let pat = glob::Pattern::new(&g).map_err(|e| Error::EmptySelection {
                    selectors: format!("`{g}` (not a valid glob: {e})"),
                    known: known.clone(),
                })?;
                for (ix, it) in items.iter().enumerate() {
                    if pat.matches(it.name()) {
                        chosen[ix] = true;
                    }
                }
            }
            Selector::Tag(t) => {
                for (ix, it) in items.iter().enumerate() {
                    if it.tags().contains(&t) {
                        chosen[ix] = true;
                    }
                }
            }
        }
    }
    let out: Vec<usize> = (0..items.len()).filter(|&i| chosen[i]).collect();
    if out.is_empty() {
        return Err(Error::EmptySelection {
            selectors: selectors
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(" "),
            known,
        });
    }
    Ok(out)
}

/// Up to three known names closest to `name`.
pub fn closest(name: &str, known: &[String]) -> Vec<String> {
    let mut scored: Vec<(f64, &String)> = known
        .iter()
        .map(|k| (strsim::jaro_winkler(name, k), k))
        .filter(|(s, k)| *s >= 0.75 || k.contains(name) || name.contains(k.as_str()))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored.into_iter().take(3).map(|(_, k)| k.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct H(&'static str, Vec<String>);
    impl Selectable for H {
        fn name(&self) -> &str {
            self.0
        }
        fn tags(&self) -> &[String] {
            &self.1
        }
    }

    fn fleet() -> Vec<H> {
        vec![
            H("hetzner-vps", vec!["server".into()]),
            H("ovh-vps", vec!["server".into()]),
            H("yoga", vec!["laptop".into()]),
            H("zephyrus", vec![]),
        ]
    }

    fn names(ix: Vec<usize>) -> Vec<&'static str> {
        let f = fleet();
        ix.into_iter().map(|i| f[i].0).collect()
    }

    #[test]
    fn empty_selects_all() {
        assert_eq!(names(select(&fleet(), &[]).unwrap()).len(), 4);
    }

    #[test]
    fn names_globs_tags_union_in_inventory_order() {
        let s = |v: &[&str]| {
            names(
                select(
                    &fleet(),
                    &v.iter().map(|x| x.to_string()).collect::<Vec<_>>(),
                )
                .unwrap(),
            )
        };
        assert_eq!(s(&["yoga"]), vec!["yoga"]);
        assert_eq!(s(&["*-vps"]), vec!["hetzner-vps", "ovh-vps"]);
        assert_eq!(s(&["@laptop", "hetzner-vps"]), vec!["hetzner-vps", "yoga"]);
        assert_eq!(
            s(&["@server", "*-vps", "ovh-vps"]),
            vec!["hetzner-vps", "ovh-vps"]
        );
    }

    #[test]
    fn unknown_name_suggests_closest() {
        match select(&fleet(), &["hetzner".into()]) {
            Err(Error::UnknownHost { suggestions, .. }) => {
                assert_eq!(suggestions[0], "hetzner-vps")
            }
            other => panic!("{other:?}"),
        }
        match select(&fleet(), &["zephyrs".into()]) {
            Err(Error::UnknownHost { suggestions, .. }) => {
                assert_eq!(suggestions, vec!["zephyrus"])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nothing_matched_is_an_error() {
        assert!(matches!(
            select(&fleet(), &["*-cloud".into()]),
            Err(Error::EmptySelection { .. })
        ));
        assert!(matches!(
            select(&fleet(), &["@gpu".into()]),
            Err(Error::EmptySelection { .. })
        ));
    }
}
