//! Job parameters: what chat text may pass to a job, and how it is checked.
//!
//! Chat text is split into words ([`split_words`]: quotes group, nothing else is special), the
//! words are bound to the job's declared parameters ([`bind`]) and every value is checked
//! against its pattern or choices. Values reach steps only as environment variables and as whole
//! argv elements (`{name}` inside one argument); never through a shell. A value may not start
//! with `-` unless the parameter's own pattern or choices allow it, so `--force` cannot be
//! smuggled in as an option.

use std::collections::BTreeMap;

use regex::Regex;

/// The pattern of a parameter that declares neither `pattern` nor `choices`.
pub const DEFAULT_PATTERN: &str = r"^[A-Za-z0-9_.][A-Za-z0-9._/:@+=,-]{0,199}$";

/// A declared parameter.
#[derive(Debug, Clone)]
pub struct ParamDef {
    /// Lowercase letters, digits and `_`.
    pub name: String,
    /// Shown by `help <job>`.
    pub description: String,
    /// Used when the caller gives none; without one the parameter is required.
    pub default: Option<String>,
    /// Values must match it as a whole.
    pub pattern: Regex,
    /// The pattern as written (for messages), or the choices.
    pub allowed: String,
    /// Allowed values, when given as a list.
    pub choices: Vec<String>,
    /// `#build feature/x` fills the parameter with position 1.
    pub positional: Option<usize>,
}

impl PartialEq for ParamDef {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.default == other.default
            && self.allowed == other.allowed
            && self.positional == other.positional
    }
}

impl ParamDef {
    /// Whether `value` is allowed.
    pub fn accepts(&self, value: &str) -> bool {
        if self.choices.is_empty() {
            self.pattern.is_match(value)
        } else {
            self.choices.iter().any(|c| c == value)
        }
    }

    /// The environment variable the value reaches steps in.
    pub fn env_name(&self) -> String {
        format!("CHATRUN_PARAM_{}", self.name.to_ascii_uppercase())
    }
}

/// Why chat arguments cannot run a job; every message names the parameter and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// A quote was opened and not closed.
    #[error("a quote (\") is not closed")]
    Unclosed,
    /// `name=value` for a parameter the job does not have.
    #[error("`{name}` is not a parameter of {job}; {takes}")]
    Unknown {
        job: String,
        name: String,
        takes: String,
    },
    /// More bare words than positional parameters.
    #[error("too many arguments: `{word}`; {takes}")]
    TooMany { word: String, takes: String },
    /// The same parameter twice.
    #[error("`{0}` is given twice")]
    Twice(String),
    /// A value its parameter does not allow.
    #[error("`{value}` is not allowed for {name}: it must be {allowed}")]
    NotAllowed {
        name: String,
        value: String,
        allowed: String,
    },
    /// A required parameter without a value.
    #[error("{name} is required: it must be {allowed}")]
    Missing { name: String, allowed: String },
}

