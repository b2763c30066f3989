//! Child processes: the plan of a run, starting and pinning the children,
//! the ready/go handshake, collecting results, and making sure nothing is
//! left behind.
//!
//! # Protocol (one line each, over the child's stdin and stdout)
//! 1. the parent starts every child with its [`ChildSpec`] as the last
//!    argument and the descriptors of its link ends inherited;
//! 2. each child pins itself, opens its ends, prints `ready` (or
//!    `error MESSAGE`);
//! 3. once all are ready the parent removes the named objects and writes
//!    `go` to each child;
//! 4. each child runs its role and prints `result JSON` (the one that
//!    measures; in `fanout`, every process), `done`, or `error MESSAGE`,
//!    and exits.
//!
//! # Nothing left behind
//! - a child gets `PR_SET_PDEATHSIG(SIGKILL)`: it dies with the harness;
//! - waits inside transports that can time out give up at the child's
//!   deadline (warm-up + duration + [`CHILD_GRACE`]);
//! - every child is held by a [`ChildGuard`] that kills and reaps it when
//!   dropped, and the parent gives up (dropping the guards) when a step
//!   takes longer than its timeout;
//! - named objects are held by a [`NamesGuard`] that removes them;
//! - a [`CleanUpGuard`] calls [`Transport::clean_up`] for every link once
//!   the children are gone, for what they made under names of their own.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::scenario::{self, Measurement, Ports, Role, Timing};
use crate::transport::{self, End, Handoff, HandoffWire, Link, LinkSpec, Named, Transport};
use crate::{BenchOptions, Scenario};

/// How long children may take to start and open their ends.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long past warm-up + duration a child's own waits go on.
const CHILD_GRACE: Duration = Duration::from_secs(4);
/// How long past warm-up + duration the parent waits for results.
const PARENT_GRACE: Duration = Duration::from_secs(6);
/// How long the parent waits for a child to exit after its last line.
const EXIT_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything one child needs, passed as its last argument (JSON).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ChildSpec {
    transport: String,
    scenario: Scenario,
    /// Index of this process in the scenario.
    index: usize,
    /// The CPU to pin to, if any.
    cpu: Option<usize>,
    warmup_ns: u64,
    duration_ns: u64,
    /// `paced`: the writer's rate, messages per second.
    #[serde(default)]
    rate: Option<u64>,
    /// The link ends this process owns, in [`Ports`] order.
    ends: Vec<ChildEnd>,
    ports: (usize, usize),
    in_one_process: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct ChildEnd {
    spec: LinkSpec,
    end: End,
    handoff: HandoffWire,
}

/// Which handoff of a link a process takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Take {
    /// One of the two ends.
    End(End),
    /// `fanout`: reader k's handoff; it opens end B.
    Reader(usize),
}

impl Take {
    /// The end the process opens.
    fn end(self) -> End {
        match self {
            Take::End(e) => e,
            Take::Reader(_) => End::B,
        }
    }

    /// Takes this handoff out of `link` (each is handed out once).
    fn take_from(self, link: &mut Link) -> Result<Handoff> {
        match self {
            Take::End(e) => Ok(std::mem::take(&mut link.ends[e.index()])),
            Take::Reader(k) => match link.readers.get_mut(k) {
                Some(h) => Ok(std::mem::take(h)),
                None => bail!("the link has no handoff for reader {k}"),
            },
        }
    }
}

/// The link ends (link index, which handoff) one process owns, and which
/// of them it sends and receives on (indices into that list).
type ProcessPlan = (Vec<(usize, Take)>, Ports);

/// How many links a run has, and each process's plan.
fn plan(scenario: Scenario, in_one_process: bool, readers: usize) -> (usize, Vec<ProcessPlan>) {
    let both = Ports { tx: 0, rx: 0 };
    let a = Take::End(End::A);
    if in_one_process {
        return (1, vec![(vec![(0, a)], both)]);
    }
    match scenario {
        Scenario::Rtt | Scenario::Stream | Scenario::Bulk => (
            1,
            vec![(vec![(0, a)], both), (vec![(0, Take::End(End::B))], both)],
        ),
        // A ring: link i runs from process i to process (i + 1) % 3; each
        // process sends on its first end and receives on its second.
        Scenario::Oversubscribed => {
            let n = scenario.processes(readers);
            let procs = (0..n)
                .map(|i| {
                    let prev = (i + n - 1) % n;
                    (
                        vec![(i, Take::End(End::A)), (prev, Take::End(End::B))],
                        Ports { tx: 0, rx: 1 },
                    )
                })
                .collect();
            (n, procs)
        }
        // One link: process 0 writes, process k + 1 is reader k.
        Scenario::Fanout | Scenario::Paced => {
            let mut procs = vec![(vec![(0, a)], both)];
            procs.extend((0..readers).map(|k| (vec![(0, Take::Reader(k))], both)));
            (1, procs)
        }
    }
}

