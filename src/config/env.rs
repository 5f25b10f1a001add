//! `CHATRUN_*` environment variables as overrides of the file's keys: `CHATRUN_KEY`,
//! `CHATRUN_SECTION__KEY`, and Teams webhooks named by their entry.

use super::*;

/// `(variable name, key path, value)` for each `CHATRUN_*` variable that is configuration.
pub(super) fn env_overrides(
    env: impl IntoIterator<Item = (String, String)>,
) -> Vec<(String, Vec<String>, toml::Value)> {
    let mut out: Vec<_> = env
        .into_iter()
        .filter_map(|(name, value)| {
            let rest = name.strip_prefix("CHATRUN_")?;
            if STEP_VARIABLES.contains(&rest) || rest.starts_with("PARAM_") {
                return None;
            }
            let path = rest.split("__").map(str::to_lowercase).collect();
            Some((name, path, env_value(&value)))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A list written as TOML (`["a","b"]`) stays a list; anything else is a string, converted by
/// the field's own deserializer (numbers, comma-separated lists).
pub(super) fn env_value(value: &str) -> toml::Value {
    if value.trim_start().starts_with('[')
        && let Ok(mut table) = toml::from_str::<toml::Table>(&format!("v = {value}"))
        && let Some(list) = table.remove("v")
    {
        return list;
    }
    toml::Value::String(value.to_string())
}

/// Keys that hold arrays of tables, addressed from the environment by an entry's name.
pub(super) const ARRAYS_OF_TABLES: &[&[&str]] = &[&["teams", "webhooks"]];

/// Makes sure an array of tables exists where `path` goes through one, so that environment
/// variables alone can configure it (no `[[teams.webhooks]]` in the file).
pub(super) fn prepare_arrays(table: &mut toml::Table, path: &[String]) {
    for array in ARRAYS_OF_TABLES {
        if path.len() > array.len() && path.iter().zip(array.iter()).all(|(a, b)| a == b) {
            let (parents, last) = array.split_at(array.len() - 1);
            let mut current = &mut *table;
            for key in parents {
                let entry = current
                    .entry((*key).to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                let toml::Value::Table(inner) = entry else {
                    return;
                };
                current = inner;
            }
            current
                .entry(last[0].to_string())
                .or_insert_with(|| toml::Value::Array(Vec::new()));
        }
    }
}

pub(super) fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    match path {
        [] => {}
        [key] => {
            table.insert(key.clone(), value);
        }
        [key, rest @ ..] => {
            let entry = table
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(inner) => set_path(inner, rest, value),
                // An array of tables (`[[teams.webhooks]]`): the next segment is an entry's
                // `name`, e.g. CHATRUN_TEAMS__WEBHOOKS__PLATFORM_TEAM__SECRET.
                toml::Value::Array(entries) if !rest.is_empty() => {
                    set_named_entry(entries, rest, value);
                }
                other => {
                    let mut inner = toml::Table::new();
                    set_path(&mut inner, rest, value);
                    *other = toml::Value::Table(inner);
                }
            }
        }
    }
}

/// A name as it appears in an environment variable: lowercase, `-` and `.` as `_`.
pub(super) fn env_form(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Sets `rest[1..]` in the entry of `entries` whose `name` matches `rest[0]` (compared as an
/// environment variable name: case and `-`/`.`/`_` ignored), adding the entry if none does.
pub(super) fn set_named_entry(entries: &mut Vec<toml::Value>, rest: &[String], value: toml::Value) {
    let wanted = env_form(&rest[0]);
    let position = entries.iter().position(|entry| {
        entry
            .get("name")
            .and_then(toml::Value::as_str)
            .is_some_and(|name| env_form(name) == wanted)
    });
    let index = position.unwrap_or_else(|| {
        let mut fresh = toml::Table::new();
        fresh.insert(
            "name".into(),
            toml::Value::String(rest[0].replace('_', "-")),
        );
        entries.push(toml::Value::Table(fresh));
        entries.len() - 1
    });
    if let toml::Value::Table(inner) = &mut entries[index] {
        set_path(inner, &rest[1..], value);
    }
}
