//! `posix-mq`: two POSIX message queues (`mq_open`, `mq_timedsend`,
//! `mq_timedreceive`), one per direction.
//!
//! Queues are named `/shmkit-bench-PID-RUN-LINK-ab` and `…-ba`, created by
//! the harness, opened by the children, and unlinked as soon as both are
//! open. A message longer than `/proc/sys/fs/mqueue/msgsize_max` (8 KiB by
//! default) cannot be queued: `mq_open` fails and the report says so.

use std::ffi::CString;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};

use super::{Conn, End, Handoff, Link, LinkSpec, Named, Transport};
use crate::Scenario;

/// Two message queues, one message per `mq_send`.
pub struct PosixMq;

/// Queue depth: the kernel's default `msg_max` is 10.
const DEPTH: libc::c_long = 10;

fn read_limit(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/sys/fs/mqueue/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn c_name(name: &str) -> Result<CString> {
    Ok(CString::new(name)?)
}

/// `mq_open(name, flags, 0600, attr)`.
fn open_queue(name: &str, flags: libc::c_int, attr: Option<&libc::mq_attr>) -> Result<libc::mqd_t> {
    let c = c_name(name)?;
    let attr_ptr = attr.map_or(std::ptr::null(), |a| a as *const libc::mq_attr);
    // SAFETY: `c` is a NUL-terminated string and `attr_ptr` is null or points
    // to a live mq_attr; the variadic mode and attr are passed as mq_open
    // expects them when O_CREAT is set (and ignored otherwise).
    let mqd = unsafe { libc::mq_open(c.as_ptr(), flags, 0o600 as libc::mode_t, attr_ptr) };
    if mqd == -1 {
        let err = std::io::Error::last_os_error();
        bail!("mq_open {name}: {err}");
    }
    Ok(mqd)
}

/// Removes a queue; one that is gone already is not an error.
pub(crate) fn unlink(name: &str) {
    if let Ok(c) = c_name(name) {
        // SAFETY: `c` is a NUL-terminated string.
        unsafe { libc::mq_unlink(c.as_ptr()) };
    }
}

impl Transport for PosixMq {
    fn name(&self) -> &'static str {
        "posix-mq"
    }
    fn about(&self) -> &'static str {
        "two POSIX message queues (mq_timedsend/mq_timedreceive), depth 10"
    }
    fn supports(&self, scenario: Scenario) -> bool {
        scenario != Scenario::Fanout
    }

    fn link(&self, spec: &LinkSpec) -> Result<Link> {
        let depth = read_limit("msg_max").map_or(DEPTH, |m| DEPTH.min(m as libc::c_long));
        // SAFETY: mq_attr is plain old data; all-zero is a valid value.
        let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
        attr.mq_maxmsg = depth;
        attr.mq_msgsize = spec.msg_size as libc::c_long;
        let mut link = Link::default();
        for dir in ["ab", "ba"] {
            let name = format!("/{}-{dir}", spec.tag);
            let flags = libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC;
            let mqd = match open_queue(&name, flags, Some(&attr)) {
                Ok(mqd) => mqd,
                Err(e) => {
                    for made in &link.names {
                        made.remove();
                    }
                    let max = read_limit("msgsize_max").unwrap_or(0);
                    if spec.msg_size as u64 > max && max > 0 {
                        bail!("{e:#} ({}-byte messages exceed /proc/sys/fs/mqueue/msgsize_max = {max})", spec.msg_size);
                    }
                    return Err(e);
                }
            };
            // SAFETY: mqd is the descriptor just opened, closed once.
            unsafe { libc::mq_close(mqd) };
            link.names.push(Named::MessageQueue(name.clone()));
            for end in &mut link.ends {
                end.args.push(name.clone());
            }
        }
        Ok(link)
    }

    fn open(&self, spec: &LinkSpec, end: End, handoff: Handoff) -> Result<Box<dyn Conn>> {
        let (tx, rx) = match end {
            End::A => (handoff.arg(0)?, handoff.arg(1)?),
            End::B => (handoff.arg(1)?, handoff.arg(0)?),
        };
        let tx = open_queue(tx, libc::O_WRONLY | libc::O_CLOEXEC, None)?;
        let rx = match open_queue(rx, libc::O_RDONLY | libc::O_CLOEXEC, None) {
            Ok(rx) => rx,
            Err(e) => {
                // SAFETY: tx was opened above and is closed once.
                unsafe { libc::mq_close(tx) };
                return Err(e);
            }
        };
        // The queues' timed calls take an absolute CLOCK_REALTIME deadline.
        let left = spec
            .deadline(Instant::now())
            .saturating_duration_since(Instant::now());
        let at = SystemTime::now().duration_since(UNIX_EPOCH)? + left;
        Ok(Box::new(Queues {
            tx,
            rx,
            deadline: libc::timespec {
                tv_sec: at.as_secs() as libc::time_t,
                tv_nsec: at.subsec_nanos() as _,
            },
        }))
    }
}

struct Queues {
    tx: libc::mqd_t,
    rx: libc::mqd_t,
    deadline: libc::timespec,
}

fn check(what: &str, r: libc::c_int) -> Result<bool> {
    if r != -1 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINTR) => Ok(false),
        Some(libc::ETIMEDOUT) => bail!("{what}: the peer did not answer before the deadline"),
        _ => bail!("{what}: {err}"),
    }
}

impl Conn for Queues {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        loop {
            // SAFETY: `msg` is readable for its length; tx is an open queue.
            let r = unsafe {
                libc::mq_timedsend(self.tx, msg.as_ptr().cast(), msg.len(), 0, &self.deadline)
            };
            if check("mq_timedsend", r)? {
                return Ok(());
            }
        }
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<()> {
        loop {
            // SAFETY: `buf` is writable for its length, which equals the
            // queue's message size (mq_receive requires at least that).
            let r = unsafe {
                libc::mq_timedreceive(
                    self.rx,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    std::ptr::null_mut(),
                    &self.deadline,
                )
            };
            if r == -1 {
                check("mq_timedreceive", -1)?;
                continue;
            }
            if r as usize != buf.len() {
                bail!("a {r}-byte message where {} were due", buf.len());
            }
            return Ok(());
        }
    }
}

impl Drop for Queues {
    fn drop(&mut self) {
        // SAFETY: both descriptors were opened by `open` and are closed once.
        unsafe {
            libc::mq_close(self.tx);
            libc::mq_close(self.rx);
        }
    }
}
