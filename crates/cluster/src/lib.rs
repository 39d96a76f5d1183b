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

pub mod etcd;
pub mod ring;

pub use etcd::{Etcd, EtcdError, Kv, LeaseId};
