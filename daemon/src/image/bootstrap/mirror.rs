//! Finding the Debian mirror in this host's apt sources files.

use std::ffi::OsStr;
use std::path::PathBuf;

use super::options::DEFAULT_MIRROR;

/// One apt source: its URI, suites and components.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Source {
    uri: String,
    suites: Vec<String>,
    components: Vec<String>,
}

/// The `deb` lines of a one-line-style `sources.list` (`deb-src` and
/// comments skipped, `[options]` allowed).
fn one_line_sources(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("deb ").or(line.strip_prefix("deb\t")) else {
            continue;
        };
        let mut rest = rest.trim_start();
        if rest.starts_with('[') {
            let Some(end) = rest.find(']') else { continue };
            rest = &rest[end + 1..];
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        if words.len() >= 2 {
            out.push(Source {
                uri: words[0].to_string(),
                suites: vec![words[1].to_string()],
                components: words[2..].iter().map(|w| w.to_string()).collect(),
            });
        }
    }
    out
}

/// The enabled `Types: deb` stanzas of a deb822-style `.sources` file.
fn deb822_sources(text: &str) -> Vec<Source> {
    let mut out = Vec::new();
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut flush = |fields: &mut Vec<(String, String)>| {
        let get = |k: &str| {
            fields
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_else(Vec::new)
        };
        let types: Vec<String> = get("Types");
        let enabled = get("Enabled").first().is_none_or(|v| v != "no");
        if enabled && types.iter().any(|t| t == "deb") {
            for uri in get("URIs") {
                out.push(Source {
                    uri,
                    suites: get("Suites"),
                    components: get("Components"),
                });
            }
        }
        fields.clear();
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut fields);
        } else if line.starts_with('#') {
            continue;
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = fields.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            fields.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    flush(&mut fields);
    out
}

/// The Debian mirror named by apt source files (`(file name, text)`, in
/// apt's order): the first `deb` source with component `main` and `suite`
/// among its suites; failing that, the first with `main` whose URI ends in
/// `/debian`. `.sources` files are read as deb822, others as one-line.
pub fn mirror_from_sources(files: &[(String, String)], suite: &str) -> Option<String> {
    let sources: Vec<Source> = files
        .iter()
        .flat_map(|(name, text)| {
            if name.ends_with(".sources") {
                deb822_sources(text)
            } else {
                one_line_sources(text)
            }
        })
        .filter(|s| s.components.iter().any(|c| c == "main"))
        .filter(|s| s.uri.starts_with("http://") || s.uri.starts_with("https://"))
        .collect();
    let trimmed = |s: &Source| s.uri.trim_end_matches('/').to_string();
    sources
        .iter()
        .find(|s| s.suites.iter().any(|x| x == suite))
        .or_else(|| sources.iter().find(|s| trimmed(s).ends_with("/debian")))
        .map(trimmed)
}

/// This host's Debian mirror (from `/etc/apt/sources.list` and
/// `/etc/apt/sources.list.d/*.list|*.sources`, see
/// [`mirror_from_sources`]), else [`DEFAULT_MIRROR`].
pub fn host_mirror(suite: &str) -> String {
    let mut files = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        files.push(("sources.list".to_string(), t));
    }
    let mut names: Vec<PathBuf> = std::fs::read_dir("/etc/apt/sources.list.d")
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    names.sort();
    for p in names {
        let ext = p.extension().and_then(OsStr::to_str);
        if matches!(ext, Some("list" | "sources")) {
            if let Ok(t) = std::fs::read_to_string(&p) {
                files.push((p.display().to_string(), t));
            }
        }
    }
    mirror_from_sources(&files, suite).unwrap_or_else(|| DEFAULT_MIRROR.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn mirror_from_deb822_like_this_host() {
        let backports =
            "# Added by cargo xtask deps\nTypes: deb\nURIs: http://deb.debian.org/debian\n\
                         Suites: bookworm-backports\nComponents: main\n";
        let debian = "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\n\
                      URIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n\
                      Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
                      Types: deb\nURIs: http://mirror.example/debian-security\n\
                      Suites: bookworm-security\nComponents: main\n";
        let nodesource =
            "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\n\
                          Components: main\n";
        let f = files(&[
            ("a-backports.sources", backports),
            ("debian.sources", debian),
            ("nodesource.sources", nodesource),
        ]);
        assert_eq!(
            mirror_from_sources(&f, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        // No source for the suite: the first .../debian one.
        assert_eq!(
            mirror_from_sources(&f, "trixie").as_deref(),
            Some("http://deb.debian.org/debian")
        );
    }

    #[test]
    fn mirror_from_one_line_lists() {
        let list = "# deb http://old.example/debian bookworm main\n\
                    deb-src http://src.example/debian bookworm main\n\
                    deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://ftp.de.debian.org/debian bookworm main contrib\n";
        let f = files(&[("sources.list", list)]);
        assert_eq!(
            mirror_from_sources(&f, "bookworm").as_deref(),
            Some("http://ftp.de.debian.org/debian")
        );
        let disabled = "Types: deb\nEnabled: no\nURIs: http://x.example/debian\nSuites: bookworm\n\
                        Components: main\n";
        assert_eq!(
            mirror_from_sources(&files(&[("x.sources", disabled)]), "bookworm"),
            None
        );
        assert_eq!(mirror_from_sources(&[], "bookworm"), None);
    }
}
