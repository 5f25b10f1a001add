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
