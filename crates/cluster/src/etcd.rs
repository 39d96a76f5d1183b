//! The etcd v3 calls Rill makes, over etcd's JSON gateway: `POST
//! /v3/<service>/<call>` with the request as JSON, bytes in base64 and
//! 64-bit numbers as strings (what etcd 3.4 and later serve on every
//! client URL).
//!
//! Each call goes to the URL that answered last; a URL that cannot be
//! reached (connection refused, timed out) or answers with a server error
//! (a 5xx: a node cut off from the others has no leader) hands the call to
//! the next, so one etcd node down or partitioned costs one timeout at
//! most. A refusal (a 4xx with etcd's message) is returned as is: another
//! node would refuse too.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};

/// A lease's id, as etcd names it.
pub type LeaseId = i64;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No URL answered: each URL and why.
    #[error("etcd is unreachable: {0}")]
    Unreachable(String),
    /// etcd answered with an error.
    #[error("etcd refused {call}: {message}")]
    Refused { call: String, message: String },
    /// An answer that is not what etcd sends.
    #[error("etcd sent an answer to {call} that cannot be read: {why}")]
    BadAnswer { call: String, why: String },
}

/// One key and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    /// The lease it is bound to (0: none).
    pub lease: LeaseId,
    pub create_revision: i64,
    pub mod_revision: i64,
}

/// The largest answer read (a range over a big prefix stays well under).
const MAX_ANSWER: u64 = 64 << 20;
/// Operations per transaction at most (etcd's default `--max-txn-ops`).
pub const MAX_TXN_OPS: usize = 128;

/// A client of one etcd cluster.
pub struct Etcd {
    urls: Vec<String>,
    agent: ureq::Agent,
    /// The URL that answered last.
    current: AtomicUsize,
}

impl Etcd {
    /// A client of the etcd reached at `urls` (`http://HOST:PORT`), each
    /// call given `timeout` per URL tried.
    pub fn new(urls: &[String], timeout: Duration) -> Etcd {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .new_agent();
        Etcd {
            urls: urls
                .iter()
                .map(|u| u.trim_end_matches('/').to_owned())
                .collect(),
            agent,
            current: AtomicUsize::new(0),
        }
    }

    /// Grants a lease of `ttl` (whole seconds, at least 1).
    pub fn grant(&self, ttl: Duration) -> Result<LeaseId, EtcdError> {
        let a = self.call("lease/grant", json!({ "TTL": ttl.as_secs().max(1) }))?;
        int(&a, "ID").ok_or_else(|| bad("lease/grant", "no ID"))
    }

    /// Renews `lease`: the time it has left from now, or None when etcd
    /// no longer has it (it expired, or was revoked).
    pub fn keep_alive(&self, lease: LeaseId) -> Result<Option<Duration>, EtcdError> {
        let a = self.call("lease/keepalive", json!({ "ID": lease.to_string() }))?;
        let ttl = int(&a["result"], "TTL").unwrap_or(0);
        Ok((ttl > 0).then(|| Duration::from_secs(ttl.unsigned_abs())))
    }

    /// Revokes `lease`: every key bound to it is deleted at once.
    pub fn revoke(&self, lease: LeaseId) -> Result<(), EtcdError> {
        self.call("lease/revoke", json!({ "ID": lease.to_string() }))
            .map(drop)
    }

    /// Sets `key` (bound to `lease` when given).
    pub fn put(&self, key: &str, value: &[u8], lease: Option<LeaseId>) -> Result<(), EtcdError> {
        self.call("kv/put", put(key, value, lease)).map(drop)
    }

    /// Sets many keys, in transactions of at most [`MAX_TXN_OPS`].
    pub fn put_all(&self, kvs: &[(String, Vec<u8>)]) -> Result<(), EtcdError> {
        for chunk in kvs.chunks(MAX_TXN_OPS) {
            let ops: Vec<Value> = chunk
                .iter()
                .map(|(k, v)| json!({ "request_put": put(k, v, None) }))
                .collect();
            self.call("kv/txn", json!({ "success": ops }))?;
        }
        Ok(())
    }

