//! `shmkit`: create, inspect, read, write and remove shared memory from the
//! shell. A thin shell over the `shmkit` library: argument parsing, output
//! formatting and exit codes live here, every mechanism lives there.

mod bench;
mod commands;
mod demo;
mod show;
mod units;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Shared-memory IPC for Linux: POSIX objects in /dev/shm.
///
/// NAME is a POSIX object name, written `name` or `/name`.
#[derive(Parser, Debug)]
#[command(name = "shmkit", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a shared memory object of SIZE bytes, its space reserved.
    Create {
        /// Object name (`name` or `/name`).
        name: String,
        /// Size in bytes; suffixes K, M, G (powers of 1024) and KiB, MiB, GiB, KB, MB, GB.
        #[arg(long, value_parser = units::parse_size)]
        size: u64,
        /// Permission bits in octal.
        #[arg(long, default_value = "0600", value_parser = units::parse_mode)]
        mode: u32,
        /// Fail if the object exists (O_EXCL). Without it, an existing object
        /// of the same size is accepted and one of another size is an error.
        #[arg(long)]
        exclusive: bool,
    },
    /// Write TEXT (or standard input) into an object, adding no NUL.
    Write {
        /// Object name.
        name: String,
        /// Byte offset to write at.
        #[arg(long, default_value = "0", value_parser = units::parse_size)]
        offset: u64,
        /// The text; standard input when absent.
        text: Option<String>,
    },
    /// Copy an object's bytes to standard output.
    Cat(ReadArgs),
    /// Show an object's bytes as hex and ASCII.
    Dump(ReadArgs),
    /// Show one object's size, mode, owner, times and mappers.
    Stat {
        /// Object name.
        name: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List the shared memory objects on this machine.
    Ls {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Change an object's size: growing keeps the data, shrinking drops the tail.
    Resize {
        /// Object name.
        name: String,
        /// New size in bytes (suffixes as for `create`).
        #[arg(value_parser = units::parse_size)]
        size: u64,
    },
    /// Remove objects; processes that map them keep them until they unmap.
    Rm {
        /// Object names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Walk the textbook flow: create, write from one process, read from
    /// another, list, remove.
    Demo,
    /// Measure latency and throughput of IPC transports between processes.
    Bench(bench::BenchArgs),
    /// One process of a benchmark, started by `shmkit bench` (internal).
    #[command(hide = true)]
    BenchChild {
        /// The child's specification, written by the harness.
        #[arg(allow_hyphen_values = true)]
        spec: Vec<String>,
    },
}

#[derive(clap::Args, Debug)]
struct ReadArgs {
    /// Object name.
    name: String,
    /// First byte to read.
    #[arg(long, default_value = "0", value_parser = units::parse_size)]
    offset: u64,
    /// Number of bytes (default: to the end).
    #[arg(long, value_parser = units::parse_size)]
    len: Option<u64>,
}

fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<u8> {
    match cli.command {
        Command::Create {
            name,
            size,
            mode,
            exclusive,
        } => commands::create(&name, size, mode, exclusive),
        Command::Write { name, offset, text } => commands::write(&name, offset, text),
        Command::Cat(a) => commands::cat(out, &a.name, a.offset, a.len),
        Command::Dump(a) => commands::dump(out, &a.name, a.offset, a.len),
        Command::Stat { name, json } => commands::stat(out, &name, json),
        Command::Ls { json } => commands::ls(out, json),
        Command::Resize { name, size } => commands::resize(&name, size),
        Command::Rm { names } => commands::rm(&names),
        Command::Demo => demo::run(out),
        Command::Bench(args) => bench::run(out, args),
        Command::BenchChild { spec } => Ok(shmkit_bench::child_main(&spec) as u8),
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let result = run(cli, &mut out).and_then(|code| {
        out.flush()?;
        Ok(code)
    });
    match result {
        Ok(code) => ExitCode::from(code),
        // A reader that closed our stdout (`shmkit cat x | head`) got all it wanted.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = out.flush();
            eprintln!("shmkit: {e:#}");
            ExitCode::from(1)
        }
    }
}
