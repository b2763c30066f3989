//! How `consume`, `sub` and `board get --watch` wait: `--follow` and
//! `--timeout`, shared so the three verbs read and end alike.

use std::time::{Duration, Instant};

/// The exit status when `--timeout` runs out (as `timeout(1)`'s), so a
/// script tells "nothing came" from an error (1) and success (0).
pub const TIMED_OUT: u8 = 124;

/// `--timeout`: how long a verb waits for the next message or version.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct TimeoutArg {
    /// Give up when nothing new comes for DURATION (`500ms`, `5s`, `1m`):
    /// the wait for the first message, for a writer, and between messages.
    /// Exit status 124 then, with a message on standard error.
    #[arg(long, value_name = "DURATION", value_parser = crate::gc::parse_duration)]
    pub timeout: Option<Duration>,
}

/// What `consume` and `sub` share: whether they may create the object,
/// whether they wait for a next sender, and how long they wait.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct ReceiveArgs {
    /// Create the channel or broadcast (with the --capacity/--max-msg
    /// given) if it does not exist; without it a missing one is an error,
    /// so a typo never makes a new object.
    #[arg(long)]
    pub create: bool,
    /// When every producer (or the writer) has left, wait for the next one
    /// instead of ending (until --count messages, --timeout, or killed).
    #[arg(long)]
    pub follow: bool,
    #[command(flatten)]
    pub timeout: TimeoutArg,
}

/// The idle clock of a waiting verb: when the current wait must end.
#[derive(Debug, Clone, Copy)]
pub struct Idle {
    timeout: Option<Duration>,
    since: Instant,
}

impl Idle {
    pub fn start(arg: TimeoutArg) -> Self {
        Idle {
            timeout: arg.timeout,
            since: Instant::now(),
        }
    }

    /// Something new came: the next wait starts now.
    pub fn reset(&mut self) {
        if self.timeout.is_some() {
            self.since = Instant::now();
        }
    }

    /// The end of the current wait (None: for ever).
    pub fn deadline(&self) -> Option<Instant> {
        self.timeout.and_then(|t| self.since.checked_add(t))
    }

    /// What is left of the current wait (None: for ever).
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline()
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Says on standard error that the wait ran out, and gives the exit
    /// status for it. `what` names what did not come ("no message on /x"),
    /// `progress` how far the verb got ("3 of 10 received"), if it counts.
    pub fn expired(&self, what: &str, progress: Option<String>) -> u8 {
        let waited = self.timeout.unwrap_or_default();
        let progress = progress.map(|p| format!("; {p}")).unwrap_or_default();
        eprintln!(
            "shmkit: timed out: {} for {} (--timeout{progress})",
            crate::show::escape_controls(what),
            humantime::format_duration(waited)
        );
        TIMED_OUT
    }
}
