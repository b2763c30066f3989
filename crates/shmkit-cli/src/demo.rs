//! `shmkit demo`: the textbook flow, each step by a separate process.
//!
//! 1. this process creates an object of 200 bytes, mode 0600;
//! 2. a child process (`shmkit write`) opens it read-write and writes a greeting;
//! 3. another child (`shmkit cat`) opens it read-only and prints the greeting;
//! 4. the object is listed with its size, mode and owner;
//! 5. it is removed, and a guard removes it even if a step fails;
//! 6. a channel is created, and a `shmkit consume` process receives what a
//!    `shmkit produce` process sends, N messages, timed.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use std::time::Instant;

use shmkit::channel::{Channel, ChannelOptions};
use shmkit::inventory;
use shmkit::posix::{self, OpenOptions};

use crate::show;

/// Removes the demo object when dropped, whatever happened before.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = posix::unlink(&self.0);
    }
}

fn shmkit(args: &[&str]) -> Result<(u32, Vec<u8>)> {
    let exe = std::env::current_exe().context("cannot find the shmkit executable")?;
    let child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start `shmkit {}`", args.join(" ")))?;
    let pid = child.id();
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("`shmkit {}` failed ({})", args.join(" "), output.status);
    }
    Ok((pid, output.stdout))
}

pub fn run(out: &mut dyn Write, messages: u64) -> Result<u8> {
    let name = format!("/shmkit-demo-{}", std::process::id());
    let greeting = "Hello, shared memory! Written by one process, read by another.";
    let size = 200;

    writeln!(
        out,
        "1. create  {name}: {size} bytes, mode 0600 (pid {})",
        std::process::id()
    )?;
    let obj = OpenOptions::new()
        .create_new(true)
        .size(size)
        .mode(0o600)
        .open(&name)?;
    let _cleanup = Cleanup(name.clone());
    drop(obj); // the creator's job is done; the object persists without it

    let (pid, _) = shmkit(&["write", &name, greeting])?;
    writeln!(
        out,
        "2. write   {} bytes from process {pid} (`shmkit write`)",
        greeting.len()
    )?;

    let len = greeting.len().to_string();
    let (pid, text) = shmkit(&["cat", &name, "--len", &len])?;
    writeln!(
        out,
        "3. read    by process {pid} (`shmkit cat`): {:?}",
        String::from_utf8_lossy(&text)
    )?;
    if text != greeting.as_bytes() {
        bail!(
            "the reader saw {:?}, not what the writer wrote",
            String::from_utf8_lossy(&text)
        );
    }

    let entry = inventory::posix_object(&name)?;
    let md = &entry.metadata;
    writeln!(
        out,
        "4. list    {} in {}: {} bytes, mode {}, owner {}, modified {}",
        entry.name,
        posix::SHM_DIR,
        md.size,
        show::perms_json(md.mode),
        show::user(md.uid),
        show::rfc3339(md.mtime)
    )?;

    posix::unlink(&name)?;
    let gone = inventory::posix_object(&name).is_err();
    writeln!(
        out,
        "5. remove  {name}: {}",
        if gone {
            "gone from /dev/shm"
        } else {
            "STILL PRESENT"
        }
    )?;
    if !gone {
        return Ok(1);
    }
    channel_demo(out, messages)
}

fn spawn(args: &[&str]) -> Result<std::process::Child> {
    let exe = std::env::current_exe().context("cannot find the shmkit executable")?;
    Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start `shmkit {}`", args.join(" ")))
}

fn channel_demo(out: &mut dyn Write, messages: u64) -> Result<u8> {
    let name = format!("/shmkit-demo-chan-{}", std::process::id());
    let channel = Channel::create(&name, ChannelOptions::new().capacity(1024).max_message(64))?;
    let _cleanup = Cleanup(name.clone());
    writeln!(
        out,
        "6. channel {name}: {} slots of up to {} bytes",
        channel.capacity(),
        channel.max_message()
    )?;
    let count = messages.to_string();
    let start = Instant::now();
    let mut consumer = spawn(&["consume", &name, "--count", &count])?;
    let mut producer = spawn(&["produce", &name, "--count", &count])?;
    let (cpid, ppid) = (consumer.id(), producer.id());
    let produced = producer.wait()?;
    let consumed = consumer.wait()?;
    let elapsed = start.elapsed();
    if !produced.success() || !consumed.success() {
        bail!("the producer ({produced}) or the consumer ({consumed}) failed");
    }
    let stats = channel.stats();
    writeln!(
        out,
        "7. produce (pid {ppid}) -> consume (pid {cpid}): {} sent, {} received in {:.3} s: {:.0} messages/s (process start included)",
        stats.sent,
        stats.received,
        elapsed.as_secs_f64(),
        messages as f64 / elapsed.as_secs_f64()
    )?;
    if stats.sent != messages || stats.received != messages {
        bail!("expected {messages} messages each way");
    }
    channel.unlink()?;
    writeln!(out, "8. remove  {name}")?;
    Ok(0)
}
