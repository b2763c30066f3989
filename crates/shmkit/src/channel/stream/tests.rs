//! Unit tests of the byte ring on the heap (one thread, then two).

use super::heap::HeapStream;
use super::*;
use crate::primitive::Ordering;

/// Writes `payload` at data offset `offset` (8-aligned), word by word.
fn write_payload(r: &HeapStream, offset: u64, payload: &[u8]) {
    for (i, chunk) in payload.chunks(8).enumerate() {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        r.header(offset + 8 * i as u64)
            .store(u64::from_le_bytes(word), Ordering::Relaxed);
    }
}

fn read_payload(r: &HeapStream, rec: Record) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..rec.len.div_ceil(8) {
        out.extend_from_slice(
            &r.header(rec.offset + 8 * i)
                .load(Ordering::Relaxed)
                .to_le_bytes(),
        );
    }
    out.truncate(rec.len as usize);
    out
}

/// Message `i`: a length from 0 to 40 and bytes that name it.
fn message(i: u64) -> Vec<u8> {
    let len = (i * 7 % 41) as usize;
    (0..len).map(|k| (i as usize * 31 + k) as u8).collect()
}

fn send(r: &HeapStream, tx: &mut SendCursor, msg: &[u8]) -> Result<(), StreamError> {
    let at = claim_send(r, tx, msg.len() as u64)?;
    write_payload(r, at, msg);
    commit_send(r, tx, msg.len() as u64);
    Ok(())
}

fn recv(r: &HeapStream, rx: &mut RecvCursor) -> Result<Vec<u8>, StreamError> {
    let rec = claim_recv(r, rx, 1 << 20)?;
    let msg = read_payload(r, rec);
    step_recv(r, rx, rec.len);
    Ok(msg)
}

