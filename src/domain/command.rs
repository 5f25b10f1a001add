//! The command grammar every platform shares: what follows the trigger word (Mattermost) or the
//! bot's mention (Teams) is a built-in command or a job with its arguments. Pure.

/// Words that are chat commands, never job names (`#ci help`).
pub const BUILT_INS: &[&str] = &["help", "status", "queue", "cancel", "retry", "rerun"];

/// What a chat message asks for, after the trigger word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run `job`; `args` is the rest of the message, as typed.
    Run {
        /// The job's name.
        job: String,
        /// What followed the job name, trimmed.
        args: String,
    },
    /// `help`: list the jobs; `help <job>`: detail one.
    Help {
        /// The job to detail.
        job: Option<String>,
    },
    /// `status <run>`.
    Status {
        /// As typed: `42` or `#42`.
        run: String,
    },
    /// `queue`: what runs and waits here.
    Queue,
    /// `cancel <run>`.
    Cancel {
        /// As typed.
        run: String,
    },
    /// `retry <run>` / `rerun <run>`: the same job with the same arguments again.
    Retry {
        /// As typed.
        run: String,
    },
    /// `word` names no job and no command.
    Unknown {
        /// What the user typed where a job name was expected.
        word: String,
        /// The closest job or command name, when one is close.
        suggestion: Option<String>,
    },
}

/// Parses a Mattermost message: the first word is the trigger word; with one leading `#`, `!`,
/// `/` or `@` removed, if it names a job, that job runs (`#build` → `build`); otherwise the rest
/// is read by [`parse_after_trigger`] (`#ci build`). `jobs` are the job names.
pub fn parse_command(text: &str, jobs: &[&str]) -> Command {
    let mut rest = text.trim_start();
    let bare = strip_sigil(next_word(&mut rest));
    if jobs.contains(&bare) {
        return Command::Run {
            job: bare.to_string(),
            args: rest.trim().to_string(),
        };
    }
    if BUILT_INS.contains(&bare) {
        return parse_after_trigger(&format!("{bare} {rest}"), jobs);
    }
    // `#biuld` alone: a mistyped job as the trigger word, not a generic one like `#ci`.
    if rest.trim().is_empty()
        && let Some(suggestion) =
            closest(bare, jobs.iter().copied().chain(BUILT_INS.iter().copied()))
    {
        return Command::Unknown {
            word: bare.to_string(),
            suggestion: Some(suggestion),
        };
    }
    parse_after_trigger(rest, jobs)
}

/// Parses what follows the trigger (Mattermost's trigger word, Teams' mention): a command
/// (`help [job]`, `status <run>`, `queue`, `cancel <run>`, `retry <run>`), which wins over a job
/// of the same name, or a job's name and its arguments. Nothing at all is `help`.
pub fn parse_after_trigger(text: &str, jobs: &[&str]) -> Command {
    let mut rest = text.trim_start();
    let word = strip_sigil(next_word(&mut rest));
    let argument = |rest: &str| rest.split_whitespace().next().unwrap_or("").to_string();
    match word {
        "" | "help" => Command::Help {
            job: Some(argument(rest)).filter(|j| !j.is_empty()),
        },
        "status" => Command::Status {
            run: argument(rest),
        },
        "queue" => Command::Queue,
        "cancel" => Command::Cancel {
            run: argument(rest),
        },
        "retry" | "rerun" => Command::Retry {
            run: argument(rest),
        },
        job if jobs.contains(&job) => Command::Run {
            job: job.to_string(),
            args: rest.trim().to_string(),
        },
        word => Command::Unknown {
            word: word.to_string(),
            suggestion: closest(word, jobs.iter().copied().chain(BUILT_INS.iter().copied())),
        },
    }
}

/// The name closest to `word` (edit distance at most 2, and less than half its length), for
/// "did you mean".
pub fn closest<'a>(word: &str, names: impl Iterator<Item = &'a str>) -> Option<String> {
    let word = word.to_lowercase();
    names
        .map(|name| (edit_distance(&word, &name.to_lowercase()), name))
        .filter(|(d, name)| *d <= 2 && *d * 2 < name.chars().count().max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, name)| name.to_string())
}

/// Edit distance by characters, a swap of two neighbours counting as one edit (optimal string
/// alignment): `nmae` is one edit from `name`, as a person sees it.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows: two before this one, for the swap.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut last: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut row = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            row[j] = (last[j] + 1).min(row[j - 1] + 1).min(last[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                row[j] = row[j].min(before[j - 2] + 1);
            }
        }
        before = std::mem::replace(&mut last, row);
    }
    last[b.len()]
}

