//! Opening the Zenoh session: explicit endpoints or a config file,
//! multicast scouting off unless asked for.

use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use zenoh::{Config, Session, Wait};

/// Where the bridge's Zenoh session listens and what it connects to.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct NetArgs {
    /// Listen on this Zenoh endpoint (repeatable), e.g. tcp/0.0.0.0:7447.
    #[arg(long, value_name = "ENDPOINT")]
    pub listen: Vec<String>,
    /// Connect to this Zenoh endpoint (repeatable), e.g. tcp/HOST:7447;
    /// retried in the background until it answers, and after it drops.
    #[arg(long, value_name = "ENDPOINT")]
    pub connect: Vec<String>,
    /// A Zenoh configuration file (JSON5); --listen and --connect are added
    /// to it. With a file, scouting is as the file says.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Find peers by multicast scouting too (off by default: peers are the
    /// endpoints given, nothing else).
    #[arg(long)]
    pub scouting: bool,
}

fn json_list(items: &[String]) -> String {
    serde_json::Value::from(items.to_vec()).to_string()
}

/// The Zenoh configuration for `net`.
///
/// # Errors
/// An unreadable or invalid config file, or an endpoint Zenoh rejects.
pub fn config(net: &NetArgs) -> Result<Config> {
    let mut config = match &net.config {
        Some(path) => Config::from_file(path)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("reading the Zenoh config {}", path.display()))?,
        None => Config::default(),
    };
    let mut set = |key: &str, value: String| {
        config
            .insert_json5(key, &value)
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("setting {key} to {value}"))
    };
    set("mode", "\"peer\"".into())?;
    if net.config.is_none() {
        set("scouting/multicast/enabled", net.scouting.to_string())?;
        // Without --listen, listen nowhere rather than on a random port.
        set("listen/endpoints", json_list(&net.listen))?;
        set("connect/endpoints", json_list(&net.connect))?;
    } else {
        if !net.listen.is_empty() {
            set("listen/endpoints", json_list(&net.listen))?;
        }
        if !net.connect.is_empty() {
            set("connect/endpoints", json_list(&net.connect))?;
        }
        if net.scouting {
            set("scouting/multicast/enabled", "true".into())?;
        }
    }
    if !net.connect.is_empty() {
        // A peer that is not up yet (or restarts) is retried, not fatal.
        set("connect/exit_on_failure", "false".into())?;
        set("connect/timeout_ms", "-1".into())?;
        set(
            "connect/retry",
            r#"{ period_init_ms: 100, period_max_ms: 1000, period_increase_factor: 2 }"#.into(),
        )?;
    }
    Ok(config)
}

/// Opens the session.
///
/// # Errors
/// Those of [`config`], and a listen endpoint that cannot be bound.
pub fn open(net: &NetArgs) -> Result<Session> {
    let config = config(net)?;
    zenoh::open(config)
        .wait()
        .map_err(|e| anyhow!("{e}"))
        .context("opening the Zenoh session")
}
