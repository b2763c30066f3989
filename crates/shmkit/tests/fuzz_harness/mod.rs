//! The fuzzing harness of the object core, shared by the stable-toolchain
//! driver (`tests/fuzz_core.rs`) and the cargo-fuzz targets (`fuzz/`):
//! seed images of real objects of every kind, a structured mutator that
//! overwrites their control words, and `exercise`, which opens a (possibly
//! corrupted) object and runs every operation of its kind against it, each
//! bounded by a short timeout.
//!
//! What a run must show (checked by the callers): no panic, no hang, no
//! huge allocation, and no fabricated message: every message, value or
//! broadcast read back is one some process really sent (`is_known`). The
//! seeds write every slot at least once and the mutator leaves lengths and
//! payloads alone, so even a stale slot a hostile word points at holds a
//! real message; a message nobody sent can only be the library's invention.
#![allow(dead_code)]

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use shmkit::board::{Board, BoardOptions};
use shmkit::broadcast::{Broadcast, BroadcastOptions, Received};
use shmkit::channel::{Channel, ChannelOptions};

/// The largest object image a fuzz input plants.
pub const OBJECT_MAX: usize = 64 << 10;

/// How long each wait in `exercise` lasts by default: a case costs
/// milliseconds. The fuzz targets wait less (`exercise_waiting`).
pub const SHORT: Duration = Duration::from_millis(5);

/// The object kinds, in the order a fuzz input's first byte selects them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Channel,
    SpscChannel,
    Board,
    Broadcast,
    /// A channel over the framed byte ring (`ChannelOptions::stream`).
    StreamChannel,
}

pub const KINDS: [Kind; 5] = [
    Kind::Channel,
    Kind::SpscChannel,
    Kind::Board,
    Kind::Broadcast,
    Kind::StreamChannel,
];

impl Kind {
    pub fn from_byte(b: u8) -> Kind {
        KINDS[usize::from(b) % KINDS.len()]
    }

    pub fn tag(self) -> &'static str {
        match self {
            Kind::Channel => "channel",
            Kind::SpscChannel => "spsc",
            Kind::Board => "board",
            Kind::Broadcast => "broadcast",
            Kind::StreamChannel => "stream",
        }
    }
}

/// A message, value or broadcast some process really sent: `PPnnnnC`, a
/// two-letter prefix (`fz` from a seed, `ex` from `exercise`), four digits
/// and a check letter over them.
pub fn known_message(prefix: &str, i: u32) -> Vec<u8> {
    let digits = format!("{:04}", i % 10_000);
    let check = b'a' + (digits.bytes().map(u32::from).sum::<u32>() % 26) as u8;
    let mut m = format!("{prefix}{digits}").into_bytes();
    m.push(check);
    m
}

pub fn is_known(m: &[u8]) -> bool {
    if m.len() != 7 || !(m.starts_with(b"fz") || m.starts_with(b"ex")) {
        return false;
    }
    let Ok(digits) = std::str::from_utf8(&m[2..6]) else {
        return false;
    };
    let Ok(i) = digits.parse::<u32>() else {
        return false;
    };
    known_message(std::str::from_utf8(&m[..2]).unwrap(), i) == m
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A unique object name for this process, removed from /dev/shm on drop.
pub struct Planted {
    pub name: String,
}

impl Planted {
    pub fn name(kind: Kind) -> Planted {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Planted {
            name: format!(
                "/shmkit-test-{}-{n}-fuzz-{}",
                std::process::id(),
                kind.tag()
            ),
        }
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/dev/shm").join(&self.name[1..])
    }

    /// Writes `bytes` as a new 0600 object under this name.
    pub fn plant(kind: Kind, bytes: &[u8]) -> Planted {
        let p = Planted::name(kind);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(p.path())
            .expect("plant an object in /dev/shm");
        f.write_all(bytes).expect("write the planted object");
        p
    }

    /// Overwrites the object's bytes (same length) in place.
    pub fn rewrite(&self, bytes: &[u8]) {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(self.path())
            .expect("reopen the planted object");
        f.set_len(bytes.len() as u64).unwrap();
        f.write_all_at(bytes, 0).unwrap();
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path());
    }
}

/// A real object's bytes and the word offsets the mutator may overwrite:
/// the header and tables (`header_end` bytes) and each slot's first word
/// (its state or sequence), never a length or a payload.
#[derive(Debug, Clone)]
pub struct Image {
    pub kind: Kind,
    /// Whether some slots were never written (`fresh_seed`).
    pub fresh: bool,
    pub bytes: Vec<u8>,
    pub control: Vec<usize>,
    /// The control words traffic sets: non-zero here, or different in the
    /// other seed of the same kind (positions, identities, counters). Most
    /// header bytes are padding; the mutator picks these more often.
    pub live: Vec<usize>,
}