#[test]
fn variable_records_wrap_with_padding_in_order() {
    // 104 bytes: not a power of two, and most laps end in padding.
    let r = HeapStream::new(104);
    let mut tx = resume_send(&r).unwrap();
    let mut rx = resume_recv(&r).unwrap();
    let (mut sent, mut got) = (0u64, 0u64);
    for round in 0..500u64 {
        // A batch of 1 to 4 records, as many as fit, one publish.
        for _ in 0..round % 4 + 1 {
            match send(&r, &mut tx, &message(sent)) {
                Ok(()) => sent += 1,
                Err(StreamError::WouldBlock) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        publish_send(&r, &mut tx);
        // Nothing is visible twice, nothing unpublished is visible.
        loop {
            match recv(&r, &mut rx) {
                Ok(m) => {
                    assert_eq!(m, message(got), "record {got}");
                    got += 1;
                }
                Err(StreamError::WouldBlock) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        publish_recv(&r, &mut rx);
        assert_eq!(got, sent);
        assert_eq!(tx.tail, rx.head);
        assert_eq!(depth_bytes(&r), 0);
    }
    assert!(tx.tail > 50 * 104, "many laps: {}", tx.tail);
}

#[test]
fn a_record_that_needs_padding_fits_an_empty_ring() {
    let r = HeapStream::new(64);
    let mut tx = resume_send(&r).unwrap();
    let mut rx = resume_recv(&r).unwrap();
    send(&r, &mut tx, &[1; 8]).unwrap(); // 16 bytes: the tail at 16
    publish_send(&r, &mut tx);
    assert_eq!(recv(&r, &mut rx).unwrap(), vec![1; 8]);
    publish_recv(&r, &mut rx);
    // 56 bytes of record (48 of payload) do not fit in the 48 to the end:
    // the padding is written and the claim waits for it to be read.
    assert_eq!(claim_send(&r, &mut tx, 48), Err(StreamError::WouldBlock));
    assert_eq!(tx.tail, 64);
    publish_send(&r, &mut tx);
    assert_eq!(recv(&r, &mut rx), Err(StreamError::WouldBlock));
    publish_recv(&r, &mut rx);
    assert_eq!(rx.head, 64, "the padding was stepped over");
    send(&r, &mut tx, &[2; 48]).unwrap();
    publish_send(&r, &mut tx);
    assert_eq!(recv(&r, &mut rx).unwrap(), vec![2; 48]);
    // The largest record is the whole ring; one more byte never fits.
    assert_eq!(claim_send(&r, &mut tx, 57), Err(StreamError::TooLarge));
}

#[test]
fn a_new_producer_writes_over_what_was_not_published() {
    let r = HeapStream::new(128);
    let mut tx = resume_send(&r).unwrap();
    send(&r, &mut tx, b"kept").unwrap();
    publish_send(&r, &mut tx);
    // Killed after framing a record, before publishing it.
    send(&r, &mut tx, b"lost").unwrap();
    let mut tx2 = resume_send(&r).unwrap();
    assert_eq!(tx2.tail, 16);
    send(&r, &mut tx2, b"next!").unwrap();
    publish_send(&r, &mut tx2);
    let mut rx = resume_recv(&r).unwrap();
    assert_eq!(recv(&r, &mut rx).unwrap(), b"kept");
    assert_eq!(recv(&r, &mut rx).unwrap(), b"next!");
    assert_eq!(recv(&r, &mut rx), Err(StreamError::WouldBlock));
}

#[test]
fn a_new_consumer_receives_the_unpublished_batch_again() {
    let r = HeapStream::new(128);
    let mut tx = resume_send(&r).unwrap();
    for m in [&b"a"[..], b"b", b"c"] {
        send(&r, &mut tx, m).unwrap();
    }
    publish_send(&r, &mut tx);
    let mut rx = resume_recv(&r).unwrap();
    assert_eq!(recv(&r, &mut rx).unwrap(), b"a");
    publish_recv(&r, &mut rx);
    assert_eq!(recv(&r, &mut rx).unwrap(), b"b");
    assert!(rx.unpublished());
    // Killed mid-batch: "b" was read, not published as read.
    let mut rx2 = resume_recv(&r).unwrap();
    assert_eq!(recv(&r, &mut rx2).unwrap(), b"b");
    assert_eq!(recv(&r, &mut rx2).unwrap(), b"c");
}

#[test]
fn damaged_words_are_reported_not_followed() {
    let corrupt = |e| matches!(e, Err(StreamError::Corrupt(_)));
    // Positions: out of order, too far apart, misaligned, past the limit.
    for (tail, head) in [(8, 16), (200, 0), (12, 0), (MAX_POSITION, MAX_POSITION - 8)] {
        let r = HeapStream::new(128);
        r.tail.store(tail, Ordering::Relaxed);
        r.head.store(head, Ordering::Relaxed);
        assert!(corrupt(resume_recv(&r).map(|_| ())), "{tail} {head}");
        assert!(corrupt(resume_send(&r).map(|_| ())), "{tail} {head}");
    }
    // A tail published later that breaks the rules.
    let r = HeapStream::new(128);
    let mut rx = resume_recv(&r).unwrap();
    r.tail.store(1 << 40, Ordering::Relaxed);
    assert!(corrupt(claim_recv(&r, &mut rx, 64).map(|_| ())));
    // A head that moves backwards or past the tail.
    let r = HeapStream::new(128);
    let mut tx = resume_send(&r).unwrap();
    for _ in 0..8 {
        send(&r, &mut tx, &[0; 8]).unwrap();
    }
    r.head.store(136, Ordering::Relaxed);
    assert!(corrupt(claim_send(&r, &mut tx, 8).map(|_| ())));
    // Headers: unknown tag, a length over the maximum, past the tail,
    // across the end of the area, a padding that stops short of the end.
    let headers = [
        (0, 0xdead_beef_u64 << 32 | 8),
        (0, TAG_RECORD << 32 | 100),
        (0, TAG_RECORD << 32 | 40),
        (112, TAG_RECORD << 32 | 16),
        (0, TAG_PAD << 32 | 8),
    ];
    for (offset, word) in headers {
        let r = HeapStream::new(128);
        let start = offset;
        r.tail.store(start + 32, Ordering::Relaxed);
        r.head.store(start, Ordering::Relaxed);
        r.header(offset).store(word, Ordering::Relaxed);
        let mut rx = resume_recv(&r).unwrap();
        assert!(
            corrupt(claim_recv(&r, &mut rx, 64).map(|_| ())),
            "{word:#x} at {offset}"
        );
        // The way on: everything published is given up.
        assert_eq!(skip_to_tail(&r, &mut rx), Ok(32));
        assert_eq!(r.head.load(Ordering::Relaxed), start + 32);
        assert_eq!(claim_recv(&r, &mut rx, 64), Err(StreamError::WouldBlock));
    }
}

/// Two threads, a small ring, 200 000 records of 0 to 40 bytes in batches:
/// every one arrives whole and in order.
#[test]
fn two_threads_stream_through_a_small_ring() {
    use std::sync::Arc;
    const N: u64 = 200_000;
    let r = Arc::new(HeapStream::new(136));
    let producer = {
        let r = r.clone();
        std::thread::spawn(move || {
            let mut tx = resume_send(&*r).unwrap();
            let mut i = 0;
            while i < N {
                match send(&r, &mut tx, &message(i)) {
                    Ok(()) => i += 1,
                    Err(StreamError::WouldBlock) => {
                        publish_send(&*r, &mut tx);
                        std::thread::yield_now();
                    }
                    Err(e) => panic!("{e:?}"),
                }
                if i % 5 == 0 {
                    publish_send(&*r, &mut tx);
                }
            }
            publish_send(&*r, &mut tx);
        })
    };
    let mut rx = resume_recv(&*r).unwrap();
    let mut got = 0;
    while got < N {
        match recv(&r, &mut rx) {
            Ok(m) => {
                assert_eq!(m, message(got));
                got += 1;
            }
            Err(StreamError::WouldBlock) => {
                publish_recv(&*r, &mut rx);
                std::thread::yield_now();
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    producer.join().unwrap();
}
