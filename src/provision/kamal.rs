//! Put a new server's IP into Kamal's config/deploy.yml, under
//! `servers` → `web`, changing that one value and keeping every other byte
//! (comments, order, quoting, indentation). Three shapes are understood:
//!
//! ```yaml
//! servers:            servers:            servers:
//!   - 192.0.2.1         web:                web:
//!                         - 192.0.2.1         hosts:
//!                                               - 192.0.2.1
//! ```
//!
//! With one address there, it is replaced; with none, the IP is added; with
//! several, the IP is added unless present. The file is parsed (yaml-rust2)
//! before and after: a file that does not parse, or a shape not understood,
//! is left untouched and the manual change is printed instead.

use std::path::Path;

use yaml_rust2::{Yaml, YamlLoader};

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The file now lists the IP; `before` is the value replaced, if any.
    Updated { before: Option<String>, line: usize },
    /// The IP was already there.
    Unchanged,
    /// Not changed; the text says what to do by hand.
    Manual(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    ServersList,
    WebList,
    WebHosts,
}

fn manual(ip: &str, why: &str) -> Outcome {
    Outcome::Manual(format!(
        "{why}; add the server by hand:\n  servers:\n    web:\n      - {ip}"
    ))
}

/// The hosts Kamal would deploy `web` to, and the shape they are in.
fn web_hosts(doc: &Yaml) -> Option<(Shape, Vec<String>)> {
    let servers = &doc["servers"];
    let items = |y: &Yaml| -> Option<Vec<String>> {
        y.as_vec().map(|v| {
            v.iter()
                .filter_map(|i| match i {
                    Yaml::String(s) => Some(s.clone()),
                    Yaml::Hash(h) => h.keys().next().and_then(|k| k.as_str()).map(str::to_string),
                    _ => None,
                })
                .collect()
        })
    };
    if let Some(v) = items(servers) {
        return Some((Shape::ServersList, v));
    }
    let web = &servers["web"];
    if let Some(v) = items(web) {
        return Some((Shape::WebList, v));
    }
    items(&web["hosts"]).map(|v| (Shape::WebHosts, v))
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// Is this line `key:` (block form) at this indentation?
fn is_key(line: &str, key: &str, indent: usize) -> bool {
    indent_of(line) == indent && {
        let t = line.trim();
        t.strip_prefix(key)
            .map(|rest| {
                let rest = rest.trim_start();
                rest == ":" || rest.starts_with(": #") || rest.starts_with(":#")
            })
            .unwrap_or(false)
    }
}

fn block_end(lines: &[&str], start: usize, parent_indent: usize) -> usize {
    let mut i = start + 1;
    while i < lines.len() {
        let l = lines[i];
        if !l.trim().is_empty() && !l.trim_start().starts_with('#') && indent_of(l) <= parent_indent
        {
            break;
        }
        i += 1;
    }
    i
}

fn find_key(lines: &[&str], from: usize, to: usize, key: &str) -> Option<usize> {
    (from..to).find(|&i| {
        let l = lines[i];
        !l.trim().is_empty()
            && !l.trim_start().starts_with('#')
            && l.trim_start().starts_with(key)
            && is_key(l, key, indent_of(l))
    })
}

/// The value of a `- item` line, with its byte range in the line.
fn item_value(line: &str) -> Option<(usize, usize)> {
    let start = line.find("- ")? + 2;
    let rest = &line[start..];
    let lead = rest.len() - rest.trim_start().len();
    let vstart = start + lead;
    let v = &line[vstart..];
    let (q, body) = match v.chars().next()? {
        '"' | '\'' => (true, &v[1..]),
        _ => (false, v),
    };
    if q {
        let quote = v.as_bytes()[0] as char;
        let end = body.find(quote)?;
        return Some((vstart + 1, vstart + 1 + end));
    }
    let end = body
        .find(" #")
        .or_else(|| body.find(':'))
        .unwrap_or(body.trim_end().len());
    Some((vstart, vstart + body[..end].trim_end().len()))
}

/// Compute the new text, or say why it cannot be done automatically.
pub fn update_text(text: &str, ip: &str) -> Result<(String, Outcome), Outcome> {
    let docs = YamlLoader::load_from_str(text)
        .map_err(|e| manual(ip, &format!("config/deploy.yml does not parse ({e})")))?;
    let doc = docs
        .first()
        .ok_or_else(|| manual(ip, "config/deploy.yml is empty"))?;
    let (shape, hosts) = web_hosts(doc)
        .ok_or_else(|| manual(ip, "no `servers` → `web` list in config/deploy.yml"))?;
    if hosts.iter().any(|h| h == ip) {
        return Ok((text.to_string(), Outcome::Unchanged));
    }
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let servers = find_key(&lines, 0, lines.len(), "servers").filter(|&i| indent_of(lines[i]) == 0);
    let Some(servers) = servers else {
        return Err(manual(
            ip,
            "`servers:` is not a block at the top level of config/deploy.yml",
        ));
    };
    let mut list_at = servers;
    let mut list_end = block_end(&lines, servers, 0);
    if shape != Shape::ServersList {
        let web = find_key(&lines, servers + 1, list_end, "web")
            .ok_or_else(|| manual(ip, "`web:` is not in block form"))?;
        let web_indent = indent_of(lines[web]);
        list_at = web;
        list_end = block_end(&lines, web, web_indent);
        if shape == Shape::WebHosts {
            let h = find_key(&lines, web + 1, list_end, "hosts")
                .ok_or_else(|| manual(ip, "`hosts:` is not in block form"))?;
            list_at = h;
            list_end = block_end(&lines, h, indent_of(lines[h]));
        }
    }
    let items: Vec<usize> = (list_at + 1..list_end)
        .filter(|&i| lines[i].trim_start().starts_with("- "))
        .collect();
    if items.len() != hosts.len() {
        return Err(manual(ip, "the web hosts are not a plain block list"));
    }
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let outcome = if items.len() == 1 {
        let i = items[0];
        let (a, b) = item_value(lines[i])
            .ok_or_else(|| manual(ip, "the web host line is not understood"))?;
        let before = lines[i][a..b].to_string();
        out[i] = format!("{}{}{}", &lines[i][..a], ip, &lines[i][b..]);
        Outcome::Updated {
            before: Some(before),
            line: i + 1,
        }
    } else {
        // Add a line like the last item (or, for an empty list, indented under the key).
        let (at, template_indent) = match items.last() {
            Some(&last) => (last + 1, " ".repeat(indent_of(lines[last]))),
            None => (list_at + 1, " ".repeat(indent_of(lines[list_at]) + 2)),
        };
        let nl = if text.contains("\r\n") { "\r\n" } else { "\n" };
        out.insert(at, format!("{template_indent}- {ip}{nl}"));
        if at == lines.len() && !lines.last().is_some_and(|l| l.ends_with('\n')) {
            out[at - 1].push_str(nl);
        }
        Outcome::Updated {
            before: None,
            line: at + 1,
        }
    };
    let new_text = out.concat();
    // Check the result says what we meant before anything is written.
    let check = YamlLoader::load_from_str(&new_text).ok();
    let ok = check
        .as_ref()
        .and_then(|d| d.first())
        .and_then(web_hosts)
        .is_some_and(|(s, h)| s == shape && h.iter().any(|x| x == ip));
    if !ok {
        return Err(manual(ip, "the edit could not be verified"));
    }
    Ok((new_text, outcome))
}

/// Update the file in place (atomically, keeping its mode).
pub fn update_file(path: &Path, ip: &str) -> std::io::Result<Outcome> {
    let text = std::fs::read_to_string(path)?;
    match update_text(&text, ip) {
        Ok((new_text, outcome)) => {
            if new_text != text {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(path)?.permissions().mode() & 0o7777;
                crate::report::file::write_atomic(path, new_text.as_bytes(), mode)?;
            }
            Ok(outcome)
        }
        Err(m) => Ok(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_values_with_quotes_and_comments() {
        let l = "    - \"192.0.2.1\" # old\n";
        let (a, b) = item_value(l).unwrap();
        assert_eq!(&l[a..b], "192.0.2.1");
        let l = "  - 192.0.2.1   # c\n";
        let (a, b) = item_value(l).unwrap();
        assert_eq!(&l[a..b], "192.0.2.1");
        let l = "  - 192.0.2.1: [tag]\n";
        let (a, b) = item_value(l).unwrap();
        assert_eq!(&l[a..b], "192.0.2.1");
    }
}
