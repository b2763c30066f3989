//! Bench: round trip and 64-byte stream across two network namespaces,
//! through the bridge, beside raw Zenoh and raw TCP in the same run.
//!
//! `shmkit-bridge-bench [--runs 3] [--rtts 2000] [--messages 500000]`
//! (root: it makes the namespaces). Each run measures every transport in
//! turn; the report gives medians and ranges over the runs, and ratios
//! to raw Zenoh. Stream rates are taken at the receiver, first message to
//! last, and every stream is checked for loss and order.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use shmkit::channel::{Channel, ChannelOptions};
use shmkit_zenoh::net::{self, NetArgs};
use shmkit_zenoh::netns::{NetnsPair, ADDR_A, ADDR_B};
use zenoh::qos::CongestionControl;
use zenoh::Wait;

#[derive(Parser, Debug)]
#[command(name = "shmkit-bridge-bench", about)]
struct Cli {
    /// Runs of every transport (the report shows medians).
    #[arg(long, default_value = "3")]
    runs: usize,
    /// Round trips per run (8-byte messages).
    #[arg(long, default_value = "2000")]
    rtts: u64,
    /// Messages per stream run (64 bytes each).
    #[arg(long, default_value = "500000")]
    messages: u64,
    /// Internal: measure from inside namespace A, with B named so.
    #[arg(long, hide = true, num_args = 2, value_names = ["A", "B"])]
    inside: Vec<String>,
    #[command(subcommand)]
    child: Option<Child>,
}

/// The two namespaces' names (the pair itself is owned by the parent).
struct Sides {
    a: String,
    b: String,
}

/// A process the bench starts inside a namespace (internal).
#[derive(Subcommand, Debug)]
enum Child {
    /// Answer each 8-byte TCP message (one connection).
    TcpPong { port: u16 },
    /// Receive a 64-byte TCP stream of N messages; print the rate.
    TcpSink { port: u16, messages: u64 },
    /// Answer each sample on bench/ping on bench/pong.
    ZenohPong { connect: String },
    /// Receive N samples on bench/stream; print the rate.
    ZenohSink { connect: String, messages: u64 },
}

const PORT_TCP: u16 = 17601;
const PORT_ZENOH: u16 = 17602;
const PORT_BRIDGE_PING: u16 = 17603;
const PORT_BRIDGE_PONG: u16 = 17604;

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.child {
        Some(child) => run_child(child),
        None => run_bench(&cli),
    }
}

fn zenoh_session(listen: Option<String>, connect: Option<String>) -> Result<zenoh::Session> {
    net::open(&NetArgs {
        listen: listen.into_iter().collect(),
        connect: connect.into_iter().collect(),
        ..NetArgs::default()
    })
}

fn stream_message(i: u64) -> [u8; 64] {
    let mut m = [0u8; 64];
    m[..8].copy_from_slice(&i.to_le_bytes());
    m
}

fn number(m: &[u8]) -> u64 {
    u64::from_le_bytes(m[..8].try_into().unwrap_or([0xff; 8]))
}

/// Counts a stream: checks order, times first to last.
struct Sink {
    expected: u64,
    first: Option<Instant>,
    last: Instant,
    out_of_order: u64,
}

impl Sink {
    fn new() -> Sink {
        Sink {
            expected: 0,
            first: None,
            last: Instant::now(),
            out_of_order: 0,
        }
    }

    fn take(&mut self, m: &[u8]) {
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.last = now;
        if number(m) != self.expected {
            self.out_of_order += 1;
        }
        self.expected += 1;
    }

    fn report(&self) -> String {
        let secs = self
            .first
            .map_or(0.0, |f| self.last.duration_since(f).as_secs_f64());
        let rate = if secs > 0.0 {
            (self.expected.saturating_sub(1)) as f64 / secs
        } else {
            0.0
        };
        format!("{rate} {} {}", self.expected, self.out_of_order)
    }
}

