//! Two network namespaces joined by a veth pair, for tests and the bench:
//! a real network path (the kernel's TCP over a link that can be cut with
//! `ip link set down`) on one machine. Needs root and iproute2.
//!
//! Side A has address [`ADDR_A`] on interface `veth-a`, side B [`ADDR_B`]
//! on `veth-b`; each namespace also has its loopback up. Dropping the pair
//! deletes both namespaces (and so the veth pair).
//!
//! Note that `/dev/shm` is shared by every network namespace: objects on
//! the two sides need distinct names.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context, Result};

/// Side A's address.
pub const ADDR_A: &str = "10.231.0.1";
/// Side B's address.
pub const ADDR_B: &str = "10.231.0.2";

/// The two namespaces; deleted on drop.
#[derive(Debug)]
pub struct NetnsPair {
    /// Side A's namespace name.
    pub a: String,
    /// Side B's namespace name.
    pub b: String,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl NetnsPair {
    /// Creates a fresh pair with names unique to this process.
    ///
    /// # Errors
    /// When `ip` is missing or namespaces may not be made (not root, or a
    /// container without `CAP_SYS_ADMIN`): the message says which.
    pub fn create(tag: &str) -> Result<NetnsPair> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = format!("shmkit-{tag}-{}-{n}", std::process::id());
        let pair = NetnsPair {
            a: format!("{base}-a"),
            b: format!("{base}-b"),
        };
        // From here on, Drop removes whatever was made.
        ip(&["netns", "add", &pair.a])?;
        ip(&["netns", "add", &pair.b])?;
        ip(&[
            "-n", &pair.a, "link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b",
            "netns", &pair.b,
        ])?;
        for (ns, dev, addr) in [(&pair.a, "veth-a", ADDR_A), (&pair.b, "veth-b", ADDR_B)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(pair)
    }

    /// A command that runs `program` inside namespace `ns`.
    pub fn command(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).arg(program);
        c
    }

    /// Takes the link down (`up == false`) or up again, on side A.
    ///
    /// # Errors
    /// When `ip` fails.
    pub fn set_link(&self, up: bool) -> Result<()> {
        ip(&[
            "-n",
            &self.a,
            "link",
            "set",
            "veth-a",
            if up { "up" } else { "down" },
        ])
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        // Errors ignored: a namespace that was never made is not there to
        // delete, and a drop has no one to tell.
        let _ = ip(&["netns", "del", &self.a]);
        let _ = ip(&["netns", "del", &self.b]);
    }
}
