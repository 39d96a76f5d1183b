//! The etcd client against a real 3-node etcd cluster (Debian's
//! `etcd-server`) on loopback: leases bind keys, transactions create a
//! key once, and a node down is stepped around.

use std::time::{Duration, Instant};

use rill_cluster::{Etcd, EtcdError};
use rill_test_support::{free_port, TestEtcd};

const TIMEOUT: Duration = Duration::from_secs(2);

#[test]
fn a_key_bound_to_a_lease_is_created_once_and_goes_with_the_lease() {
    let cluster = TestEtcd::start(3);
    let etcd = Etcd::new(&cluster.urls(), TIMEOUT);
    let lease = etcd.grant(Duration::from_secs(30)).unwrap();
    assert!(etcd
        .create("/rill/t/owners/web01", b"a", Some(lease))
        .unwrap());
    let other = etcd.grant(Duration::from_secs(30)).unwrap();
    assert!(
        !etcd
            .create("/rill/t/owners/web01", b"b", Some(other))
            .unwrap(),
        "a second owner"
    );
    let kv = etcd.get("/rill/t/owners/web01").unwrap().unwrap();
    assert_eq!((kv.value.as_slice(), kv.lease), (&b"a"[..], lease));
    assert!(!etcd.delete_if_bound("/rill/t/owners/web01", other).unwrap());
    let left = etcd.keep_alive(lease).unwrap().unwrap();
    assert!(left > Duration::from_secs(25), "{left:?}");

    etcd.revoke(lease).unwrap();
    assert_eq!(etcd.get("/rill/t/owners/web01").unwrap(), None);
    assert_eq!(
        etcd.keep_alive(lease).unwrap(),
        None,
        "a revoked lease is gone"
    );
    assert!(etcd
        .create("/rill/t/owners/web01", b"b", Some(other))
        .unwrap());
    assert!(etcd.delete_if_bound("/rill/t/owners/web01", other).unwrap());
    assert_eq!(etcd.get("/rill/t/owners/web01").unwrap(), None);
}

#[test]
fn many_keys_go_in_transactions_and_list_by_prefix() {
    let cluster = TestEtcd::start(1);
    let etcd = Etcd::new(&cluster.urls(), TIMEOUT);
    let kvs: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| {
            (
                format!("/rill/t/offsets/web01/log{i:03}"),
                i.to_string().into_bytes(),
            )
        })
        .collect();
    etcd.put_all(&kvs).unwrap();
    etcd.put("/rill/t/offsets/web02/log000", b"x", None)
        .unwrap();
    etcd.put("/rill/t/offsets/web010", b"not under web01/", None)
        .unwrap();
    let got = etcd.list("/rill/t/offsets/web01/").unwrap();
    assert_eq!(got.len(), 300);
    assert_eq!(got[7].key, "/rill/t/offsets/web01/log007");
    assert_eq!(got[7].value, b"7");
    assert_eq!(etcd.list("/rill/u/").unwrap(), vec![]);
}

#[test]
fn a_node_down_is_stepped_around_and_no_quorum_is_an_error_in_bounded_time() {
    let mut cluster = TestEtcd::start(3);
    let closed = format!("http://127.0.0.1:{}", free_port());
    let mut urls = vec![closed];
    urls.extend(cluster.urls());
    let etcd = Etcd::new(&urls, TIMEOUT);
    etcd.put("/rill/t/k", b"1", None).unwrap();

    cluster.kill(0);
    etcd.put("/rill/t/k", b"2", None).unwrap();
    assert_eq!(etcd.get("/rill/t/k").unwrap().unwrap().value, b"2");

    // Two of three down: no quorum, so etcd cannot agree to a write.
    cluster.kill(1);
    let t = Instant::now();
    let e = etcd.put("/rill/t/k", b"3", None).unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(4 * 2 + 6),
        "{:?}",
        t.elapsed()
    );
    assert!(
        matches!(e, EtcdError::Unreachable(_) | EtcdError::Refused { .. }),
        "{e}"
    );

    cluster.restart(0);
    let back = rill_test_support::wait_until(Duration::from_secs(20), || {
        etcd.put("/rill/t/k", b"4", None).is_ok()
    });
    assert!(back, "a write once quorum is back");
    // Everything down: unreachable, each URL named.
    cluster.kill(0);
    cluster.kill(2);
    let e = etcd.get("/rill/t/k").unwrap_err().to_string();
    assert!(e.starts_with("etcd is unreachable"), "{e}");
    for url in &urls {
        assert!(e.contains(url.as_str()), "{e} names {url}");
    }
}
