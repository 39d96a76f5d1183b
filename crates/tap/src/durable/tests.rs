use super::*;

/// A fake parser on a ROUTER socket: the tap's side against it.
struct Parser {
    socket: zmq::Socket,
    route: Vec<u8>,
}

impl Parser {
    fn recv(&mut self) -> Vec<Vec<u8>> {
        assert!(socket::readable(&self.socket, Duration::from_secs(5)).unwrap());
        let mut f = self.socket.recv_multipart(0).unwrap();
        self.route = f.remove(0);
        f
    }

    /// The next line's envelope (skipping hellos).
    fn next_line(&mut self) -> Envelope {
        loop {
            let f = self.recv();
            if f[0] == ingest::LINE {
                return serde_json::from_slice(&f[3]).unwrap();
            }
        }
    }

    fn receipt(&self, committed: u64, resend_from: Option<u64>, epoch: &str) {
        let r = Receipt {
            generation: "g1".into(),
            parser: "p1".into(),
            tap_epoch: epoch.into(),
            committed,
            resend_from,
        };
        self.socket
            .send_multipart([self.route.clone(), serde_json::to_vec(&r).unwrap()], 0)
            .unwrap();
    }
}

fn pair(max_lines: usize) -> (Durable, Parser) {
    let ctx = zmq::Context::new();
    let dir = tempfile::tempdir().unwrap();
    let ep = format!("ipc://{}/ingest.sock", dir.path().display());
    let router = socket::open(&ctx, zmq::ROUTER, Role::Ingest).unwrap();
    socket::bind(&router, &ep).unwrap();
    let d = Durable::connect(&ctx, &ep, "web01", (max_lines, 1 << 20)).unwrap();
    std::mem::forget(dir);
    (
        d,
        Parser {
            socket: router,
            route: Vec::new(),
        },
    )
}

fn id(ino: u64) -> FileId {
    FileId {
        dev: 1,
        ino,
        fingerprint: 2,
    }
}

fn wait_receipt(d: &mut Durable, until: impl Fn(&Durable) -> bool) -> Vec<Heard> {
    let end = Instant::now() + Duration::from_secs(5);
    let mut heard = Vec::new();
    while !until(d) {
        assert!(Instant::now() < end, "no receipt");
        socket::readable(&d.socket, Duration::from_millis(50)).unwrap();
        heard.extend(d.pump().unwrap());
    }
    heard
}

#[test]
fn lines_stay_until_committed_and_name_the_resume_point() {
    let (mut d, mut p) = pair(3);
    for (i, off) in [0u64, 10, 20].iter().enumerate() {
        d.push(
            (0, id(7)),
            (*off, 1),
            b"{}".to_vec(),
            format!("l{i}").as_bytes(),
        );
    }
    assert!(d.full(), "the window holds at most 3 lines");
    for want in 0..3 {
        let e = p.next_line();
        assert_eq!((e.seq, e.window_start), (want, 0));
    }
    assert_eq!(d.first_unconfirmed(0, id(7)), Some(0));
    assert_eq!(d.first_unconfirmed(0, id(8)), None);
    p.receipt(2, None, &d.epoch.clone());
    let heard = wait_receipt(&mut d, |d| d.unconfirmed() == 1);
    assert_eq!(heard, vec![Heard::Generation("g1".into())]);
    assert!(!d.full());
    assert_eq!(d.first_unconfirmed(0, id(7)), Some(20));
    assert_eq!(d.confirmed, 2);
    // A receipt for another run of the tap changes nothing.
    p.receipt(3, None, "someone-else");
    std::thread::sleep(Duration::from_millis(100));
    d.pump().unwrap();
    assert_eq!(d.unconfirmed(), 1);
}

#[test]
fn lost_lines_are_sent_again_from_where_the_parser_asks() {
    let (mut d, mut p) = pair(10);
    for off in 0..4u64 {
        d.push((0, id(7)), (off * 10, 1), b"{}".to_vec(), b"x");
    }
    for want in 0..4 {
        assert_eq!(p.next_line().seq, want);
    }
    // The parser restarted and has nothing after 1: it asks for 1 on.
    let epoch = d.epoch.clone();
    p.receipt(1, Some(1), &epoch);
    wait_receipt(&mut d, |d| d.unconfirmed() == 3);
    for want in 1..4 {
        let e = p.next_line();
        assert_eq!((e.seq, e.window_start), (want, 1));
    }
}

