//! The validated `rules:` block: what a rule looks for, when it fires and
//! what a firing does. Validation is in `validate/rules.rs`; the engine in
//! the `rill-rules` crate.

use std::time::Duration;

/// One rule (`rules.<name>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// What lines it counts (`*` for a heartbeat without `query`).
    pub query: RuleQuery,
    /// Only lines of these logs; `None`: every log.
    pub logs: Option<Vec<String>>,
    /// Only lines of these hosts; `None` (`all`, or absent): every host.
    pub hosts: Option<Vec<String>>,
    pub kind: RuleKind,
    /// What the rule counts and fires per (`None`: one group, `""`).
    pub group_by: Option<GroupBy>,
    /// After a firing of a group, further firings of the same group within
    /// this long (of the lines' time; wall time for flatline and heartbeat)
    /// are suppressed. `None`: none suppressed, except a flatline, which
    /// defaults to its `within`.
    pub realert: Option<Duration>,
    pub actions: Vec<Action>,
}

/// A rule's query: `text` in `rill search` syntax, and the saved query's
/// name when `query:` named one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleQuery {
    pub text: String,
    pub saved: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// Every matching line fires.
    Any,
    /// Fires when at least `count` matches fall within `within` (per group).
    Frequency { count: u64, within: Duration },
    /// Fires when fewer than `count` matches fall within `within` (per group).
    Flatline { count: u64, within: Duration },
    /// Fires every `every`, whatever the lines.
    Heartbeat { every: Duration },
}

impl RuleKind {
    pub fn name(&self) -> &'static str {
        match self {
            RuleKind::Any => "any",
            RuleKind::Frequency { .. } => "frequency",
            RuleKind::Flatline { .. } => "flatline",
            RuleKind::Heartbeat { .. } => "heartbeat",
        }
    }
}

/// `group_by`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    Host,
    Log,
    Path,
    /// `fields.<name>`: the parsed field's value (its JSON text when not a
    /// string; lines without it are the group `""`).
    Field(String),
}

/// What a firing does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Command(CommandAction),
    Webhook(WebhookAction),
}

/// `command: [ABSOLUTE_PATH, ARGS..]`, run without a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandAction {
    pub argv: Vec<String>,
    /// The whole process group is killed after it (default 12 s).
    pub timeout: Duration,
    /// The user it runs as; `None`: `nobody` when the collector runs as
    /// root, else the collector's own user.
    pub run_as: Option<String>,
    /// Address-space limit in bytes (`RLIMIT_AS`).
    pub memory: Option<u64>,
    /// Further attempts after a failure or timeout (default 0).
    pub retries: u32,
}

/// `webhook: URL` (http or https), POSTed the firing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookAction {
    pub url: String,
    /// The environment variable holding the HMAC-SHA256 key; the signature
    /// of the body goes in `X-Rill-Signature: sha256=<hex>`.
    pub secret_env: Option<String>,
    /// Per attempt (default 5 s).
    pub timeout: Duration,
    /// Further attempts after a failure (default 3), with exponential
    /// backoff from 1 s; a 2xx answer is success.
    pub retries: u32,
}
