//! `shmkit demo`: a guided tour in which every step is a real `shmkit`
//! command run as a process of its own, printed first as a newcomer would
//! type it (`$ shmkit ...`) and followed by its real output:
//!
//! 1. an object: create, write from one process, read from another, list
//!    it with `ls`, remove it;
//! 2. a channel: a `consume` and a `produce` process, the rate they reach,
//!    and `chan stat`;
//! 3. a board: set a value, read it with its version;
//! 4. a broadcast: two subscribers, one publisher;
//! 5. a consumer killed with `kill -9`: the channel goes on, `chan stat`
//!    shows the dead endpoint, `chan reap` frees it;
//!
//! and removes everything it made, even when a step fails.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use shmkit::posix;

/// Removes the demo's objects when dropped, whatever happened before.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = posix::unlink(name);
        }
    }
}

/// An argument as a shell would need it typed.
fn quoted(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-_.:=,@%+".contains(c))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// The command line as printed: `$ shmkit ARGS` (and `SUFFIX`).
fn command_line(args: &[&str], suffix: &str) -> String {
    let mut line = String::from("$ shmkit");
    for a in args {
        line.push(' ');
        line.push_str(&quoted(a));
    }
    line.push_str(suffix);
    line
}

fn shmkit_command(args: &[&str]) -> Result<Command> {
    let exe = std::env::current_exe().context("cannot find the shmkit executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(args).stdin(Stdio::null());
    Ok(cmd)
}

/// Prints `$ shmkit ARGS`, runs it, prints its output indented, and
/// returns that output.
fn step(out: &mut dyn Write, args: &[&str]) -> Result<Vec<u8>> {
    writeln!(out, "{}", command_line(args, ""))?;
    out.flush()?;
    let output = shmkit_command(args)?
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start `shmkit {}`", args.join(" ")))?;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        writeln!(out, "    {line}")?;
    }
    if !output.status.success() {
        bail!("`shmkit {}` failed ({})", args.join(" "), output.status);
    }
    Ok(output.stdout)
}

/// Prints `$ shmkit ARGS SUFFIX` and starts it, its output captured (a
/// few lines: nobody reads the pipe until it ends) or, when `SUFFIX`
/// sends it to /dev/null, discarded.
fn background(out: &mut dyn Write, args: &[&str], suffix: &str) -> Result<Child> {
    writeln!(out, "{}", command_line(args, suffix))?;
    let stdout = if suffix.contains("/dev/null") {
        Stdio::null()
    } else {
        Stdio::piped()
    };
    shmkit_command(args)?
        .stdout(stdout)
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start `shmkit {}`", args.join(" ")))
}

/// Waits for a background step; fails unless it succeeded.
fn wait(child: Child, what: &str) -> Result<Vec<u8>> {
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("`{what}` failed ({})", output.status);
    }
    Ok(output.stdout)
}

/// A rate for people: `2.69 M messages/s`, `812 k messages/s`, `95 messages/s`.
pub fn rate(per_second: f64) -> String {
    let (value, unit) = if per_second >= 1e9 {
        (per_second / 1e9, "G ")
    } else if per_second >= 1e6 {
        (per_second / 1e6, "M ")
    } else if per_second >= 1e3 {
        (per_second / 1e3, "k ")
    } else {
        (per_second, "")
    };
    let digits = if unit.is_empty() || value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.digits$} {unit}messages/s")
}