/// Offers one complete line from `offset` to `end` (its newline
/// included); whether it was taken.
fn offer(d: &mut Durable, (offset, end): (u64, u64), catchup: bool) -> bool {
    offer_line(d, offset, (end - offset - 1) as usize, false, catchup)
}

/// Offers one line without newline from `offset` to `end`.
fn offer_partial(d: &mut Durable, (offset, end): (u64, u64), catchup: bool) -> bool {
    offer_line(d, offset, (end - offset) as usize, true, catchup)
}

fn offer_line(d: &mut Durable, offset: u64, len: usize, partial: bool, catchup: bool) -> bool {
    let mut lines = Lines::default();
    lines.push(offset, &vec![b'x'; len], partial);
    let at = (0, id(7), Verify::NOTHING);
    d.offer(at, &lines, catchup, |_, _| b"{}".to_vec()) == 1
}

#[test]
fn a_full_window_leaves_a_gap_that_a_catchup_fills_once() {
    let (mut d, mut p) = pair(3);
    // Live lines: three fit, the next two are left in the file.
    let taken: Vec<bool> = (0..5u64)
        .map(|n| offer(&mut d, (n * 10, n * 10 + 10), false))
        .collect();
    assert_eq!(taken, [true, true, true, false, false]);
    assert_eq!(d.gap(0, id(7)).map(|g| g.from), Some(30));
    // The resume point is the oldest unconfirmed line, in the window...
    assert_eq!(d.first_unconfirmed(0, id(7)), Some(0));
    for _ in 0..3 {
        p.next_line();
    }
    p.receipt(3, None, &d.epoch.clone());
    wait_receipt(&mut d, |d| d.unconfirmed() == 0);
    // ... and then the start of the gap.
    assert_eq!(d.first_unconfirmed(0, id(7)), Some(30));
    // A live line past the gap waits for it, even with room.
    assert!(!offer(&mut d, (50, 60), false));
    // The catch-up reads the gap; the line the live reader takes next
    // is not taken twice.
    assert!(offer(&mut d, (30, 40), true));
    assert!(offer(&mut d, (40, 50), true));
    assert!(!offer(&mut d, (40, 50), false), "taken already");
    assert!(offer(&mut d, (50, 60), true));
    assert_eq!(
        d.gap(0, id(7)),
        None,
        "the catch-up reached the live reader"
    );
    for _ in 0..3 {
        p.next_line();
    }
    p.receipt(6, None, &d.epoch.clone());
    wait_receipt(&mut d, |d| d.unconfirmed() == 0);
    assert!(offer(&mut d, (60, 70), false), "live takes over");
    assert_eq!(d.first_unconfirmed(0, id(7)), Some(60));
}

#[test]
fn a_line_sent_partial_is_taken_again_whole_and_its_rest_is_not() {
    let (mut d, _p) = pair(10);
    assert!(offer_partial(&mut d, (0, 5), false), "the partial line");
    assert!(offer(&mut d, (0, 12), true), "the whole line, read again");
    assert!(!offer(&mut d, (5, 12), false), "the rest is in it");
    assert!(offer(&mut d, (12, 20), false));
}

#[test]
fn a_catchup_line_is_taken_in_a_full_window() {
    let (mut d, _p) = pair(1);
    assert!(offer(&mut d, (0, 10), false));
    assert!(!offer(&mut d, (10, 20), false), "full");
    assert!(offer(&mut d, (10, 20), true), "one read's overshoot");
    assert_eq!(d.gap(0, id(7)), None);
}

#[test]
fn a_new_run_forgets_the_window() {
    let (mut d, _p) = pair(10);
    d.push((0, id(7)), (0, 1), b"{}".to_vec(), b"x");
    let old = d.epoch.clone();
    d.restart();
    assert_ne!(d.epoch, old);
    assert_eq!(d.unconfirmed(), 0);
    assert_eq!(d.first_unconfirmed(0, id(7)), None);
}