/// The CPUs this process may run on, in order.
fn allowed_cpus() -> Vec<usize> {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) => (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&c| set.is_set(c))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Removes named objects when dropped (and on demand, once all are open).
#[derive(Default)]
struct NamesGuard(Vec<Named>);

impl NamesGuard {
    fn remove_all(&mut self) {
        for n in self.0.drain(..) {
            n.remove();
        }
    }
}

impl Drop for NamesGuard {
    fn drop(&mut self) {
        self.remove_all();
    }
}

/// Calls [`Transport::clean_up`] for every link when dropped. Made before
/// the children's guards, so it is dropped after them: once every child has
/// exited or been killed and reaped.
struct CleanUpGuard<'a> {
    transport: &'a dyn Transport,
    links: Vec<LinkSpec>,
}

impl Drop for CleanUpGuard<'_> {
    fn drop(&mut self) {
        for spec in &self.links {
            self.transport.clean_up(spec);
        }
    }
}

/// A running child: killed and reaped when dropped, so no error path or
/// panic leaves one behind.
struct ChildGuard {
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Arc<Mutex<String>>,
}

impl ChildGuard {
    /// Waits for the child to exit until `until`; false if it is still running.
    fn wait_until(&mut self, until: Instant) -> bool {
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return true,
                Ok(None) if Instant::now() >= until => return false,
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }

    /// The last line the child wrote to standard error, if any.
    fn stderr_tail(&self) -> String {
        let text = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        text.lines().last().unwrap_or("").to_string()
    }

    /// Why a child whose output closed is gone: its exit status (waiting a
    /// little for it) and the last line of its standard error.
    fn exit_reason(&mut self) -> String {
        let status = if self.wait_until(Instant::now() + Duration::from_millis(200)) {
            match self.child.try_wait() {
                Ok(Some(s)) => s.to_string(),
                _ => "exited".to_string(),
            }
        } else {
            "still running".to_string()
        };
        match self.stderr_tail() {
            tail if tail.is_empty() => status,
            tail => format!("{status}: {tail}"),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

enum Event {
    Line(usize, String),
    Closed(usize),
}

/// Starts one child with its descriptors inherited.
fn spawn(
    opts: &BenchOptions,
    spec: &ChildSpec,
    index: usize,
    events: mpsc::Sender<Event>,
) -> Result<ChildGuard> {
    let mut cmd = Command::new(&opts.child.program);
    cmd.args(&opts.child.args)
        .arg(serde_json::to_string(spec)?)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let inherit: Vec<RawFd> = spec
        .ends
        .iter()
        .flat_map(|e| e.handoff.fds.clone())
        .collect();
    let parent = rustix::process::getpid().as_raw_nonzero().get();
    // SAFETY: the closure runs in the forked child before exec and makes
    // only async-signal-safe system calls (fcntl, prctl, getppid) on a Vec
    // allocated before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &inherit {
                // Clear FD_CLOEXEC in this child only: the descriptor crosses exec.
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // The harness may have died before prctl took effect.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", opts.child.program.display()))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
    let stderr = Arc::new(Mutex::new(String::new()));
    let guard = ChildGuard {
        stdin: child.stdin.take(),
        child,
        stderr: Arc::clone(&stderr),
    };
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(l) => {
                    if events.send(Event::Line(index, l)).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = events.send(Event::Closed(index));
    });
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr_pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut s) = stderr.lock() {
                if s.len() < 64 << 10 {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        }
    });
    Ok(guard)
}