/// Splits chat text into words: whitespace separates, `"…"` and `'…'` (and their typographic
/// forms, as chat clients like to substitute) group, nothing else is special.
///
/// # Errors
///
/// A quote is not closed.
pub fn split_words(text: &str) -> Result<Vec<String>, ArgError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match quote {
            Some(close) if c == close => quote = None,
            Some(_) => word.push(c),
            None => match c {
                '"' | '\'' => {
                    quote = Some(c);
                    in_word = true;
                }
                '\u{201C}' => {
                    quote = Some('\u{201D}');
                    in_word = true;
                }
                '\u{2018}' => {
                    quote = Some('\u{2019}');
                    in_word = true;
                }
                c if c.is_whitespace() => {
                    if in_word {
                        words.push(std::mem::take(&mut word));
                        in_word = false;
                    }
                }
                c => {
                    word.push(c);
                    in_word = true;
                }
            },
        }
    }
    if quote.is_some() {
        return Err(ArgError::Unclosed);
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Binds `text` to `params`: `name=value` words name a parameter, other words fill the
/// positional ones in order; defaults fill the rest. Returns every parameter's value, by name.
///
/// # Errors
///
/// The first problem found, naming the parameter and what it allows.
pub fn bind(
    job: &str,
    params: &[ParamDef],
    text: &str,
) -> Result<BTreeMap<String, String>, ArgError> {
    let takes = describe(params);
    let mut positional: Vec<&ParamDef> = params.iter().filter(|p| p.positional.is_some()).collect();
    positional.sort_by_key(|p| p.positional);
    let mut next_positional = positional.into_iter();
    let mut values: BTreeMap<String, String> = BTreeMap::new();

    for word in split_words(text)? {
        let named = word.split_once('=').filter(|(name, _)| is_param_name(name));
        let (param, value) =
            match named {
                Some((name, value)) => {
                    let param = params.iter().find(|p| p.name == name).ok_or_else(|| {
                        ArgError::Unknown {
                            job: job.to_string(),
                            name: name.to_string(),
                            takes: takes.clone(),
                        }
                    })?;
                    (param, value.to_string())
                }
                None => {
                    let param = next_positional
                        .by_ref()
                        .find(|p| !values.contains_key(&p.name))
                        .ok_or_else(|| ArgError::TooMany {
                            word: crate::domain::text::in_code(&word),
                            takes: takes.clone(),
                        })?;
                    (param, word)
                }
            };
        if values.contains_key(&param.name) {
            return Err(ArgError::Twice(param.name.clone()));
        }
        if !param.accepts(&value) {
            return Err(ArgError::NotAllowed {
                name: param.name.clone(),
                value: crate::domain::text::in_code(&value),
                allowed: param.allowed.clone(),
            });
        }
        values.insert(param.name.clone(), value);
    }
    for param in params {
        if !values.contains_key(&param.name) {
            match &param.default {
                Some(default) => {
                    values.insert(param.name.clone(), default.clone());
                }
                None => {
                    return Err(ArgError::Missing {
                        name: param.name.clone(),
                        allowed: param.allowed.clone(),
                    });
                }
            }
        }
    }
    Ok(values)
}

/// `name=value` words that [`bind`] reads back to the same values: how arguments are stored.
pub fn canonical(values: &BTreeMap<String, String>) -> String {
    values
        .iter()
        .map(|(name, value)| {
            if value.is_empty()
                || value
                    .chars()
                    .any(|c| c.is_whitespace() || c == '"' || c == '\'')
            {
                let quote = if value.contains('"') { '\'' } else { '"' };
                format!("{name}={quote}{value}{quote}")
            } else {
                format!("{name}={value}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Replaces `{name}` in one argv element by the parameter's value; the result stays one
/// element, whatever the value contains.
pub fn substitute(arg: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = arg.to_string();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

/// `this job takes: branch (positional 1, default main), target`
pub fn describe(params: &[ParamDef]) -> String {
    if params.is_empty() {
        return "this job takes no arguments".into();
    }
    let list: Vec<String> = params
        .iter()
        .map(|p| {
            let mut notes = Vec::new();
            if let Some(n) = p.positional {
                notes.push(format!("positional {n}"));
            }
            match &p.default {
                Some(d) => notes.push(format!("default {d}")),
                None => notes.push("required".into()),
            }
            format!("{} ({})", p.name, notes.join(", "))
        })
        .collect();
    format!("this job takes: {}", list.join(", "))
}

/// Lowercase ASCII letters, digits and `_`, starting with a letter.
pub fn is_param_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 40
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(
        name: &str,
        default: Option<&str>,
        pattern: Option<&str>,
        choices: &[&str],
        positional: Option<usize>,
    ) -> ParamDef {
        let written = pattern.unwrap_or(DEFAULT_PATTERN);
        ParamDef {
            name: name.into(),
            description: String::new(),
            default: default.map(String::from),
            pattern: Regex::new(written).unwrap(),
            allowed: if choices.is_empty() {
                format!("like {written}")
            } else {
                format!("one of {}", choices.join(", "))
            },
            choices: choices.iter().map(|c| c.to_string()).collect(),
            positional,
        }
    }

    fn params() -> Vec<ParamDef> {
        vec![
            param(
                "branch",
                Some("main"),
                Some(r"^[A-Za-z0-9._/-]{1,100}$"),
                &[],
                Some(1),
            ),
            param(
                "env",
                Some("staging"),
                None,
                &["staging", "production"],
                Some(2),
            ),
            param("note", Some(""), Some(r"^[^\n]{0,80}$"), &[], None),
        ]
    }

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn splits_words_with_quotes() {
        assert_eq!(
            split_words(r#"a "b c"  'd e'f"#).unwrap(),
            vec!["a", "b c", "d ef"]
        );
        assert_eq!(
            split_words("x=\u{201C}smart quotes\u{201D}").unwrap(),
            vec!["x=smart quotes"]
        );
        assert_eq!(split_words(r#""""#).unwrap(), vec![""]);
        assert_eq!(split_words(r#"a "b"#), Err(ArgError::Unclosed));
    }

    #[test]
    fn a_quoted_value_cannot_end_its_code_span() {
        let params = [param("env", None, None, &["staging"], Some(1))];
        let err = bind("deploy", &params, "x`**y**").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("`x\u{2CB}**y**` is not allowed for env"),
            "{err}"
        );
        let err = bind("deploy", &params, "staging `z").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("too many arguments: `\u{2CB}z`"),
            "{err}"
        );
    }

    #[test]
    fn binds_positional_and_named_values_and_fills_defaults() {
        let p = params();
        assert_eq!(
            bind("deploy", &p, "feature/x").unwrap(),
            values(&[("branch", "feature/x"), ("env", "staging"), ("note", "")])
        );
        assert_eq!(
            bind("deploy", &p, r#"env=production note="hot fix" release"#).unwrap(),
            values(&[
                ("branch", "release"),
                ("env", "production"),
                ("note", "hot fix")
            ])
        );
    }

    #[test]
    fn refuses_with_the_parameter_and_what_it_allows() {
        let p = params();
        let err = bind("deploy", &p, "main prod").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`prod` is not allowed for env: it must be one of staging, production"
        );
        let err = bind("deploy", &p, "colour=red").unwrap_err();
        assert!(err.to_string().starts_with("`colour` is not a parameter of deploy; this job takes: branch (positional 1, default main)"), "{err}");
        assert!(matches!(
            bind("deploy", &p, "a staging c"),
            Err(ArgError::TooMany { .. })
        ));
        assert_eq!(
            bind("deploy", &p, "branch=a branch=b"),
            Err(ArgError::Twice("branch".into()))
        );
        let required = vec![param("target", None, None, &[], Some(1))];
        assert!(matches!(
            bind("b", &required, ""),
            Err(ArgError::Missing { .. })
        ));
        assert_eq!(
            bind("b", &[], "anything").unwrap_err().to_string(),
            "too many arguments: `anything`; this job takes no arguments"
        );
    }

    #[test]
    fn injection_attempts_are_refused_or_stay_one_literal_value() {
        let p = vec![param("target", Some("all"), None, &[], Some(1))];
        for attack in [
            "; rm -rf /",
            "$(id)",
            "`id`",
            "a;b",
            "--force",
            "-rf",
            "'a\nb'",
            "x|y",
            "&&",
            "'$HOME'",
            "../../etc/passwd'",
        ] {
            match bind("b", &p, attack) {
                Err(_) => {}
                Ok(bound) => panic!("{attack:?} was accepted as {bound:?}"),
            }
        }
        // A pattern that allows anything still gives one literal value, never a command line.
        let open = vec![param("msg", None, Some(r"^[\s\S]*$"), &[], Some(1))];
        let bound = bind("b", &open, r#""; rm -rf / $(id)""#).unwrap();
        assert_eq!(bound["msg"], "; rm -rf / $(id)");
        assert_eq!(
            substitute("--message={msg}", &bound),
            "--message=; rm -rf / $(id)"
        );
    }

    #[test]
    fn canonical_arguments_read_back_to_the_same_values() {
        let p = params();
        for text in [
            "",
            "feature/x production",
            r#"note="a b" release"#,
            r#"note='say "hi"'"#,
        ] {
            let bound = bind("deploy", &p, text).unwrap();
            assert_eq!(
                bind("deploy", &p, &canonical(&bound)).unwrap(),
                bound,
                "{text}"
            );
        }
    }
}
