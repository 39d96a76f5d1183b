//! Property tests: durations as a careless or hostile config writes them.
//! Every one is a duration or an error, never a panic.

use proptest::prelude::*;
use rill_config::parse_duration;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn any_text_is_a_duration_or_an_error(text in "[0-9.]{0,40}(ms|s|m|h|d|w|)|.{0,40}") {
        let _ = parse_duration(&text);
    }

    #[test]
    fn numbers_of_any_size_parse_or_say_too_long(n in any::<u128>(), frac in proptest::option::of(0u32..1000), unit in "(ms|s|m|h|d)") {
        let text = match frac {
            Some(f) => format!("{n}.{f}{unit}"),
            None => format!("{n}{unit}"),
        };
        match parse_duration(&text) {
            Ok(d) => prop_assert!(d.as_secs_f64() >= 0.0),
            Err(e) => prop_assert!(e.contains("too long"), "{}: {}", text, e),
        }
    }

    #[test]
    fn whole_configs_with_absurd_durations_are_errors_not_panics(
        key in "(retention|partial_line_after|poll_interval|stream_poll|flush_after|max_request_age)",
        value in "[0-9]{1,30}(ms|s|m|h|d)",
    ) {
        let block = match key.as_str() {
            "retention" => format!("index: {{retention: {value}}}\n"),
            "flush_after" => format!("logs: {{x: {{path: /x, hosts: all, multiline: {{starts: a, flush_after: {value}}}}}}}\n"),
            "max_request_age" => format!("hosts: {{h: {{address: a, user: u, auth: {{agent: true}}, sessions: {{max_request_age: {value}}}}}}}\n"),
            k => format!("tap: {{{k}: {value}}}\n"),
        };
        let mut yaml = block.clone();
        if !block.starts_with("hosts") {
            yaml.push_str("hosts: {h: {address: a, user: u, auth: {agent: true}}}\n");
        }
        if !block.starts_with("logs") {
            yaml.push_str("logs: {x: {path: /x, hosts: all}}\n");
        }
        let _ = rill_config::Config::from_yaml_unchecked(std::path::Path::new("/tmp/rill.yaml"), &yaml);
    }
}
