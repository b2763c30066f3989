//! shmkit-zenoh: bridges shmkit channels, broadcasts and boards between
//! hosts over [Zenoh](https://zenoh.io).
//!
//! The binary `shmkit-bridge` runs one route:
//! `shmkit-bridge export NAME --key KEYEXPR` reads a local object and puts
//! its messages on a Zenoh key; `shmkit-bridge import KEYEXPR --into NAME`
//! subscribes and writes them into a local object. See [`bridge`] for what
//! each does and what can be lost in which failure.
//!
//! # Module map
//! - [`bridge`]: the export and import loops.
//! - [`wire`]: the frame format on the Zenoh key.
//! - [`sequence`]: duplicate and gap detection by stream and number.
//! - [`stats`]: the counters and their text and JSON forms.
//! - [`net`]: the Zenoh session: endpoints, config file, scouting.
//! - [`netns`]: network namespaces joined by a veth pair, for tests and
//!   the bench.

pub mod bridge;
pub mod net;
pub mod netns;
pub mod sequence;
pub mod stats;
pub mod wire;
