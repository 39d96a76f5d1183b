//! Members of one cluster against a real 3-node etcd on loopback: hosts
//! spread so that each has one owner, a name taken by a live member is
//! refused, a member that dies loses its hosts to the others once its
//! lease expires, and a member cut off from etcd gives its hosts up
//! before that can happen.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rill_cluster::member::Member;
use rill_cluster::{ring, Etcd};
use rill_config::cluster::{Advertise, ClusterSettings};
use rill_test_support::TestEtcd;

const TTL: Duration = Duration::from_secs(5);

fn settings(etcd: Vec<String>, member: &str) -> ClusterSettings {
    ClusterSettings {
        etcd,
        name: "t".into(),
        member: member.into(),
        advertise: Advertise {
            streams: format!("tcp://127.0.0.1:7600/{member}"),
            search: None,
        },
        lease_ttl: TTL,
    }
}

fn hosts() -> Vec<String> {
    (0..12).map(|i| format!("web{i:02}")).collect()
}

/// Ticks every member until `done` holds for their owned sets (or 30 s).
fn tick_until(members: &mut [&mut Member], done: impl Fn(&[&mut Member]) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        for m in members.iter_mut() {
            let c = m.tick();
            m.release(&c.stop);
        }
        if done(members) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Each host's owner in etcd.
fn owners(etcd: &Etcd) -> BTreeMap<String, String> {
    etcd.list("/rill/t/owners/")
        .unwrap()
        .into_iter()
        .map(|kv| {
            (
                kv.key.trim_start_matches("/rill/t/owners/").to_owned(),
                String::from_utf8(kv.value).unwrap(),
            )
        })
        .collect()
}

#[test]
fn hosts_spread_over_members_each_with_one_owner_and_a_name_is_taken_once() {
    let cluster = TestEtcd::start(3);
    let urls = cluster.urls();
    let mut a = Member::join(&settings(urls.clone(), "a"), hosts()).unwrap();
    let mut b = Member::join(&settings(urls.clone(), "b"), hosts()).unwrap();
    let mut c = Member::join(&settings(urls.clone(), "c"), hosts()).unwrap();
    let all = |ms: &[&mut Member]| ms.iter().map(|m| m.owned().len()).sum::<usize>() == 12;
    assert!(tick_until(&mut [&mut a, &mut b, &mut c], all));
    let etcd = Etcd::new(&urls, Duration::from_secs(2));
    let o = owners(&etcd);
    assert_eq!(o.len(), 12);
    for (host, owner) in &o {
        assert_eq!(
            Some(owner.as_str()),
            ring::owner(host, ["a", "b", "c"]),
            "{host}"
        );
    }
    for m in [&a, &b, &c] {
        assert!(!m.owned().is_empty(), "each of 3 members has hosts of 12");
    }

    // A second b, while the first renews its lease: refused once the
    // first b's lease has had time to expire (a restarted member's would).
    let second = {
        let urls = urls.clone();
        std::thread::spawn(move || Member::join(&settings(urls, "b"), hosts()).err())
    };
    let t = Instant::now();
    tick_until(&mut [&mut a, &mut b, &mut c], |_| second.is_finished());
    let e = second
        .join()
        .unwrap()
        .expect("a second b is refused")
        .to_string();
    assert!(e.contains("member b is already live in cluster t"), "{e}");
    assert!(
        t.elapsed() >= TTL,
        "tried for the lease's time: {:?}",
        t.elapsed()
    );

    // A fourth joins: it takes only what it scores highest on; the
    // others give exactly those up.
    let mut d = Member::join(&settings(urls.clone(), "d"), hosts()).unwrap();
    let want: usize = hosts()
        .iter()
        .filter(|h| ring::owner(h, ["a", "b", "c", "d"]) == Some("d"))
        .count();
    let moved = |ms: &[&mut Member]| ms[3].owned().len() == want;
    assert!(tick_until(&mut [&mut a, &mut b, &mut c, &mut d], moved));
    let after = owners(&etcd);
    for (host, owner) in &after {
        assert!(
            owner == "d" || o[host] == *owner,
            "{host} moved from {} to {owner}",
            o[host]
        );
    }
    assert_eq!(after.len(), 12);
}

#[test]
fn a_dead_members_hosts_are_taken_once_its_lease_expires() {
    let cluster = TestEtcd::start(3);
    let urls = cluster.urls();
    let mut a = Member::join(&settings(urls.clone(), "a"), hosts()).unwrap();
    let mut b = Member::join(&settings(urls.clone(), "b"), hosts()).unwrap();
    assert!(tick_until(&mut [&mut a, &mut b], |ms| {
        ms[0].owned().len() + ms[1].owned().len() == 12
    }));
    let bs = b.owned().len();
    assert!(bs > 0);
    // b dies: it neither renews nor releases.
    let died = Instant::now();
    std::mem::forget(b);
    assert!(tick_until(&mut [&mut a], |ms| ms[0].owned().len() == 12));
    let took = died.elapsed();
    println!("a took b's {bs} hosts {took:?} after b died (lease_ttl {TTL:?})");
    assert!(
        took >= TTL - Duration::from_millis(500),
        "before b's lease ended: {took:?}"
    );
    assert!(took < TTL + Duration::from_secs(5), "{took:?}");
}

#[test]
fn a_member_cut_off_from_etcd_gives_its_hosts_up_before_its_lease_can_expire() {
    let mut cluster = TestEtcd::start(3);
    // a speaks to node 0 only; b to nodes 1 and 2.
    let mut a = Member::join(&settings(vec![cluster.url(0)], "a"), hosts()).unwrap();
    let mut b = Member::join(
        &settings(vec![cluster.url(1), cluster.url(2)], "b"),
        hosts(),
    )
    .unwrap();
    assert!(tick_until(&mut [&mut a, &mut b], |ms| {
        ms[0].owned().len() + ms[1].owned().len() == 12 && !ms[0].owned().is_empty()
    }));
    let theirs = a.owned().clone();
    cluster.kill(0);
    let cut = Instant::now();
    // a gives everything up; b may take a host only after that.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut a_gave_up = None;
    let mut b_took = None;
    while Instant::now() < deadline && b_took.is_none() {
        let c = a.tick();
        if a_gave_up.is_none() && a.owned().is_empty() {
            a_gave_up = Some(cut.elapsed());
            assert!(c.stop.iter().all(|h| theirs.contains(h)));
        }
        let before = b.owned().clone();
        let c = b.tick();
        b.release(&c.stop);
        if b_took.is_none()
            && b.owned()
                .iter()
                .any(|h| !before.contains(h) && theirs.contains(h))
        {
            b_took = Some(cut.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (gave_up, took) = (a_gave_up.expect("a gave up"), b_took.expect("b took over"));
    println!("cut off: a gave up after {gave_up:?}, b took a host after {took:?}");
    assert!(
        gave_up < took,
        "a gave up ({gave_up:?}) before b took ({took:?})"
    );
    assert!(took < TTL + Duration::from_secs(5), "{took:?}");

    // etcd back: a registers again (its lease is gone) and takes its share.
    cluster.restart(0);
    let back = Instant::now();
    let rejoined = tick_until(&mut [&mut a, &mut b], |ms| {
        !ms[0].owned().is_empty()
            && ms[0].owned().len() + ms[1].owned().len() == 12
            && ms[0].owned().is_disjoint(ms[1].owned())
    });
    assert!(rejoined, "a owns {:?}, b {:?}", a.owned(), b.owned());
    println!(
        "etcd back: a follows {} hosts again after {:?}",
        a.owned().len(),
        back.elapsed()
    );
    assert_eq!(
        owners(&Etcd::new(&[cluster.url(1)], Duration::from_secs(2))).len(),
        12
    );
}
