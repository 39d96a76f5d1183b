//! A cluster of collectors coordinated by etcd (`cluster:`, docs/cluster.md).
//!
//! - [`etcd`]: the few etcd v3 calls Rill makes (leases, ranges,
//!   transactions), over etcd's own JSON gateway (`/v3/...` on its client
//!   URLs) with a blocking HTTP client: no gRPC code generation (which
//!   would need `protoc` to build Rill) and no async runtime in the
//!   supervisor. Consensus is etcd's; nothing here decides anything etcd
//!   did not agree to.
//! - [`ring`]: which live member should follow which host (rendezvous
//!   hashing: a member joining or leaving moves only the hosts it takes or
//!   held).
//! - [`member`]: this collector registered under a lease, taking and
//!   giving up hosts in etcd, and giving all up before its lease can
//!   expire when it cannot renew it.
//! - [`node`]: the member on its own thread, handing the supervisor hosts
//!   to start and stop, and copying their checkpoints to and from etcd.
//! - [`tenure`]: when this member followed each host, for the parser to
//!   index lines under and to find the handover overlap by.
//! - [`search`]: every member's search API asked at once, the answers
//!   merged.

pub mod etcd;
pub mod member;
pub mod node;
pub mod ring;
pub mod search;
pub mod tenure;

pub use etcd::{Etcd, EtcdError, Kv, LeaseId};