impl Image {
    fn word(&self, off: usize) -> u64 {
        self.bytes
            .get(off..off + 8)
            .map_or(0, |w| u64::from_ne_bytes(w.try_into().unwrap()))
    }

    /// Marks as live the control words that are non-zero here or differ
    /// in `other`.
    fn find_live(&mut self, other: Option<&Image>) {
        self.live = self
            .control
            .iter()
            .copied()
            .filter(|&off| {
                self.word(off) != 0 || other.is_some_and(|o| o.word(off) != self.word(off))
            })
            .collect();
    }
}

/// Where the header and tables of a kind end (the first slot), as the
/// seeds in `make_seed` are built: capacity 4 (channels, broadcasts) or a
/// 32-byte board.
pub fn header_end(kind: Kind) -> usize {
    match kind {
        Kind::Channel | Kind::SpscChannel | Kind::StreamChannel => 4864,
        Kind::Board => 512,
        Kind::Broadcast => 8704,
    }
}

/// The channels the harness makes: 4 messages of up to 16 bytes.
pub fn channel_options(kind: Kind) -> ChannelOptions {
    let mut o = ChannelOptions::new();
    o.capacity(4)
        .max_message(16)
        .spsc(kind == Kind::SpscChannel)
        .stream(kind == Kind::StreamChannel);
    o
}

/// Makes a real object of `kind` with traffic that wrote every slot at
/// least once, and returns its bytes. Its endpoints have left.
pub fn seed(kind: Kind) -> Image {
    make_seed(kind, false)
}

/// A channel or broadcast that carried one message: the other slots were
/// never written (length 0). Only its header words may be mutated, so a
/// message from a never-written slot, empty, is one the library made up
/// (as an SPSC `dequeue` of `u64::MAX` once did, issue 15 defect 8).
pub fn fresh_seed(kind: Kind) -> Image {
    assert!(kind != Kind::Board, "a board's slots carry no version");
    make_seed(kind, true)
}

/// Every seed the driver mutates: a used and a fresh one of each kind
/// (a used one only, for boards).
pub fn all_seeds() -> Vec<Image> {
    let mut all: Vec<Image> = KINDS.iter().map(|&k| seed(k)).collect();
    all.extend(
        [
            Kind::Channel,
            Kind::SpscChannel,
            Kind::Broadcast,
            Kind::StreamChannel,
        ]
        .iter()
        .map(|&k| fresh_seed(k)),
    );
    for i in 0..all.len() {
        let other = all
            .iter()
            .position(|o| o.kind == all[i].kind && o.fresh != all[i].fresh)
            .map(|j| all[j].clone());
        all[i].find_live(other.as_ref());
    }
    all
}

fn make_seed(kind: Kind, fresh: bool) -> Image {
    let sends = if fresh { 1 } else { 6 };
    let p = Planted::name(kind);
    let name = p.name.as_str();
    let (header_end, slots) = match kind {
        Kind::Channel | Kind::SpscChannel | Kind::StreamChannel => {
            let ch = Channel::create(name, &channel_options(kind)).unwrap();
            let mut tx = ch.sender().unwrap();
            let mut rx = ch.receiver().unwrap();
            for i in 0..sends.min(4) {
                tx.send(&known_message("fz", i)).unwrap();
            }
            if !fresh {
                for _ in 0..2 {
                    assert!(is_known(&rx.recv().unwrap()));
                }
                for i in 4..sends {
                    tx.send(&known_message("fz", i)).unwrap();
                }
            }
            // A stream's ring is records end to end, not slots with a
            // state word: only its header is mutated.
            let slots = (kind != Kind::StreamChannel).then_some(4);
            (header_end(kind), slots)
        }
        Kind::Board => {
            let b = Board::create(name, BoardOptions::new().max_size(32)).unwrap();
            let mut w = b.writer().unwrap();
            for i in 0..3 {
                w.write(&known_message("fz", i)).unwrap();
            }
            (header_end(kind), None)
        }
        Kind::Broadcast => {
            let b = Broadcast::create(name, BroadcastOptions::new().capacity(4).max_message(16))
                .unwrap();
            let mut sub = b.subscribe().unwrap();
            let mut publisher = b.publisher().unwrap();
            for i in 0..sends {
                publisher.send(&known_message("fz", i)).unwrap();
            }
            let _ = sub.try_recv();
            (header_end(kind), Some(4))
        }
    };
    let bytes = std::fs::read(p.path()).unwrap();
    let mut control: Vec<usize> = (0..header_end / 8).map(|w| w * 8).collect();
    if let Some(capacity) = slots.filter(|_| !fresh) {
        let slot_size = (bytes.len() - header_end) / capacity;
        control.extend((0..capacity).map(|i| header_end + i * slot_size));
    }
    let mut image = Image {
        kind,
        fresh,
        bytes,
        control,
        live: Vec::new(),
    };
    image.find_live(None);
    image
}

