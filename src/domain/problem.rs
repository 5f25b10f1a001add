//! One problem found in a file the user wrote (the configuration, a job file), with where: what
//! `chatrun check` lists.

use std::fmt;

/// One problem found in the configuration or a job file, with where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (or `environment`) the value came from.
    pub source: String,
    /// The key, dotted (`mattermost.url`), or empty for the whole file.
    pub key: String,
    /// What is wrong, lowercase, no period.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.source, self.message)
        } else {
            write!(f, "{}: {}: {}", self.source, self.key, self.message)
        }
    }
}

/// What `check` says of a value still holding config/example.toml's placeholder text.
pub const PLACEHOLDER: &str = "is still the example file's placeholder (\"replace-with-…\"), known to anyone who read it: put your own value here, or remove the line";

/// Whether a value is one of config/example.toml's documented placeholders, which must never be
/// live: every one contains "replace-with".
pub fn is_placeholder(value: &str) -> bool {
    value.to_ascii_lowercase().contains("replace-with")
}

/// Whether `url` is an http:// or https:// URL.
pub fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// The keys a TOML file may hold, so that every unknown key is reported at once (serde's
/// `deny_unknown_fields` stops at the first).
#[derive(Debug, Clone, Copy)]
pub enum Key {
    /// A value, or a table whose keys are free (a step's `env`).
    Value(&'static str),
    /// A table with these keys.
    Table(&'static str, &'static [Key]),
    /// An array of tables, each with these keys (`[[steps]]`).
    Tables(&'static str, &'static [Key]),
    /// A table of named tables, each with these keys (`[params.NAME]`).
    Named(&'static str, &'static [Key]),
}

impl Key {
    fn name(self) -> &'static str {
        match self {
            Key::Value(name) | Key::Table(name, _) | Key::Tables(name, _) | Key::Named(name, _) => {
                name
            }
        }
    }
}

/// Every key of `table` that `schema` does not know, dotted (`steps[1].nmae`), with what to
/// say of it ("did you mean `name`?"); each is removed from `table`, so that what remains can
/// still be read and checked.
pub fn take_unknown_keys(table: &mut toml::Table, schema: &[Key]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    unknown_in(table, schema, "", &mut found);
    found
}

fn unknown_in(
    table: &mut toml::Table,
    schema: &[Key],
    prefix: &str,
    found: &mut Vec<(String, String)>,
) {
    let dotted = |key: &str| {
        if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        }
    };
    let unknown: Vec<String> = table
        .keys()
        .filter(|key| !schema.iter().any(|k| k.name() == key.as_str()))
        .cloned()
        .collect();
    for key in unknown {
        table.remove(&key);
        let names = schema.iter().map(|k| k.name());
        let message = match super::closest(&key, names.clone()) {
            Some(near) => format!("unknown key; did you mean `{near}`?"),
            None => format!(
                "unknown key; this {} takes {}",
                if prefix.is_empty() { "file" } else { "section" },
                names
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        found.push((dotted(&key), message));
    }
    for key in schema {
        match (*key, table.get_mut(key.name())) {
            (Key::Table(name, keys), Some(toml::Value::Table(inner))) => {
                unknown_in(inner, keys, &dotted(name), found);
            }
            (Key::Tables(name, keys), Some(toml::Value::Array(items))) => {
                for (i, item) in items.iter_mut().enumerate() {
                    if let toml::Value::Table(inner) = item {
                        unknown_in(inner, keys, &format!("{}[{i}]", dotted(name)), found);
                    }
                }
            }
            (Key::Named(name, keys), Some(toml::Value::Table(entries))) => {
                for (entry, item) in entries.iter_mut() {
                    if let toml::Value::Table(inner) = item {
                        unknown_in(inner, keys, &format!("{}.{entry}", dotted(name)), found);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &[Key] = &[
        Key::Value("workers"),
        Key::Table("web", &[Key::Value("open"), Key::Value("password")]),
        Key::Tables("steps", &[Key::Value("name"), Key::Value("env")]),
        Key::Named("params", &[Key::Value("default")]),
    ];

    #[test]
    fn every_unknown_key_is_found_with_a_suggestion_and_removed() {
        let mut table: toml::Table = toml::from_str(
            "wrokers = 2\nzzz = 1\n[web]\nopne = true\n[[steps]]\nname = \"a\"\nenv = { ANY = \"x\" }\n\
             [[steps]]\nnmae = \"b\"\n[params.branch]\ndefualt = \"main\"\n",
        )
        .unwrap();
        let found = take_unknown_keys(&mut table, SCHEMA);
        let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "wrokers",
                "zzz",
                "web.opne",
                "steps[1].nmae",
                "params.branch.defualt"
            ]
        );
        assert_eq!(found[0].1, "unknown key; did you mean `workers`?");
        assert!(
            found[1].1.contains("this file takes `workers`, `web`"),
            "{}",
            found[1].1
        );
        assert!(take_unknown_keys(&mut table, SCHEMA).is_empty(), "removed");
    }
}
