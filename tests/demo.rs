//! README command 1: `rill demo` runs the whole pipeline on the embedded SSH
//! host and shows live lines and a search.

use std::process::Command;

use rill_e2e::{bin, local_processes_mentioning};

#[test]
fn the_demo_streams_lines_and_finds_them() {
    let out = Command::new(bin("rill"))
        .args(["demo", "--duration", "12"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let live = text
        .lines()
        .filter(|l| l.starts_with("demo-web access: ") || l.starts_with("demo-web app: "))
        .count();
    assert!(live >= 50, "live lines shown: {live}\n{text}");
    let search = text
        .split("--- rill search")
        .nth(1)
        .expect("a search section");
    assert!(
        search
            .lines()
            .any(|l| l.contains("demo-web access:") && l.contains("GET") && l.contains(" 404 ")),
        "{search}"
    );
    let indexed: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("lines indexed so far: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("an indexed count");
    assert!(indexed >= 50, "{indexed}");
    assert!(text.contains("rill tail --config /tmp/rill-demo/rill.yaml"));
    assert!(text.trim_end().ends_with("demo stopped"));
    assert!(
        local_processes_mentioning("/tmp/rill-demo/rill.yaml").is_empty(),
        "the demo left processes"
    );
}