/// splitmix64, so that a seed replays the same cases everywhere.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A word an attacker would try, given the one it replaces: the edges of
/// every width, small numbers, powers of two, neighbours and bit flips of
/// the true value (positions a lap away, identities of other processes),
/// or random bits; `choice` and `bits` pick which.
pub fn hostile_word(was: u64, choice: u64, bits: u64) -> u64 {
    let shift = bits % 64;
    match choice % 12 {
        0 => 0,
        1 => u64::MAX,
        2 => 1 << shift,
        3 => (1 << shift) - 1,
        4 => bits % 70,
        5 => was.wrapping_add(bits % 9).wrapping_sub(4),
        6 => was ^ (1 << shift),
        7 => was.wrapping_add(4),
        8 => was.wrapping_sub(4),
        9 => u64::from(u32::MAX) << (32 * (bits % 2)),
        10 => (i64::MAX as u64).wrapping_add(bits % 3),
        _ => bits,
    }
}

/// One overwritten word: (byte offset, new value).
pub type Mutation = (usize, u64);

/// Writes `mutations` over a copy of `image`.
pub fn mutate(image: &Image, mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = image.bytes.clone();
    for &(off, value) in mutations {
        bytes[off..off + 8].copy_from_slice(&value.to_ne_bytes());
    }
    bytes
}

/// `count` random mutations of `image`'s control words.
pub fn random_mutations(image: &Image, rng: &mut Rng, count: usize) -> Vec<Mutation> {
    (0..count)
        .map(|_| {
            let pool = if rng.below(4) != 0 && !image.live.is_empty() {
                &image.live
            } else {
                &image.control
            };
            let off = pool[rng.below(pool.len() as u64) as usize];
            let was = u64::from_ne_bytes(image.bytes[off..off + 8].try_into().unwrap());
            (off, hostile_word(was, rng.next(), rng.next()))
        })
        .collect()
}

/// Mutations read from fuzzer bytes, up to 8 of 10 bytes each: a
/// little-endian u16 choosing the word (low 14 bits; bit 15: among the
/// live words, else among all control words) and a u64 for its new value
/// (bit 14 set: `hostile_word` of the old value, drawn from that u64, so
/// the fuzzer reaches "a lap away" without guessing whole words).
pub fn mutations_from_bytes(image: &Image, data: &[u8]) -> Vec<Mutation> {
    data.chunks_exact(10)
        .take(8)
        .map(|c| {
            let which = u16::from_le_bytes([c[0], c[1]]);
            let pool = if which & 0x8000 != 0 && !image.live.is_empty() {
                &image.live
            } else {
                &image.control
            };
            let off = pool[usize::from(which & 0x3fff) % pool.len()];
            let raw = u64::from_le_bytes(c[2..10].try_into().unwrap());
            let was = u64::from_ne_bytes(image.bytes[off..off + 8].try_into().unwrap());
            let value = if which & 0x4000 == 0 {
                raw
            } else {
                hostile_word(was, raw, raw >> 8)
            };
            (off, value)
        })
        .collect()
}

/// What one run of `exercise` saw.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Messages, values and broadcasts read back.
    pub messages: Vec<Vec<u8>>,
    /// Calls made, and how many of them returned an error.
    pub calls: usize,
    pub errors: usize,
}

impl Outcome {
    fn note<T>(&mut self, r: shmkit::Result<T>) -> Option<T> {
        self.calls += 1;
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors += 1;
                // The error's text is built from the object's words too.
                std::hint::black_box(e.to_string());
                None
            }
        }
    }

    /// The first message nobody sent, if any (an empty one included).
    pub fn fabricated(&self) -> Option<&Vec<u8>> {
        self.messages.iter().find(|m| !is_known(m))
    }
}

/// Opens the object `name` as `kind` and runs every operation of that kind
/// against it, each wait bounded by a few milliseconds.
pub fn exercise(kind: Kind, name: &str) -> Outcome {
    exercise_waiting(kind, name, SHORT)
}

/// `exercise` with each wait bounded by `wait`.
pub fn exercise_waiting(kind: Kind, name: &str, wait: Duration) -> Outcome {
    let mut out = Outcome::default();
    match kind {
        Kind::Channel | Kind::SpscChannel | Kind::StreamChannel => {
            exercise_channel(name, wait, &mut out)
        }
        Kind::Board => exercise_board(name, wait, &mut out),
        Kind::Broadcast => exercise_broadcast(name, wait, &mut out),
    }
    out
}

