//! `shmkit`: create, inspect, read, write and remove shared memory from the
//! shell. A thin shell over the `shmkit` library: argument parsing, output
//! formatting and exit codes live here, every mechanism lives there.

#[cfg(feature = "bench")]
mod bench;
mod board;
// issue 14: `shmkit bridge` execs shmkit-bridge (crate shmkit-zenoh)
mod bridge;
mod chan;
mod commands;
mod completions;
mod copy;
mod demo;
mod foreign;
mod gc;
mod ls;
mod ownership;
mod show;
mod sysv_cmds;
mod target;
mod top;
mod units;
mod waiting;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use target::Target;

/// Shared-memory IPC for Linux: POSIX objects in /dev/shm and System V
/// segments.
///
/// TARGET is a POSIX object name or a System V segment (see `target::HELP`).
#[derive(Parser, Debug)]
#[command(name = "shmkit", version, about, long_about = None, after_help = target::HELP)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Use a channel, board or broadcast another user owns without the
    /// warning (produce, consume, pub, sub, board set and get warn).
    #[arg(long, global = true)]
    allow_foreign: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a shared memory object of SIZE bytes, its space reserved, or
    /// with --sysv a System V segment (printing its id).
    #[command(
        after_help = "Examples:\n  shmkit create /jobs --size 1.5M\n  shmkit create /jobs --size 4K --mode 0660 --exclusive\n  shmkit create --sysv --key 0x1234 --size 64K     (prints the shmid)\n  shmkit create --sysv --ftok /etc/hosts:A --size 4096\n  shmkit create /weights --from model.bin            (the file's size and bytes)"
    )]
    Create {
        /// Object name (`name` or `/name`); none with --sysv.
        #[arg(
            required_unless_present_any = ["sysv", "key", "ftok", "private"],
            conflicts_with = "sysv"
        )]
        name: Option<String>,
        /// Size in bytes; suffixes K, M, G (powers of 1024) and KiB, MiB, GiB, KB, MB, GB.
        /// With --from: the file's size unless given (then at least it).
        #[arg(long, value_parser = units::parse_size, required_unless_present = "from", allow_hyphen_values = true)]
        size: Option<u64>,
        /// Fill the new object with FILE's bytes (it must not exist yet);
        /// nothing is created if the file cannot be read whole.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["sysv", "key", "ftok", "private", "exclusive"])]
        from: Option<std::path::PathBuf>,
        /// Permission bits in octal.
        #[arg(long, default_value = "0600", value_parser = units::parse_mode)]
        mode: u32,
        /// Fail if the object exists (O_EXCL). Without it, an existing object
        /// of the same size is accepted and one of another size is an error.
        #[arg(long)]
        exclusive: bool,
        #[command(flatten)]
        sysv: sysv_cmds::CreateArgs,
    },
    /// Write TEXT (or standard input) into an object, adding no NUL.
    #[command(after_help = target::HELP)]
    Write {
        /// Object name, id:SHMID or key:KEY.
        #[arg(value_name = "TARGET")]
        name: String,
        /// Byte offset to write at.
        #[arg(long, default_value = "0", value_parser = units::parse_size)]
        offset: u64,
        /// The text; standard input when absent.
        text: Option<String>,
        /// Write even into a shmkit channel, board or broadcast (whose
        /// header and state raw bytes would overwrite).
        #[arg(long)]
        force: bool,
    },
    /// Copy bytes between a file (or standard input/output) and a shared
    /// memory object or segment, in either direction.
    #[command(after_help = copy::HELP)]
    Cp {
        /// Where the bytes come from.
        src: String,
        /// Where they go.
        dst: String,
        /// Permission bits in octal of an object the copy creates.
        #[arg(long, default_value = "0600", value_parser = units::parse_mode)]
        mode: u32,
        /// Copy into a shmkit channel, board or broadcast too (whose header
        /// and state raw bytes would overwrite).
        #[arg(long)]
        force: bool,
    },
    /// Copy an object's bytes to standard output.
    #[command(after_help = target::HELP)]
    Cat(ReadArgs),
    /// Show an object's bytes as hex and ASCII.
    #[command(after_help = target::HELP)]
    Dump(ReadArgs),
    /// Show one object's size, mode, owner, times and mappers.
    #[command(after_help = target::HELP)]
    Stat {
        /// Object name, id:SHMID or key:KEY.
        #[arg(value_name = "TARGET")]
        name: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List the POSIX objects and System V segments on this machine.
    #[command(
        after_help = "Examples:\n  shmkit ls -o name,object,size,stale,mapped-by --sort size\n  shmkit ls --raw --noheadings -o name,bytes --user alice\n  shmkit ls -u                       totals, /dev/shm use, what is stale\n  shmkit ls --sem --dir /dev/hugepages\n  shmkit ls -o help                  every column"
    )]
    Ls(ls::LsArgs),
    /// Change the permission bits (fchmod, or IPC_SET for a segment).
    #[command(after_help = target::HELP)]
    Chmod {
        /// Object name, id:SHMID or key:KEY.
        target: String,
        /// Permission bits in octal.
        #[arg(value_parser = units::parse_mode)]
        mode: u32,
    },
    /// Change the owner and/or group (fchown, or IPC_SET for a segment).
    #[command(after_help = target::HELP)]
    Chown {
        /// Object name, id:SHMID or key:KEY.
        target: String,
        /// USER, USER:GROUP, USER: (the user's login group) or :GROUP;
        /// names or numbers.
        #[arg(value_name = "USER[:GROUP]")]
        owner: String,
    },
    /// Show the kernel's System V limits, what segments use, and /dev/shm's size.
    Limits {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Change an object's size: growing keeps the data, shrinking drops the
    /// tail. Shrinking a shmkit channel, board or broadcast, or any object
    /// that a running process maps, is refused without --force: every
    /// process touching the lost tail would die of SIGBUS.
    Resize {
        /// Object name.
        name: String,
        /// New size in bytes (suffixes as for `create`).
        #[arg(value_parser = units::parse_size)]
        size: u64,
        /// Shrink even a shmkit object or one that processes map.
        #[arg(long)]
        force: bool,
    },
    /// Remove objects and segments; processes that map them keep them until
    /// they unmap (a segment is marked for removal until its last detach).
    #[command(after_help = target::HELP)]
    Rm {
        /// Object names, id:SHMID or key:KEY.
        #[arg(required = true, value_name = "TARGET")]
        names: Vec<String>,
    },
    /// Channel commands: create a channel, show its state.
    #[command(subcommand)]
    Chan(ChanCommand),
    /// Send each line of standard input as one message (or N numbered
    /// messages `TAG I`), creating the channel with defaults if absent
    /// (and saying so on standard error).
    Produce {
        /// Channel name.
        name: String,
        /// Send this many numbered messages instead of standard input.
        #[arg(long)]
        count: Option<u64>,
        /// The TAG of numbered messages (default: this process's pid).
        #[arg(long)]
        tag: Option<String>,
        #[command(flatten)]
        chan: ChanArgs,
    },
    /// Print each message as a line, until N messages or until every
    /// producer is gone (it waits for the first one; with --follow for each
    /// next one too). The channel must exist unless --create is given.
    /// Exit status: 0 done, 1 an error (producers gone before N messages),
    /// 124 --timeout ran out.
    #[command(
        after_help = "Examples:\n  shmkit consume /jobs --count 10 --timeout 5s\n  shmkit consume /jobs --follow            every message of every producer, until killed\n  shmkit consume /jobs --create --capacity 64 --max-msg 4K"
    )]
    Consume {
        /// Channel name.
        name: String,
        /// Stop after this many messages (an error if the producers leave first).
        #[arg(long)]
        count: Option<u64>,
        /// Write each line as soon as it is received (one write per message)
        /// instead of when the channel runs empty.
        #[arg(long)]
        unbuffered: bool,
        #[command(flatten)]
        receive: waiting::ReceiveArgs,
        #[command(flatten)]
        chan: ChanArgs,
    },
    /// Blackboard commands: create a board, set its value, get (or watch) it.
    #[command(subcommand)]
    Board(board::BoardCommand),
    /// Publish each line of standard input as one broadcast message (or N
    /// numbered messages `TAG I`), creating the broadcast if absent (and
    /// saying so on standard error). Never
    /// waits for subscribers: the oldest messages are overwritten; with
    /// --lossless, waits for the slowest live subscriber instead.
    Pub {
        /// Broadcast name.
        name: String,
        /// Send this many numbered messages instead of standard input.
        #[arg(long)]
        count: Option<u64>,
        /// The TAG of numbered messages (default: this process's pid).
        #[arg(long)]
        tag: Option<String>,
        #[command(flatten)]
        bcast: board::BcastArgs,
    },
    /// Print each broadcast message published from now on as a line, and
    /// `lagged: missed N messages` on standard error when the ring
    /// overwrote some first (it then resumes half a ring behind the newest
    /// message); until N messages are accounted for (printed or missed)
    /// or, without --count, the writer is gone (it waits for the first
    /// writer; with --follow for each next one too). The broadcast must
    /// exist unless --create is given. Exit status: 0 done, 1 an error,
    /// 124 --timeout ran out.
    #[command(
        after_help = "Examples:\n  shmkit sub /ticks --create --count 10 --timeout 5s\n  shmkit sub /ticks --follow --unbuffered       every writer's messages, until killed\n  shmkit sub /ticks --from-oldest               what the ring still holds, then new ones"
    )]
    Sub {
        /// Broadcast name.
        name: String,
        /// Stop after this many messages, printed or missed (an error if
        /// the writer leaves first).
        #[arg(long)]
        count: Option<u64>,
        /// Start with the oldest messages still in the ring.
        #[arg(long)]
        from_oldest: bool,
        /// Write each line as soon as it is received.
        #[arg(long)]
        unbuffered: bool,
        #[command(flatten)]
        receive: waiting::ReceiveArgs,
        #[command(flatten)]
        bcast: board::BcastArgs,
    },
    /// Walk the textbook flow: create, write from one process, read from
    /// another, list, remove; then a producer and a consumer process over a
    /// channel, with the messages per second they reach.
    Demo {
        /// Messages the channel part of the demo sends.
        #[arg(long, default_value = "1000000")]
        messages: u64,
    },
    /// Find stale shared memory (nobody maps it, its creator is dead, or
    /// with --older-than unchanged that long) and, with --remove, remove
    /// it. Exit status: 0 nothing stale (or all of it removed), 2 stale
    /// objects found (dry run), 1 an error or a removal that failed.
    #[command(
        after_help = "Examples:\n  shmkit gc                          list what is stale (dry run)\n  shmkit gc --remove                 remove it, re-checking each object first\n  shmkit gc --older-than 7d --name 'myapp-*' -f\n  shmkit gc --json | jq '.objects[].name'"
    )]
    Gc(gc::GcArgs),
    /// A live view of every shmkit channel, board and broadcast: depth,
    /// capacity, messages per second in and out, endpoints (alive or
    /// dead), subscriber lag, stale objects marked.
    #[command(
        after_help = "Keys: q quits, arrows or j/k select, s changes the sort, Enter shows one object.\n\nExamples:\n  shmkit top\n  shmkit top --once --interval 500ms\n  shmkit top --json | jq '.objects[] | select(.stale)'"
    )]
    Top(top::TopArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(
        after_help = "Install:\n  shmkit completions bash > ~/.local/share/bash-completion/completions/shmkit\n  shmkit completions zsh > ~/.zfunc/_shmkit      (with fpath+=~/.zfunc)\n  shmkit completions fish > ~/.config/fish/completions/shmkit.fish"
    )]
    Completions(completions::CompletionArgs),
    /// Print the manual page shmkit.1, or with --dir write it and one page
    /// per verb (shmkit-ls.1, shmkit-gc.1, ...).
    #[command(
        after_help = "Install:\n  shmkit man --dir ~/.local/share/man/man1 && man shmkit-gc"
    )]
    Man(completions::ManArgs),
    /// Measure latency and throughput of IPC transports between processes.
    #[cfg(feature = "bench")]
    Bench(bench::BenchArgs),
    // --- issue 14: Zenoh bridge ---
    /// Bridge a channel, broadcast or board between hosts over Zenoh:
    /// `shmkit bridge export NAME --key KEYEXPR`, `shmkit bridge import
    /// KEYEXPR --into NAME` (runs `shmkit-bridge`, crate shmkit-zenoh,
    /// found beside shmkit or on PATH; `shmkit bridge --help` is its help).
    #[command(disable_help_flag = true)]
    Bridge {
        /// Arguments for shmkit-bridge.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    // --- end issue 14 ---
    /// One process of a benchmark, started by `shmkit bench` (internal).
    #[cfg(feature = "bench")]
    #[command(hide = true)]
    BenchChild {
        /// The child's specification, written by the harness.
        #[arg(allow_hyphen_values = true)]
        spec: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum ChanCommand {
    /// Create a channel; fails if the name exists.
    Create {
        /// Channel name.
        name: String,
        #[command(flatten)]
        chan: ChanArgs,
    },
    /// Free the entries of producers and consumers whose processes died.
    Reap {
        /// Channel name.
        name: String,
    },
    /// Show the queued messages without taking them (nothing in the
    /// channel changes: no endpoint joins, no word is written). Each message
    /// is a line; one that is not text (or any message of a typed channel)
    /// is shown as its length and hex bytes.
    #[command(
        after_help = "Examples:\n  shmkit chan peek /jobs                 the next 10 messages\n  shmkit chan peek /jobs --count 100 --hex\n  shmkit chan peek /jobs -0 | xargs -0 -n1 echo\n  shmkit chan peek /jobs --json | jq '.messages[].len'"
    )]
    Peek {
        /// Channel name.
        name: String,
        /// Show at most this many messages, oldest first.
        #[arg(long, default_value = "10")]
        count: usize,
        /// Show each message as a `POSITION: N bytes` line and a hex dump
        /// (the `hexdump -C` shape, offsets within the message).
        #[arg(long, conflicts_with = "nul")]
        hex: bool,
        /// Write each message's raw bytes followed by a NUL byte, for
        /// `xargs -0` and other tools.
        #[arg(short = '0', long = "null", id = "nul")]
        nul: bool,
        /// Print one JSON document: `{"name", "depth", "messages": [...]}`,
        /// each message `{"position", "len", "hex"}` plus `"text"` when it
        /// is plain text on an untyped channel.
        #[arg(long, conflicts_with_all = ["hex", "nul"])]
        json: bool,
    },
    /// Show capacity, depth, counts and the connected producers and consumers.
    Stat {
        /// Channel name.
        name: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// Parameters of a channel, used when one is created.
#[derive(clap::Args, Debug)]
struct ChanArgs {
    /// Messages the channel holds (rounded up to a power of two).
    #[arg(long, default_value = "1024")]
    capacity: usize,
    /// Largest message in bytes (suffixes as for sizes).
    #[arg(long, default_value = "1024", value_parser = units::parse_size)]
    max_msg: u64,
    /// Permission bits in octal.
    #[arg(long, default_value = "0600", value_parser = units::parse_mode)]
    mode: u32,
    /// One producer and one consumer at a time: the faster single-producer
    /// single-consumer ring (a second one is refused while the first lives).
    #[arg(long)]
    spsc: bool,
    /// One producer and one consumer at a time over the framed byte ring:
    /// messages end to end (a short one takes its own size, not a slot),
    /// batches published with one store; the fastest for streams. Implies
    /// --spsc.
    #[arg(long)]
    stream: bool,
}

impl ChanArgs {
    fn options(&self) -> shmkit::channel::ChannelOptions {
        let mut o = chan::options(
            self.capacity,
            self.max_msg.min(usize::MAX as u64) as usize,
            self.mode,
        );
        o.spsc(self.spsc).stream(self.stream);
        o
    }
}

#[derive(clap::Args, Debug)]
struct ReadArgs {
    /// Object name, id:SHMID or key:KEY.
    #[arg(value_name = "TARGET")]
    name: String,
    /// First byte to read.
    #[arg(long, default_value = "0", value_parser = units::parse_size)]
    offset: u64,
    /// Number of bytes (default: to the end).
    #[arg(long, value_parser = units::parse_size)]
    len: Option<u64>,
}

fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<u8> {
    foreign::allow(cli.allow_foreign);
    match cli.command {
        Command::Create {
            name,
            size,
            mode,
            exclusive,
            from,
            sysv,
        } => match (name, from) {
            (Some(name), Some(file)) => target::check_creatable(&name)
                .and_then(|()| copy::create_from_file(&name, &file, size, mode)),
            (Some(name), None) => target::check_creatable(&name).and_then(|()| {
                commands::create(&name, size.expect("clap requires --size"), mode, exclusive)
            }),
            (None, _) => sysv_cmds::create(
                out,
                &sysv.source,
                size.expect("clap requires --size"),
                mode,
                exclusive,
            ),
        },
        Command::Cp {
            src,
            dst,
            mode,
            force,
        } => copy::cp(&src, &dst, mode, force),
        Command::Write {
            name,
            offset,
            text,
            force,
        } => commands::write(&Target::parse(&name)?, offset, text, force),
        Command::Cat(a) => commands::cat(out, &Target::parse(&a.name)?, a.offset, a.len),
        Command::Dump(a) => commands::dump(out, &Target::parse(&a.name)?, a.offset, a.len),
        Command::Stat { name, json } => commands::stat(out, &name, json),
        Command::Ls(args) => ls::run(out, args),
        Command::Chmod { target, mode } => ownership::chmod(&target, mode),
        Command::Chown { target, owner } => ownership::chown(&target, &owner),
        Command::Limits { json } => sysv_cmds::limits(out, json),
        Command::Resize { name, size, force } => commands::resize(&name, size, force),
        Command::Rm { names } => commands::rm(&names),
        Command::Chan(ChanCommand::Create { name, chan }) => {
            target::check_creatable(&name)?;
            chan::create(&name, &chan.options())
        }
        Command::Chan(ChanCommand::Stat { name, json }) => chan::stat(out, &name, json),
        Command::Chan(ChanCommand::Reap { name }) => chan::reap(out, &name),
        Command::Chan(ChanCommand::Peek {
            name,
            count,
            hex,
            nul,
            json,
        }) => {
            let style = if json {
                chan::PeekStyle::Json
            } else if hex {
                chan::PeekStyle::Hex
            } else if nul {
                chan::PeekStyle::Nul
            } else {
                chan::PeekStyle::Lines
            };
            chan::peek(out, &name, count, style)
        }
        Command::Produce {
            name,
            count,
            tag,
            chan,
        } => {
            target::check_creatable(&name)?;
            chan::produce(&name, count, tag, &chan.options())
        }
        Command::Consume {
            name,
            count,
            unbuffered,
            receive,
            chan,
        } => {
            target::check_creatable(&name)?;
            let args = chan::ConsumeArgs {
                count,
                unbuffered,
                receive,
            };
            chan::consume(out, &name, &args, &chan.options())
        }
        Command::Board(cmd) => board::board(out, cmd),
        Command::Pub {
            name,
            count,
            tag,
            bcast,
        } => {
            target::check_creatable(&name)?;
            board::publish(&name, count, tag, &bcast)
        }
        Command::Sub {
            name,
            count,
            from_oldest,
            unbuffered,
            receive,
            bcast,
        } => {
            target::check_creatable(&name)?;
            let args = board::SubscribeArgs {
                count,
                from_oldest,
                unbuffered,
                receive,
            };
            board::subscribe(out, &name, &args, &bcast)
        }
        Command::Demo { messages } => demo::run(out, messages),
        Command::Gc(args) => gc::run(out, args),
        Command::Top(args) => top::run(out, args),
        Command::Completions(args) => completions::completions(out, &args),
        Command::Man(args) => completions::man(out, &args),
        #[cfg(feature = "bench")]
        Command::Bench(args) => bench::run(out, args),
        #[cfg(feature = "bench")]
        Command::BenchChild { spec } => Ok(shmkit_bench::child_main(&spec) as u8),
        // issue 14
        Command::Bridge { args } => bridge::exec(&args),
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
            // Names come from anyone (a file in /dev/shm, a header):
            // control characters are shown escaped, never sent raw.
            eprintln!("shmkit: {}", show::escape_controls(&format!("{e:#}")));
            ExitCode::from(1)
        }
    }
}