/// Runs `scenario` over transport `t` between fresh child processes.
pub(crate) fn measure(
    opts: &BenchOptions,
    t: &dyn Transport,
    scenario: Scenario,
    msg_size: usize,
    readers: usize,
    rate: Option<u64>,
    run_index: usize,
) -> Result<Measurement> {
    let pid = std::process::id();
    let child_deadline = opts.warmup + opts.duration + CHILD_GRACE;
    let (link_count, procs) = plan(scenario, t.in_one_process(), readers);

    let mut names = NamesGuard::default();
    let mut clean_up = CleanUpGuard {
        transport: t,
        links: Vec::new(),
    };
    // Parent-side state of the links, dropped once every child is ready
    // (or when the run fails).
    let mut keep = Vec::new();
    let mut links: Vec<(LinkSpec, Link)> = Vec::new();
    for l in 0..link_count {
        let spec = LinkSpec {
            msg_size,
            scenario: scenario.link_scenario(),
            tag: format!("shmkit-bench-{pid}-{run_index}-{l}"),
            deadline_ms: child_deadline.as_millis() as u64,
            readers,
        };
        clean_up.links.push(spec.clone());
        let mut link = t.link(&spec)?;
        names.0.extend(link.names.iter().cloned());
        keep.append(&mut link.keep);
        links.push((spec, link));
    }

    let cpus = allowed_cpus();
    let (tx, rx) = mpsc::channel();
    let mut children = Vec::new();
    // The parent's copies of the descriptors live until every child is started.
    let mut handed: Vec<Handoff> = Vec::new();
    for (index, (ends, ports)) in procs.iter().enumerate() {
        let mut child_ends = Vec::new();
        for &(l, take) in ends {
            let handoff = take.take_from(&mut links[l].1)?;
            child_ends.push(ChildEnd {
                spec: links[l].0.clone(),
                end: take.end(),
                handoff: handoff.to_wire(),
            });
            handed.push(handoff);
        }
        let spec = ChildSpec {
            transport: t.name().to_string(),
            scenario,
            index,
            // With two or more CPUs, process i gets the (i % 2)-th: one core
            // each for two processes, three processes on two cores. A
            // fan-out spreads over every allowed CPU: the (i % n)-th.
            cpu: (cpus.len() >= 2).then(|| match scenario {
                Scenario::Fanout | Scenario::Paced => cpus[index % cpus.len()],
                _ => cpus[index % 2],
            }),
            warmup_ns: opts.warmup.as_nanos() as u64,
            duration_ns: opts.duration.as_nanos() as u64,
            rate,
            ends: child_ends,
            ports: (ports.tx, ports.rx),
            in_one_process: t.in_one_process(),
        };
        children.push(spawn(opts, &spec, index, tx.clone())?);
    }
    drop(handed);
    drop(links);
    drop(tx);

    // Every child reports ready (or why not).
    let mut ready = vec![false; children.len()];
    let until = Instant::now() + START_TIMEOUT;
    while ready.iter().any(|r| !r) {
        match next_event(&rx, until, &children, "start")? {
            (i, Some(line)) if line == "ready" => ready[i] = true,
            (i, Some(line)) => bail!("process {i}: {}", strip_error(&line)),
            (i, None) => bail!(
                "process {i} exited before it was ready ({})",
                children[i].exit_reason()
            ),
        }
    }
    // Everyone has mapped or opened what it needs: names can go now.
    names.remove_all();
    drop(keep);
    for c in children.iter_mut().rev() {
        let stdin = c.stdin.as_mut().expect("stdin is piped");
        stdin.write_all(b"go\n").context("cannot start a child")?;
        stdin.flush()?;
    }

    // Every child reports its outcome. The first failure ends the run: the
    // guards kill the others rather than letting them wait for a dead peer.
    let mut finished = vec![false; children.len()];
    let until = Instant::now() + opts.warmup + opts.duration + PARENT_GRACE;
    let mut results = Vec::new();
    while finished.iter().any(|f| !f) {
        match next_event(&rx, until, &children, "finish")? {
            (i, Some(line)) => {
                if let Some(json) = line.strip_prefix("result ") {
                    results.push((i, serde_json::from_str::<Measurement>(json)?));
                } else if line != "done" {
                    bail!("process {i}: {}", strip_error(&line));
                }
                finished[i] = true;
            }
            // Output closing after the last line is the normal end.
            (i, None) if finished[i] => {}
            (i, None) => bail!(
                "process {i} exited without a result ({})",
                children[i].exit_reason()
            ),
        }
    }
    let until = Instant::now() + EXIT_TIMEOUT;
    for c in &mut children {
        c.wait_until(until);
    }
    drop(children); // kills any that did not exit
    if scenario.is_fan() {
        return scenario::fold_fanout(results, readers, rate);
    }
    results
        .pop()
        .map(|(_, m)| m)
        .ok_or_else(|| anyhow!("no process reported a result"))
}

fn strip_error(line: &str) -> &str {
    line.strip_prefix("error ").unwrap_or(line)
}