fn run_child(child: Child) -> Result<()> {
    match child {
        Child::TcpPong { port } => {
            let listener = TcpListener::bind((ADDR_B, port))?;
            println!("ready");
            std::io::stdout().flush()?;
            let (mut s, _) = listener.accept()?;
            s.set_nodelay(true)?;
            let mut buf = [0u8; 8];
            while s.read_exact(&mut buf).is_ok() {
                s.write_all(&buf)?;
            }
        }
        Child::TcpSink { port, messages } => {
            let listener = TcpListener::bind((ADDR_B, port))?;
            println!("ready");
            std::io::stdout().flush()?;
            let (s, _) = listener.accept()?;
            let mut r = BufReader::with_capacity(1 << 16, s);
            let mut sink = Sink::new();
            let mut m = [0u8; 64];
            for _ in 0..messages {
                r.read_exact(&mut m)?;
                sink.take(&m);
            }
            println!("{}", sink.report());
        }
        Child::ZenohPong { connect } => {
            let session = zenoh_session(None, Some(connect))?;
            let publisher = session
                .declare_publisher("bench/pong")
                .congestion_control(CongestionControl::Block)
                .wait()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let (tx, rx) = mpsc::channel::<Vec<u8>>();
            let _sub = session
                .declare_subscriber("bench/ping")
                .callback(move |s| {
                    let _ = tx.send(s.payload().to_bytes().into_owned());
                })
                .wait()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("ready");
            std::io::stdout().flush()?;
            // A thread answers, as a bridge's export thread would.
            while let Ok(m) = rx.recv() {
                publisher
                    .put(m)
                    .wait()
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
        }
        Child::ZenohSink { connect, messages } => {
            let session = zenoh_session(None, Some(connect))?;
            let (tx, rx) = mpsc::channel::<String>();
            let sink = std::sync::Mutex::new((Sink::new(), Some(tx)));
            let _sub = session
                .declare_subscriber("bench/stream")
                .callback(move |s| {
                    let mut g = sink.lock().unwrap_or_else(|p| p.into_inner());
                    g.0.take(&s.payload().to_bytes());
                    if g.0.expected == messages {
                        if let Some(tx) = g.1.take() {
                            let _ = tx.send(g.0.report());
                        }
                    }
                })
                .wait()
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("ready");
            std::io::stdout().flush()?;
            println!("{}", rx.recv()?);
        }
    }
    Ok(())
}

/// A child started inside namespace B, killed on drop.
struct Spawned(std::process::Child, BufReader<std::process::ChildStdout>);

impl Spawned {
    fn start(ns: &str, args: &[String]) -> Result<Spawned> {
        let exe = std::env::current_exe()?;
        let mut child = NetnsPair::command(ns, exe)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .context("spawning a bench child")?;
        let mut out = BufReader::new(child.stdout.take().context("child stdout")?);
        let mut line = String::new();
        out.read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("bench child said {line:?}");
        }
        Ok(Spawned(child, out))
    }

    fn result(&mut self) -> Result<(f64, u64, u64)> {
        let mut line = String::new();
        self.1.read_line(&mut line)?;
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 3 {
            bail!("bench child printed {line:?}");
        }
        Ok((f[0].parse()?, f[1].parse()?, f[2].parse()?))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn median_us(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e6
}

/// One run's figures for one transport.
#[derive(Debug, Clone, Copy)]
struct Figures {
    rtt_p50_us: f64,
    stream_per_s: f64,
    lost: u64,
}

fn tcp(ns: &Sides, cli: &Cli) -> Result<Figures> {
    let _pong = Spawned::start(&ns.b, &["tcp-pong".into(), PORT_TCP.to_string()])?;
    let mut s = TcpStream::connect((ADDR_B, PORT_TCP))?;
    s.set_nodelay(true)?;
    let mut times = Vec::new();
    let mut buf = [0u8; 8];
    for i in 0..cli.rtts {
        let t = Instant::now();
        s.write_all(&i.to_le_bytes())?;
        s.read_exact(&mut buf)?;
        times.push(t.elapsed());
    }
    drop(s);
    let mut sink = Spawned::start(
        &ns.b,
        &[
            "tcp-sink".into(),
            (PORT_TCP + 10).to_string(),
            cli.messages.to_string(),
        ],
    )?;
    let mut w = BufWriter::with_capacity(1 << 16, TcpStream::connect((ADDR_B, PORT_TCP + 10))?);
    for i in 0..cli.messages {
        w.write_all(&stream_message(i))?;
    }
    w.flush()?;
    let (rate, got, disorder) = sink.result()?;
    Ok(Figures {
        rtt_p50_us: median_us(times),
        stream_per_s: rate,
        lost: cli.messages - got + disorder,
    })
}

fn wait_matching(p: &zenoh::pubsub::Publisher<'_>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p
        .matching_status()
        .wait()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .matching()
    {
        if Instant::now() > deadline {
            bail!("no subscriber matched in 10 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn zenoh_raw(ns: &Sides, cli: &Cli) -> Result<Figures> {
    let ep = format!("tcp/{ADDR_A}:{PORT_ZENOH}");
    let session = zenoh_session(Some(ep.clone()), None)?;
    let z = |e: zenoh::Error| anyhow::anyhow!("{e}");
    let ping = session
        .declare_publisher("bench/ping")
        .congestion_control(CongestionControl::Block)
        .wait()
        .map_err(z)?;
    let (tx, rx) = mpsc::channel::<()>();
    let _pongs = session
        .declare_subscriber("bench/pong")
        .callback(move |_| {
            let _ = tx.send(());
        })
        .wait()
        .map_err(z)?;
    let _pong = Spawned::start(&ns.b, &["zenoh-pong".into(), ep.clone()])?;
    wait_matching(&ping)?;
    // The pong's publisher must match our subscriber too: one warm-up.
    loop {
        ping.put(vec![0u8; 8]).wait().map_err(z)?;
        if rx.recv_timeout(Duration::from_millis(200)).is_ok() {
            break;
        }
    }
    let mut times = Vec::new();
    for i in 0..cli.rtts {
        let t = Instant::now();
        ping.put(i.to_le_bytes().to_vec()).wait().map_err(z)?;
        rx.recv_timeout(Duration::from_secs(5))?;
        times.push(t.elapsed());
    }
    let stream = session
        .declare_publisher("bench/stream")
        .congestion_control(CongestionControl::Block)
        .wait()
        .map_err(z)?;
    let mut sink = Spawned::start(&ns.b, &["zenoh-sink".into(), ep, cli.messages.to_string()])?;
    wait_matching(&stream)?;
    for i in 0..cli.messages {
        stream.put(stream_message(i).to_vec()).wait().map_err(z)?;
    }
    let (rate, got, disorder) = sink.result()?;
    Ok(Figures {
        rtt_p50_us: median_us(times),
        stream_per_s: rate,
        lost: cli.messages - got + disorder,
    })
}

/// Removes the bench's channels, even on error.
struct Objects(Vec<String>);

impl Drop for Objects {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = shmkit::posix::unlink(n);
        }
    }
}

/// Bridge processes, killed on drop.
struct Bridges(Vec<std::process::Child>);

impl Drop for Bridges {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn bridge(ns: &Sides, cli: &Cli) -> Result<Figures> {
    let bin = std::env::current_exe()?
        .parent()
        .context("bench directory")?
        .join("shmkit-bridge");
    let pid = std::process::id();
    let names: Vec<String> = ["ping-a", "ping-b", "pong-b", "pong-a"]
        .iter()
        .map(|n| format!("/shmkit-bench-{pid}-bridge-{n}"))
        .collect();
    let objects = Objects(names.clone());
    let mut o = ChannelOptions::new();
    o.capacity(4096).max_message(64).spsc(true);
    for n in &objects.0 {
        let _ = shmkit::posix::unlink(n);
        Channel::create(n, &o)?;
    }
    let ping_ep = format!("tcp/{ADDR_A}:{PORT_BRIDGE_PING}");
    let pong_ep = format!("tcp/{ADDR_B}:{PORT_BRIDGE_PONG}");
    let spawn = |netns: &str, args: &[&str]| {
        NetnsPair::command(netns, &bin)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning shmkit-bridge")
    };
    let bridges = Bridges(vec![
        spawn(
            &ns.a,
            &[
                "export",
                &names[0],
                "--key",
                "bench/b-ping",
                "--listen",
                &ping_ep,
            ],
        )?,
        spawn(
            &ns.b,
            &[
                "import",
                "bench/b-ping",
                "--into",
                &names[1],
                "--connect",
                &ping_ep,
                "--spsc",
                "--max-msg",
                "64",
            ],
        )?,
        spawn(
            &ns.b,
            &[
                "export",
                &names[2],
                "--key",
                "bench/b-pong",
                "--listen",
                &pong_ep,
            ],
        )?,
        spawn(
            &ns.a,
            &[
                "import",
                "bench/b-pong",
                "--into",
                &names[3],
                "--connect",
                &pong_ep,
                "--spsc",
                "--max-msg",
                "64",
            ],
        )?,
    ]);
    let open = |i: usize| Channel::open(&names[i]);
    let mut ping_tx = open(0)?.sender()?;
    let mut pong_rx = open(3)?.receiver()?;
    // The echo on side B (shared memory is not namespaced: a thread here).
    let echo = {
        let mut rx = open(1)?.receiver()?;
        let mut tx = open(2)?.sender()?;
        let rtts = cli.rtts + 1;
        std::thread::spawn(move || -> Result<()> {
            for _ in 0..rtts {
                let m = rx.recv_timeout(Duration::from_secs(20))?;
                tx.send(&m)?;
            }
            Ok(())
        })
    };
    // Warm-up: the first one waits for both routes to match.
    ping_tx.send(&[0u8; 8])?;
    pong_rx.recv_timeout(Duration::from_secs(20))?;
    let mut times = Vec::new();
    for i in 0..cli.rtts {
        let t = Instant::now();
        ping_tx.send(&i.to_le_bytes())?;
        pong_rx.recv_timeout(Duration::from_secs(5))?;
        times.push(t.elapsed());
    }
    echo.join()
        .map_err(|_| anyhow::anyhow!("echo panicked"))??;
    // Stream: ping-a → bridge → ping-b, counted here.
    let messages = cli.messages;
    let sink = {
        let mut rx = open(1)?.receiver()?;
        std::thread::spawn(move || -> Result<String> {
            let mut sink = Sink::new();
            let mut got = 0;
            while got < messages {
                got += rx.recv_batch(
                    256,
                    Some(Instant::now() + Duration::from_secs(20)),
                    |slot| {
                        let mut m = [0u8; 64];
                        slot.read_at(0, &mut m[..slot.len().min(64)])?;
                        sink.take(&m);
                        Ok(())
                    },
                )? as u64;
            }
            Ok(sink.report())
        })
    };
    for i in 0..messages {
        ping_tx.send(&stream_message(i))?;
    }
    let report = sink
        .join()
        .map_err(|_| anyhow::anyhow!("sink panicked"))??;
    drop(bridges);
    drop(objects);
    let f: Vec<&str> = report.split_whitespace().collect();
    let (rate, got, disorder): (f64, u64, u64) = (f[0].parse()?, f[1].parse()?, f[2].parse()?);
    Ok(Figures {
        rtt_p50_us: median_us(times),
        stream_per_s: rate,
        lost: messages - got + disorder,
    })
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn run_bench(cli: &Cli) -> Result<()> {
    if cli.inside.len() != 2 {
        // Measure from inside namespace A: every path crosses the veth.
        let pair = NetnsPair::create("bridge-bench")?;
        let status = NetnsPair::command(&pair.a, std::env::current_exe()?)
            .args(std::env::args_os().skip(1))
            .args(["--inside", &pair.a, &pair.b])
            .status()?;
        if !status.success() {
            bail!("the measuring process failed: {status}");
        }
        return Ok(());
    }
    let ns = Sides {
        a: cli.inside[0].clone(),
        b: cli.inside[1].clone(),
    };
    let mut all: Vec<(&str, Vec<Figures>)> =
        vec![("tcp", vec![]), ("zenoh", vec![]), ("bridge", vec![])];
    for run in 0..cli.runs {
        for (name, figures) in &mut all {
            let f = match *name {
                "tcp" => tcp(&ns, cli),
                "zenoh" => zenoh_raw(&ns, cli),
                _ => bridge(&ns, cli),
            }
            .with_context(|| format!("{name}, run {run}"))?;
            eprintln!(
                "run {run} {name}: rtt p50 {:.1} µs, stream {:.0} msg/s, lost {}",
                f.rtt_p50_us, f.stream_per_s, f.lost
            );
            figures.push(f);
        }
    }
    let zenoh_rtt = median(all[1].1.iter().map(|f| f.rtt_p50_us).collect()).0;
    let zenoh_stream = median(all[1].1.iter().map(|f| f.stream_per_s).collect()).0;
    println!("transport | rtt p50 µs median [range] | vs zenoh | 64 B stream msg/s median [range] | vs zenoh | lost");
    println!("---|---|---|---|---|---");
    for (name, figures) in &all {
        let (r, r0, r1) = median(figures.iter().map(|f| f.rtt_p50_us).collect());
        let (s, s0, s1) = median(figures.iter().map(|f| f.stream_per_s).collect());
        let lost: u64 = figures.iter().map(|f| f.lost).sum();
        println!(
            "{name} | {r:.1} [{r0:.1}–{r1:.1}] | {:.2}× | {:.2} M [{:.2}–{:.2}] | {:.2}× | {lost}",
            r / zenoh_rtt,
            s / 1e6,
            s0 / 1e6,
            s1 / 1e6,
            s / zenoh_stream
        );
    }
    Ok(())
}