    /// Sets many keys while `guard` is bound to `lease` (this member is
    /// live), in transactions of at most [`MAX_TXN_OPS`]: whether they
    /// were set (false: the lease is gone, nothing was written).
    pub fn put_all_while(
        &self,
        kvs: &[(String, Vec<u8>)],
        guard: &str,
        lease: LeaseId,
    ) -> Result<bool, EtcdError> {
        for chunk in kvs.chunks(MAX_TXN_OPS) {
            let ops: Vec<Value> = chunk
                .iter()
                .map(|(k, v)| json!({ "request_put": put(k, v, None) }))
                .collect();
            let a = self.call(
                "kv/txn",
                json!({
                    "compare": [{ "target": "LEASE", "key": B64.encode(guard), "lease": lease.to_string() }],
                    "success": ops,
                }),
            )?;
            if !a["succeeded"].as_bool().unwrap_or(false) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// `key`'s value, if it is set.
    pub fn get(&self, key: &str) -> Result<Option<Kv>, EtcdError> {
        let a = self.call("kv/range", json!({ "key": B64.encode(key) }))?;
        Ok(kvs("kv/range", &a)?.into_iter().next())
    }

    /// Every key under `prefix`, in key order.
    pub fn list(&self, prefix: &str) -> Result<Vec<Kv>, EtcdError> {
        let a = self.call(
            "kv/range",
            json!({ "key": B64.encode(prefix), "range_end": B64.encode(prefix_end(prefix)) }),
        )?;
        kvs("kv/range", &a)
    }

    /// Sets `key` only if it does not exist: whether it was set.
    pub fn create(
        &self,
        key: &str,
        value: &[u8],
        lease: Option<LeaseId>,
    ) -> Result<bool, EtcdError> {
        self.create_at(key, value, lease).map(|r| r.is_some())
    }

    /// Like [`Etcd::create`]: the revision at which the key was created
    /// (its `create_revision`), or `None` when it existed.
    pub fn create_at(
        &self,
        key: &str,
        value: &[u8],
        lease: Option<LeaseId>,
    ) -> Result<Option<i64>, EtcdError> {
        let a = self.call(
            "kv/txn",
            json!({
                "compare": [{ "target": "CREATE", "key": B64.encode(key), "create_revision": "0" }],
                "success": [{ "request_put": put(key, value, lease) }],
            }),
        )?;
        if !a["succeeded"].as_bool().unwrap_or(false) {
            return Ok(None);
        }
        Ok(Some(int(&a["header"], "revision").unwrap_or(0)))
    }

    /// Deletes `key` only while it is bound to `lease`: whether it was.
    pub fn delete_if_bound(&self, key: &str, lease: LeaseId) -> Result<bool, EtcdError> {
        let a = self.call(
            "kv/txn",
            json!({
                "compare": [{ "target": "LEASE", "key": B64.encode(key), "lease": lease.to_string() }],
                "success": [{ "request_delete_range": { "key": B64.encode(key) } }],
            }),
        )?;
        Ok(a["succeeded"].as_bool().unwrap_or(false))
    }

    /// Deletes `key`.
    pub fn delete(&self, key: &str) -> Result<(), EtcdError> {
        self.call("kv/deleterange", json!({ "key": B64.encode(key) }))
            .map(drop)
    }

    /// POSTs `body` to `/v3/<call>` at the URL that answered last, then at
    /// each other in turn until one answers.
    fn call(&self, call: &str, body: Value) -> Result<Value, EtcdError> {
        let first = self.current.load(Ordering::Relaxed);
        let mut why = Vec::new();
        for i in 0..self.urls.len() {
            let n = (first + i) % self.urls.len();
            let url = format!("{}/v3/{call}", self.urls[n]);
            let answer = self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.to_string());
            let mut response = match answer {
                Ok(r) => r,
                Err(e) => {
                    why.push(format!("{}: {e}", self.urls[n]));
                    continue;
                }
            };
            let status = response.status();
            if status.is_server_error() {
                why.push(format!("{}: HTTP {status}", self.urls[n]));
                continue;
            }
            self.current.store(n, Ordering::Relaxed);
            let text = response
                .body_mut()
                .with_config()
                .limit(MAX_ANSWER)
                .read_to_string()
                .map_err(|e| bad(call, e))?;
            let value: Value = serde_json::from_str(&text).map_err(|e| bad(call, e))?;
            if !status.is_success() {
                let message = value["message"]
                    .as_str()
                    .or(value["error"].as_str())
                    .map_or_else(|| format!("HTTP {status}"), str::to_owned);
                return Err(EtcdError::Refused {
                    call: call.to_owned(),
                    message,
                });
            }
            if let Some(e) = value["error"].as_object() {
                return Err(EtcdError::Refused {
                    call: call.to_owned(),
                    message: e
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("an error")
                        .to_owned(),
                });
            }
            return Ok(value);
        }
        Err(EtcdError::Unreachable(why.join("; ")))
    }
}

fn put(key: &str, value: &[u8], lease: Option<LeaseId>) -> Value {
    let mut p = json!({ "key": B64.encode(key), "value": B64.encode(value) });
    if let Some(l) = lease {
        p["lease"] = Value::String(l.to_string());
    }
    p
}

/// The end of the range of keys that start with `prefix`: the prefix with
/// its last byte below 0xff incremented (etcd's `WithPrefix`).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte 0xff (or empty): to the end of the key space.
    vec![0]
}

/// A 64-bit number, which the gateway writes as a string.
fn int(v: &Value, key: &str) -> Option<i64> {
    match &v[key] {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn kvs(call: &str, a: &Value) -> Result<Vec<Kv>, EtcdError> {
    let Some(list) = a["kvs"].as_array() else {
        return Ok(Vec::new());
    };
    list.iter()
        .map(|kv| {
            let bytes = |k: &str| {
                B64.decode(kv[k].as_str().unwrap_or(""))
                    .map_err(|e| bad(call, e))
            };
            Ok(Kv {
                key: String::from_utf8(bytes("key")?).map_err(|e| bad(call, e))?,
                value: bytes("value")?,
                lease: int(kv, "lease").unwrap_or(0),
                create_revision: int(kv, "create_revision").unwrap_or(0),
                mod_revision: int(kv, "mod_revision").unwrap_or(0),
            })
        })
        .collect()
}

fn bad(call: &str, why: impl std::fmt::Display) -> EtcdError {
    EtcdError::BadAnswer {
        call: call.to_owned(),
        why: why.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_range_ends_past_its_last_byte() {
        assert_eq!(prefix_end("/rill/prod/"), b"/rill/prod0");
        assert_eq!(prefix_end(""), vec![0]);
    }
}
