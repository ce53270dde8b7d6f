//! Kconfig fragments: parsing `CONFIG_X=y` / `# CONFIG_X is not set` lines, merging them
//! onto a `.config`, and checking which options Kconfig kept after `olddefconfig`.

use std::collections::BTreeMap;

/// What a fragment asks of one option: a value, or "not set" (`None`).
pub type Fragment = BTreeMap<String, Option<String>>;

/// Parses a fragment (or a whole `.config`).
pub fn parse(text: &str) -> Fragment {
    let mut out = Fragment::new();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("# ") {
            if let Some(name) = rest.strip_suffix(" is not set") {
                if name.starts_with("CONFIG_") {
                    out.insert(name.to_string(), None);
                }
            }
        } else if line.starts_with("CONFIG_") {
            if let Some((name, value)) = line.split_once('=') {
                out.insert(name.to_string(), Some(value.to_string()));
            }
        }
    }
    out
}

/// `base` with every option of `fragment` replaced or added (fragment wins).
pub fn merge(base: &str, fragment: &Fragment) -> String {
    let mut out = String::new();
    for line in base.lines() {
        let name = option_name(line);
        if name.is_some_and(|n| fragment.contains_key(n)) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    for (name, value) in fragment {
        match value {
            Some(v) => out.push_str(&format!("{name}={v}\n")),
            None => out.push_str(&format!("# {name} is not set\n")),
        }
    }
    out
}

fn option_name(line: &str) -> Option<&str> {
    let line = line.trim();
    if let Some(rest) = line.strip_prefix("# ") {
        return rest.strip_suffix(" is not set");
    }
    line.starts_with("CONFIG_").then(|| line.split_once('=').map_or(line, |(n, _)| n))
}

/// Options of `fragment` that the final `.config` does not honour: (name, wanted, got).
pub fn dropped(fragment: &Fragment, final_config: &str) -> Vec<(String, Option<String>, Option<String>)> {
    let actual = parse(final_config);
    fragment
        .iter()
        .filter_map(|(name, want)| {
            let got = actual.get(name).cloned().flatten();
            let ok = match want {
                None => got.is_none() || got.as_deref() == Some("n"),
                Some(w) => got.as_deref() == Some(w.as_str()),
            };
            (!ok).then(|| (name.clone(), want.clone(), got))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_merge_verify() {
        let frag = parse("# comment\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x y\"\n");
        assert_eq!(frag.len(), 3);
        assert_eq!(frag["CONFIG_B"], None);
        let base = "CONFIG_A=n\nCONFIG_B=y\nCONFIG_D=y\n# CONFIG_E is not set\n";
        let merged = merge(base, &frag);
        let m = parse(&merged);
        assert_eq!(m["CONFIG_A"].as_deref(), Some("y"));
        assert_eq!(m["CONFIG_B"], None);
        assert_eq!(m["CONFIG_C"].as_deref(), Some("\"x y\""));
        assert_eq!(m["CONFIG_D"].as_deref(), Some("y"));
        assert_eq!(merged.matches("CONFIG_A").count(), 1);
        // Kconfig dropped A (a dependency was missing) and kept the rest.
        let final_config = "# CONFIG_A is not set\nCONFIG_C=\"x y\"\n";
        let d = dropped(&frag, final_config);
        assert_eq!(d, vec![("CONFIG_A".to_string(), Some("y".to_string()), None)]);
    }
}