/// A run number as typed: `42` or `#42`.
pub fn parse_run_id(text: &str) -> Option<i64> {
    text.trim()
        .trim_start_matches('#')
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
}

/// `#build`, `!build`, `/build`, `@build` → `build`.
fn strip_sigil(word: &str) -> &str {
    word.strip_prefix(['#', '!', '/', '@']).unwrap_or(word)
}

/// Splits off the first whitespace-separated word of `rest`.
fn next_word<'a>(rest: &mut &'a str) -> &'a str {
    let text = rest.trim_start();
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    let (word, tail) = text.split_at(end);
    *rest = tail;
    word
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOBS: &[&str] = &["build", "deploy"];

    fn parse(text: &str) -> Command {
        parse_command(text, JOBS)
    }

    fn run(job: &str, args: &str) -> Command {
        Command::Run {
            job: job.into(),
            args: args.into(),
        }
    }

    #[test]
    fn a_trigger_word_that_names_a_job_runs_it() {
        assert_eq!(parse("#build"), run("build", ""));
        assert_eq!(
            parse("!build api-server  branch=main"),
            run("build", "api-server  branch=main")
        );
        assert_eq!(parse("/deploy\nsecond line"), run("deploy", "second line"));
        assert_eq!(parse("@build"), run("build", ""));
        assert_eq!(parse("build web"), run("build", "web"));
    }

    #[test]
    fn otherwise_the_second_word_names_the_job_or_command() {
        assert_eq!(parse("#ci build fast"), run("build", "fast"));
        assert_eq!(parse("#ci\tdeploy"), run("deploy", ""));
        assert_eq!(
            parse("#ci status #42"),
            Command::Status { run: "#42".into() }
        );
        assert_eq!(parse("#ci queue"), Command::Queue);
        assert_eq!(parse("#ci cancel 7"), Command::Cancel { run: "7".into() });
        assert_eq!(parse("#ci rerun 7"), Command::Retry { run: "7".into() });
        assert_eq!(
            parse("#ci help deploy"),
            Command::Help {
                job: Some("deploy".into())
            }
        );
        assert_eq!(parse("#status 4"), Command::Status { run: "4".into() });
        assert_eq!(parse("#ci"), Command::Help { job: None });
        assert_eq!(
            parse("#biuld"),
            Command::Unknown {
                word: "biuld".into(),
                suggestion: Some("build".into())
            }
        );
        assert_eq!(parse(""), Command::Help { job: None });
    }

    #[test]
    fn mistyped_names_get_a_suggestion() {
        assert_eq!(
            parse("#ci biuld"),
            Command::Unknown {
                word: "biuld".into(),
                suggestion: Some("build".into())
            }
        );
        assert_eq!(
            parse("#ci stauts 4"),
            Command::Unknown {
                word: "stauts".into(),
                suggestion: Some("status".into())
            }
        );
        assert_eq!(
            parse("#ci Build"),
            Command::Unknown {
                word: "Build".into(),
                suggestion: Some("build".into())
            }
        );
        assert_eq!(
            parse("#ci xyz"),
            Command::Unknown {
                word: "xyz".into(),
                suggestion: None
            }
        );
    }

    #[test]
    fn after_the_trigger_the_first_word_is_the_job() {
        let after = |text| parse_after_trigger(text, &["build"]);
        assert_eq!(after("build web"), run("build", "web"));
        assert_eq!(after(" #build"), run("build", ""));
        assert!(matches!(after("test web-ui"), Command::Unknown { word, .. } if word == "test"));
        assert_eq!(after(""), Command::Help { job: None });
    }

    #[test]
    fn a_swap_of_two_letters_is_one_edit() {
        assert_eq!(edit_distance("nmae", "name"), 1);
        assert_eq!(edit_distance("biuld", "build"), 1);
        assert_eq!(edit_distance("build", "build"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(
            closest("nmae", ["name", "run"].into_iter()),
            Some("name".into())
        );
    }

    #[test]
    fn run_numbers_are_read_with_or_without_hash() {
        assert_eq!(parse_run_id("#42"), Some(42));
        assert_eq!(parse_run_id("42"), Some(42));
        assert_eq!(parse_run_id("x"), None);
        assert_eq!(parse_run_id("0"), None);
    }
}