/// The next line (or end of output) of any child, before `until`.
fn next_event(
    rx: &mpsc::Receiver<Event>,
    until: Instant,
    children: &[ChildGuard],
    step: &str,
) -> Result<(usize, Option<String>)> {
    let left = until.saturating_duration_since(Instant::now());
    match rx.recv_timeout(left) {
        Ok(Event::Line(i, l)) => Ok((i, Some(l))),
        Ok(Event::Closed(i)) => Ok((i, None)),
        Err(_) => {
            let tails: Vec<String> = children
                .iter()
                .map(ChildGuard::stderr_tail)
                .filter(|t| !t.is_empty())
                .collect();
            bail!(
                "timed out waiting for the processes to {step}; killed them{}",
                if tails.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", tails.join("; "))
                }
            )
        }
    }
}

/// The child side: see [`crate::child_main`].
pub(crate) fn child_main(args: &[String]) -> i32 {
    let outcome = child_run(args);
    let mut out = std::io::stdout().lock();
    let (line, status) = match outcome {
        Ok(Some(m)) => (
            format!(
                "result {}",
                serde_json::to_string(&m).expect("a measurement serialises")
            ),
            0,
        ),
        Ok(None) => ("done".to_string(), 0),
        Err(e) => (format!("error {}", format!("{e:#}").replace('\n', "; ")), 1),
    };
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    status
}

fn child_run(args: &[String]) -> Result<Option<Measurement>> {
    let spec: ChildSpec = serde_json::from_str(
        args.last()
            .context("a benchmark child needs its specification")?,
    )
    .context("bad benchmark child specification")?;
    if let Some(cpu) = spec.cpu {
        let mut set = rustix::thread::CpuSet::new();
        set.set(cpu);
        rustix::thread::sched_setaffinity(None, &set)
            .with_context(|| format!("cannot pin to CPU {cpu}"))?;
    }
    let t = transport::by_name(&spec.transport)?;
    let mut conns = Vec::new();
    let mut msg_size = 0;
    for e in spec.ends {
        for &fd in &e.handoff.fds {
            // SAFETY: F_GETFD only queries the descriptor table.
            if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
                bail!("descriptor {fd} was not inherited");
            }
        }
        // SAFETY: the parent wrote these descriptor numbers for this process
        // only, each once, and cleared FD_CLOEXEC on exactly them; they are
        // open (checked above) and nothing else in this process owns them.
        let handoff = unsafe { Handoff::from_wire(e.handoff) };
        msg_size = e.spec.msg_size;
        conns.push(t.open(&e.spec, e.end, handoff)?);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    drop(out);
    let mut go = String::new();
    std::io::stdin().lock().read_line(&mut go)?;
    if go.trim() != "go" {
        bail!("the harness went away before the start");
    }
    let role = Role::of(spec.scenario, spec.index, spec.in_one_process, t.lossy());
    let ports = Ports {
        tx: spec.ports.0,
        rx: spec.ports.1,
    };
    let timing = Timing {
        warmup: Duration::from_nanos(spec.warmup_ns),
        duration: Duration::from_nanos(spec.duration_ns),
        rate: spec.rate,
    };
    scenario::run(role, &mut conns, ports, msg_size, timing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_plan_joins_each_process_to_the_next() {
        let (links, procs) = plan(Scenario::Oversubscribed, false, 1);
        assert_eq!(links, 3);
        assert_eq!(procs.len(), 3);
        // Process 1 receives on the B end of link 0 and sends on the A end of link 1.
        assert_eq!(
            procs[1].0,
            vec![(1, Take::End(End::A)), (0, Take::End(End::B))]
        );
        let (links, procs) = plan(Scenario::Bulk, true, 1);
        assert_eq!((links, procs.len()), (1, 1));
    }

    #[test]
    fn fanout_plan_gives_each_reader_its_own_handoff() {
        let (links, procs) = plan(Scenario::Fanout, false, 3);
        assert_eq!((links, procs.len()), (1, 4));
        assert_eq!(procs[0].0, vec![(0, Take::End(End::A))]);
        assert_eq!(procs[3].0, vec![(0, Take::Reader(2))]);
        assert_eq!(Take::Reader(2).end(), End::B);
        let mut link = Link::default();
        link.readers.push(Handoff::default());
        assert!(Take::Reader(0).take_from(&mut link).is_ok());
        assert!(Take::Reader(1).take_from(&mut link).is_err());
    }
}
