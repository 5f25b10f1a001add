//! The domain: the values chatrun is about (runs, steps, platforms, replies, the command
//! grammar) and the text helpers every platform shares. The bottom layer: no I/O, and no
//! imports from the rest of the crate, so every other module may use it and it uses none.

pub mod ack;
pub mod agent;
pub mod command;
pub mod delivery;
pub mod history;
pub mod ids;
pub mod origin;
pub mod platform;
pub mod problem;
pub mod run;
pub mod text;

pub use ack::{Ack, AckFacts, AckWords, NewRun};
pub use agent::{AgentRow, AgentState, check_label, fits};
pub use command::{BUILT_INS, Command, closest, parse_after_trigger, parse_command, parse_run_id};
pub use delivery::{Address, Delivery, ReplyIntent};
pub use history::{
    BackToGreen, DEFAULT_FLAKY_WINDOW, FailureClass, FlakyTest, StatusChange, classify, flaky_tests,
};
pub use ids::{RunId, agent_token, random_id, sha256_from_hex, sha256_hex, to_hex};
pub use origin::Origin;
pub use platform::Platform;
pub use problem::Problem;
pub use run::{RunRow, RunStatus, StepRow, StepStatus, TestFailureRow};