/// Polls `chan stat --json` (in this process) until `ready` holds, at most
/// 10 s: a background consumer has joined, say.
fn until(name: &str, ready: impl Fn(&shmkit::channel::ChannelStats) -> bool) -> Result<()> {
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Ok(ch) = shmkit::channel::Channel::open(name) {
            if ready(&ch.stats()) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{name} did not get there in 10 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

pub fn run(out: &mut dyn Write, messages: u64) -> Result<u8> {
    let pid = std::process::id();
    let obj = format!("/demo-{pid}");
    let chan = format!("/demo-{pid}-jobs");
    let board = format!("/demo-{pid}-pose");
    let cast = format!("/demo-{pid}-ticks");
    let _cleanup = Cleanup(vec![obj.clone(), chan.clone(), board.clone(), cast.clone()]);
    writeln!(
        out,
        "Every step below is a command you can type yourself; its output follows it.\n"
    )?;

    writeln!(
        out,
        "# 1. An object: created, written by one process, read by another"
    )?;
    let greeting = "Hello, shared memory!";
    step(out, &["create", &obj, "--size", "200", "--mode", "0600"])?;
    step(out, &["write", &obj, greeting])?;
    let text = step(out, &["cat", &obj, "--len", &greeting.len().to_string()])?;
    if text != greeting.as_bytes() {
        bail!(
            "the reader saw {:?}, not what the writer wrote",
            String::from_utf8_lossy(&text)
        );
    }
    step(out, &["ls", "--posix", "--name", &obj])?;
    step(out, &["rm", &obj])?;

    writeln!(out, "\n# 2. A channel: a producer and a consumer process")?;
    step(
        out,
        &[
            "chan",
            "create",
            &chan,
            "--capacity",
            "1024",
            "--max-msg",
            "64",
        ],
    )?;
    let count = messages.to_string();
    let start = Instant::now();
    let consumer = background(
        out,
        &["consume", &chan, "--count", &count],
        " > /dev/null &",
    )?;
    step(out, &["produce", &chan, "--count", &count])?;
    wait(consumer, "shmkit consume")?;
    let elapsed = start.elapsed().as_secs_f64();
    writeln!(
        out,
        "    {messages} messages in {elapsed:.3} s: {} (process start included)",
        rate(messages as f64 / elapsed)
    )?;
    step(out, &["chan", "stat", &chan])?;

    writeln!(
        out,
        "\n# 3. A board: the latest value, for any number of readers"
    )?;
    step(out, &["board", "create", &board, "--size", "64"])?;
    step(out, &["board", "set", &board, "x=1.0 y=2.5"])?;
    step(out, &["board", "set", &board, "x=1.5 y=2.0"])?;
    step(out, &["board", "get", &board, "--with-version"])?;

    writeln!(
        out,
        "\n# 4. A broadcast: every subscriber gets every message"
    )?;
    let subs = [
        background(out, &["sub", &cast, "--create", "--count", "3"], " &")?,
        background(out, &["sub", &cast, "--create", "--count", "3"], " &")?,
    ];
    // Both must be subscribed before the ticks go out.
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while shmkit::broadcast::Broadcast::open(&cast)
        .map(|b| b.stats().subscribers.len())
        .unwrap_or(0)
        < 2
    {
        if Instant::now() > deadline {
            bail!("the subscribers did not join {cast} in 10 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    step(out, &["pub", &cast, "--count", "3", "--tag", "tick"])?;
    for (i, sub) in subs.into_iter().enumerate() {
        let got = wait(sub, "shmkit sub")?;
        writeln!(out, "    subscriber {}:", i + 1)?;
        for line in String::from_utf8_lossy(&got).lines() {
            writeln!(out, "      {line}")?;
        }
    }

    writeln!(
        out,
        "\n# 5. kill -9: a consumer dies waiting; the channel goes on"
    )?;
    let mut victim = background(out, &["consume", &chan, "--count", "5"], " &")?;
    let victim_pid = victim.id();
    until(&chan, |s| {
        s.endpoints.iter().any(|e| e.pid == victim_pid && e.alive)
    })?;
    writeln!(out, "$ kill -9 {victim_pid}")?;
    victim.kill()?;
    let _ = victim.wait()?;
    step(out, &["chan", "stat", &chan])?;
    step(out, &["produce", &chan, "--count", "3", "--tag", "after"])?;
    step(out, &["consume", &chan, "--count", "3"])?;
    step(out, &["chan", "reap", &chan])?;

    writeln!(out, "\n# Clean up")?;
    step(out, &["rm", &chan, &board, &cast])?;
    writeln!(
        out,
        "\nMore: `shmkit --help`, `shmkit top` (live view), `shmkit gc` (stale objects)."
    )?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_people_write_them() {
        assert_eq!(rate(2_690_671.0), "2.69 M messages/s");
        assert_eq!(rate(812_345.0), "812 k messages/s");
        assert_eq!(rate(45_678.0), "45.7 k messages/s");
        assert_eq!(rate(95.4), "95 messages/s");
        assert_eq!(rate(1.5e9), "1.50 G messages/s");
    }

    #[test]
    fn commands_are_printed_as_typed() {
        assert_eq!(
            command_line(&["write", "/x", "Hello, it's me"], ""),
            r"$ shmkit write /x 'Hello, it'\''s me'"
        );
        assert_eq!(
            command_line(&["consume", "/x"], " &"),
            "$ shmkit consume /x &"
        );
    }
}
