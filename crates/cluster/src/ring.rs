//! Rendezvous (highest random weight) hashing: each host goes to the live
//! member with the highest score for (member, host). Every member computes
//! the same answer from the same member list, and a member joining takes
//! only the hosts it now scores highest on (about 1/n of them) while a
//! member leaving gives up only its own.

/// The member `host` belongs to among `members` (None when there are
/// none). Ties (equal scores) go to the smaller name.
pub fn owner<'a>(host: &str, members: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    members
        .into_iter()
        .map(|m| (score(m, host), m))
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, m)| m)
}

/// A stable 64-bit score of (member, host): FNV-1a over both, with a
/// separator neither name may hold, mixed by SplitMix64's finalizer so
/// that similar names do not give similar scores.
fn score(member: &str, host: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in member.bytes().chain([b'/']).chain(host.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("web{i:03}")).collect()
    }

    fn spread<'a>(hosts: &'a [String], members: &[&'a str]) -> Vec<&'a str> {
        hosts
            .iter()
            .map(|h| owner(h, members.iter().copied()).unwrap())
            .collect()
    }

    #[test]
    fn hosts_spread_evenly_and_a_join_moves_only_what_the_newcomer_takes() {
        let hosts = hosts(600);
        let three = ["collector-a", "collector-b", "collector-c"];
        let before = spread(&hosts, &three);
        for m in three {
            let n = before.iter().filter(|o| **o == m).count();
            assert!((150..=250).contains(&n), "{m} got {n} of 600");
        }
        let four = ["collector-a", "collector-b", "collector-c", "collector-d"];
        let after = spread(&hosts, &four);
        let moved: Vec<usize> = (0..hosts.len())
            .filter(|&i| before[i] != after[i])
            .collect();
        assert!(moved.iter().all(|&i| after[i] == "collector-d"));
        assert!((100..=200).contains(&moved.len()), "{} moved", moved.len());
        // And back: the newcomer leaving returns exactly those.
        assert_eq!(spread(&hosts, &three), before);
    }

    #[test]
    fn the_answer_does_not_depend_on_the_order_of_members() {
        let hosts = hosts(50);
        assert_eq!(
            spread(&hosts, &["a", "b", "c"]),
            spread(&hosts, &["c", "a", "b"])
        );
        assert_eq!(owner("web01", []), None);
    }
}
