//! Typed channels: a sender, typed or not, refuses a message whose length
//! is not the type's size (on every ring, through every send path), so a
//! receiver never finds one it must call corrupt; `TypedChannel` takes
//! options and has `open_or_create`.

use std::sync::atomic::{AtomicUsize, Ordering};

use shmkit::channel::{Channel, ChannelOptions, TypedChannel};
use shmkit::posix;
use shmkit::ErrorKind;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique channel name, unlinked on drop even when the test fails.
struct Name(String);

impl Name {
    fn new() -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Name(format!("/shmkit-test-{}-typed-{n}", std::process::id()))
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = posix::unlink(&self.0);
    }
}

type Value = [u64; 2];

fn rings() -> Vec<(&'static str, ChannelOptions)> {
    let mut shared = ChannelOptions::new();
    shared.capacity(8);
    let mut spsc = shared.clone();
    spsc.spsc(true);
    let mut stream = shared.clone();
    stream.stream(true);
    vec![("shared", shared), ("spsc", spsc), ("stream", stream)]
}

fn assert_refused(result: shmkit::Result<()>, len: usize, ring: &str) {
    let e = result.expect_err("a wrong length was sent");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{ring}: {e}");
    let text = e.to_string();
    assert!(
        text.contains(&format!("a message of {len} bytes"))
            && text.contains("16-byte typed values"),
        "{ring}: {text}"
    );
}

#[test]
fn an_untyped_sender_refuses_other_lengths_on_a_typed_channel() {
    for (ring, options) in rings() {
        let name = Name::new();
        let typed = TypedChannel::<Value>::create_with_options(&name.0, &options).unwrap();
        // What `shmkit produce` does: the channel opened without its type.
        let raw = Channel::open(&name.0).unwrap();
        let mut tx = raw.sender().unwrap();
        assert_refused(tx.send(b"hi"), 2, ring);
        assert_refused(tx.try_send(&[0; 15]), 15, ring);
        assert_refused(tx.send(&[]), 0, ring);
        assert_refused(tx.send_batch([&[1u8; 16][..], &[2u8; 3][..]]), 3, ring);
        if ring != "stream" {
            let mut slot = tx.reserve().unwrap();
            slot.write_at(0, b"abc").unwrap();
            assert_refused(slot.commit(3), 3, ring);
        }
        // One value's worth goes; the receiver finds exactly the good ones.
        tx.send(&[7; 16]).unwrap();
        let mut rx = typed.receiver().unwrap();
        // send_batch sent its first (good) message before the bad one.
        assert_eq!(
            rx.try_recv().unwrap(),
            [u64::from_ne_bytes([1; 8]); 2],
            "{ring}"
        );
        assert_eq!(
            rx.try_recv().unwrap(),
            [u64::from_ne_bytes([7; 8]); 2],
            "{ring}"
        );
        let e = rx.try_recv().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{ring}: {e}");
    }
}

#[test]
fn an_untyped_channel_still_takes_any_length_up_to_its_maximum() {
    let name = Name::new();
    let mut options = ChannelOptions::new();
    options.capacity(4).max_message(16);
    let ch = Channel::create(&name.0, &options).unwrap();
    let mut tx = ch.sender().unwrap();
    tx.send(b"").unwrap();
    tx.send(b"hi").unwrap();
    tx.send(&[0; 16]).unwrap();
    let e = tx.send(&[0; 17]).unwrap_err();
    assert!(
        e.to_string()
            .contains("exceeds the channel's maximum of 16"),
        "{e}"
    );
}

#[test]
fn open_or_create_makes_the_channel_once_and_checks_the_type() {
    let name = Name::new();
    let mut options = ChannelOptions::new();
    options.capacity(4).mode(0o640);
    let first = TypedChannel::<u32>::open_or_create(&name.0, &options).unwrap();
    let second = TypedChannel::<u32>::open_or_create(&name.0, &options).unwrap();
    first.sender().unwrap().send(&5).unwrap();
    assert_eq!(second.receiver().unwrap().try_recv().unwrap(), 5);
    assert_eq!(first.channel().capacity(), 4);
    let e = TypedChannel::<u64>::open_or_create(&name.0, &options).unwrap_err();
    assert!(e.to_string().contains("aligned"), "{e}");
}
