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
