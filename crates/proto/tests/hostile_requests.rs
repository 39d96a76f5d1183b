//! Property tests: session-control requests as a hostile client sends them.
//! Every body gets a request or a rejection with a reason, never a panic;
//! well-formed requests survive the trip through JSON.

use proptest::prelude::*;
use rill_proto::session::{format_datetime, SessionCommand, SessionRequest};
use serde_json::{json, Value};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::String),
        Just(json!("2002-12-25T00:00:60.000Z")),
        Just(json!(format_datetime(chrono::Utc::now()))),
        Just(json!("create_session")),
        Just(json!("send_data_to_session")),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("unique_id".to_owned()),
        Just("client_id".to_owned()),
        Just("datetime".to_owned()),
        Just("command".to_owned()),
        Just("session_id".to_owned()),
        Just("contents".to_owned()),
        ".{0,10}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn any_bytes_get_a_request_or_a_reason(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Err(r) = SessionRequest::parse(&body) {
            prop_assert!(!r.reason.is_empty());
        }
    }

    #[test]
    fn any_json_gets_a_request_or_a_reason(v in json_value()) {
        let body = serde_json::to_vec(&v).unwrap();
        if let Err(r) = SessionRequest::parse(&body) {
            prop_assert!(!r.reason.is_empty());
        }
    }

    #[test]
    fn objects_with_repeated_keys_are_refused(k in key(), a in ".{0,8}", b in ".{0,8}") {
        let q = |s: &str| serde_json::to_string(s).unwrap();
        let body = format!(
            "{{{}:{},\"unique_id\":\"u\",\"client_id\":\"c\",\"datetime\":\"2002-12-25T00:00:00.000Z\",\"command\":\"create_session\",{}:{}}}",
            q(&k), q(&a), q(&k), q(&b)
        );
        let r = SessionRequest::parse(body.as_bytes()).unwrap_err();
        prop_assert!(r.reason.contains("appears twice"), "{}", r.reason);
    }

    #[test]
    fn well_formed_requests_round_trip(
        uid in "[a-z0-9-]{1,128}",
        cid in "[a-z0-9-]{1,128}",
        sid in "[a-z0-9-]{1,64}",
        contents in ".{0,64}",
        which in 0..4u8,
    ) {
        let command = match which {
            0 => SessionCommand::CreateSession,
            1 => SessionCommand::DeleteSession { session_id: sid },
            2 => SessionCommand::SendDataToSession { session_id: sid, contents },
            _ => SessionCommand::GetSessionInfo { session_id: Some(sid) },
        };
        let req = SessionRequest {
            unique_id: uid,
            client_id: cid,
            datetime: format_datetime(chrono::Utc::now()),
            command,
        };
        let body = serde_json::to_vec(&req).unwrap();
        prop_assert_eq!(SessionRequest::parse(&body).unwrap(), req);
    }
}