fn exercise_channel(name: &str, wait: Duration, out: &mut Outcome) {
    let Some(ch) = out.note(Channel::open(name)) else {
        return;
    };
    std::hint::black_box(format!("{:?}", ch.stats()));
    let mut rx = out.note(ch.receiver());
    if let Some(rx) = rx.as_mut() {
        if let Some(m) = out.note(rx.try_recv()) {
            out.messages.push(m);
        }
        if let Some(m) = out.note(rx.recv_timeout(wait)) {
            out.messages.push(m);
        }
        let mut batch = Vec::new();
        out.note(
            rx.recv_batch(3, Some(std::time::Instant::now() + wait), |slot| {
                batch.push(slot.to_vec());
                Ok(())
            }),
        );
        out.messages.extend(batch);
        if let Some(slot) = out.note(rx.try_recv_slot()) {
            let mut buf = vec![0; slot.len()];
            if out.note(slot.read_at(0, &mut buf)).is_some() {
                out.messages.push(buf);
            }
        }
    }
    if let Some(mut tx) = out.note(ch.sender()) {
        out.note(tx.try_send(&known_message("ex", 1)));
        out.note(tx.send_timeout(&known_message("ex", 2), wait));
        if let Some(mut slot) = out.note(tx.reserve_deadline(std::time::Instant::now() + wait)) {
            let m = known_message("ex", 3);
            if out.note(slot.write_at(0, &m)).is_some() {
                out.note(slot.commit(m.len()));
            }
        }
        if let Some(rx) = rx.as_mut() {
            for _ in 0..6 {
                match out.note(rx.recv_timeout(wait)) {
                    Some(m) => out.messages.push(m),
                    None => break,
                }
            }
        }
        drop(tx);
    }
    // Every sender gone: the receiver drains what is left, then learns it.
    if let Some(rx) = rx.as_mut() {
        for _ in 0..6 {
            match out.note(rx.recv_timeout(wait)) {
                Some(m) => out.messages.push(m),
                None => break,
            }
        }
    }
    drop(rx);
    std::hint::black_box(format!("{:?}", ch.stats()));
}

fn exercise_board(name: &str, wait: Duration, out: &mut Outcome) {
    let Some(board) = out.note(Board::open(name)) else {
        return;
    };
    std::hint::black_box(format!("{:?}", board.stats()));
    let version = board.version();
    if let Some((value, _)) = out.note(board.read()) {
        out.messages.push(value);
    }
    if let Some((value, _)) = out.note(board.wait_for_change(version, Some(wait))) {
        out.messages.push(value);
    }
    if let Some(mut writer) = out.note(board.writer()) {
        out.note(writer.write(&known_message("ex", 1)));
        let mut w = writer.begin();
        let m = known_message("ex", 2);
        if out.note(w.write_at(0, &m)).is_some() {
            out.note(w.commit(m.len()));
        }
    }
    if let Some((value, _)) = out.note(board.read()) {
        out.messages.push(value);
    }
    std::hint::black_box(format!("{:?}", board.stats()));
}

fn exercise_broadcast(name: &str, wait: Duration, out: &mut Outcome) {
    let Some(cast) = out.note(Broadcast::open(name)) else {
        return;
    };
    std::hint::black_box(format!("{:?}", cast.stats()));
    std::hint::black_box(cast.published());
    let mut subs: Vec<_> = [cast.subscribe(), cast.subscribe_from_oldest()]
        .into_iter()
        .filter_map(|s| out.note(s))
        .collect();
    let take = |out: &mut Outcome, subs: &mut Vec<shmkit::broadcast::Subscriber>| {
        for sub in subs.iter_mut() {
            for _ in 0..6 {
                match out.note(sub.recv_timeout(wait)) {
                    Some(Received::Message { value, .. }) => out.messages.push(value),
                    Some(Received::Lagged { missed }) => {
                        std::hint::black_box(missed);
                    }
                    None => break,
                }
            }
            if let Some(Received::Message { value, .. }) = out.note(sub.try_recv()) {
                out.messages.push(value);
            }
        }
    };
    take(out, &mut subs);
    if let Some(mut publisher) = out.note(cast.publisher()) {
        for i in 1..4 {
            out.note(publisher.send(&known_message("ex", i)));
        }
    }
    take(out, &mut subs);
    std::hint::black_box(cast.reap());
    drop(subs);
    std::hint::black_box(format!("{:?}", cast.stats()));
}
