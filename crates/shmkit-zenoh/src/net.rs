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
    cap_blocked_push_at_lease(&mut config)?;
    Ok(config)
}

/// Where Zenoh keeps how long a blocked put waits before it gives the link
/// up (microseconds), and the lease (milliseconds).
const WAIT_BEFORE_CLOSE: &str =
    "transport/link/tx/queue/congestion_control/block/wait_before_close";
const LEASE: &str = "transport/link/tx/lease";

/// A put blocked on a full link (`CongestionControl::Block`, what a
/// lossless bridge uses) holds that link's teardown until it gives up:
/// Zenoh waits `wait_before_close` (5 s by default) before it does. When
/// that is longer than the lease, a link that died keeps a zombie session
/// on the blocked side past its lease; the other side meanwhile reconnects
/// into that zombie, and the session that follows may route nothing at
/// all (seen with a 1 s lease: liveliness came back, no sample or query
/// did). So a blocked put waits at most one lease: no progress for a whole
/// lease is what a dead link means anyway.
fn cap_blocked_push_at_lease(config: &mut Config) -> Result<()> {
    let number = |key: &str| -> Result<u64> {
        let text = config.get_json(key).map_err(|e| anyhow!("{e}"))?;
        text.trim()
            .parse()
            .map_err(|_| anyhow!("the Zenoh config's {key} is {text}, not a number"))
    };
    let lease_us = number(LEASE)?.saturating_mul(1000);
    if number(WAIT_BEFORE_CLOSE)? > lease_us {
        config
            .insert_json5(WAIT_BEFORE_CLOSE, &lease_us.to_string())
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("setting {WAIT_BEFORE_CLOSE} to the lease"))?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_before_close(config: &Config) -> u64 {
        config.get_json(WAIT_BEFORE_CLOSE).unwrap().parse().unwrap()
    }

    #[test]
    fn a_blocked_put_waits_at_most_one_lease() {
        // Default lease (10 s): Zenoh's own 5 s stays.
        let plain = config(&NetArgs::default()).unwrap();
        assert_eq!(wait_before_close(&plain), 5_000_000);
        // A one-second lease from a config file: capped to it.
        let path = std::env::temp_dir().join(format!(
            "shmkit-test-{}-net-lease.json5",
            std::process::id()
        ));
        std::fs::write(&path, "{ transport: { link: { tx: { lease: 1000 } } } }").unwrap();
        let args = NetArgs {
            config: Some(path.clone()),
            ..NetArgs::default()
        };
        let capped = config(&args);
        let _ = std::fs::remove_file(&path);
        assert_eq!(wait_before_close(&capped.unwrap()), 1_000_000);
    }
}
