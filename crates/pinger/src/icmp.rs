//! ICMP echo to many hosts at once over one socket, where the process may:
//! an unprivileged "ping" socket (`SOCK_DGRAM`, allowed by
//! `net.ipv4.ping_group_range`), else a raw socket (root or `CAP_NET_RAW`).
//! Without either, [`Icmp::open`] says so and masspinger probes by TCP only.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Which kind of ICMP socket we got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Unprivileged ping socket: the kernel sets the identifier and strips
    /// the IP header from replies.
    Datagram,
    /// Raw socket: replies come with their IP header, and every ICMP packet
    /// of the machine arrives, so ours are told by the identifier.
    Raw,
}

pub struct Icmp {
    fd: OwnedFd,
    kind: Kind,
    id: u16,
    round: u32,
}

impl Icmp {
    /// Opens an ICMP socket, or says why none could be had.
    pub fn open() -> std::io::Result<Icmp> {
        let mut last = None;
        for (ty, kind) in [
            (libc::SOCK_DGRAM, Kind::Datagram),
            (libc::SOCK_RAW, Kind::Raw),
        ] {
            // SAFETY: plain socket(2); the fd is owned below.
            let fd = unsafe {
                libc::socket(libc::AF_INET, ty | libc::SOCK_NONBLOCK, libc::IPPROTO_ICMP)
            };
            if fd >= 0 {
                // SAFETY: fd is a fresh, valid descriptor we own.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                return Ok(Icmp {
                    fd,
                    kind,
                    id: std::process::id() as u16,
                    round: 0,
                });
            }
            last = Some(std::io::Error::last_os_error());
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no ICMP socket")))
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Sends one echo request to every address and collects the replies that
    /// arrive within `timeout`: the round-trip time per target index.
    pub fn probe(&mut self, targets: &[Ipv4Addr], timeout: Duration) -> HashMap<usize, Duration> {
        self.round = self.round.wrapping_add(1);
        let mut sent: HashMap<usize, Instant> = HashMap::with_capacity(targets.len());
        for (i, addr) in targets.iter().enumerate() {
            let packet = echo_request(self.id, i as u16, self.round, i as u32);
            let sa = sockaddr(*addr);
            // SAFETY: valid buffer and sockaddr_in for sendto(2).
            let n = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    packet.as_ptr().cast(),
                    packet.len(),
                    0,
                    (&sa as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            if n == packet.len() as isize {
                sent.insert(i, Instant::now());
            }
        }
        let mut got = HashMap::new();
        let end = Instant::now() + timeout;
        let mut buf = [0u8; 1500];
        while got.len() < sent.len() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) };
            if ready <= 0 {
                continue;
            }
            loop {
                let mut from: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
                // SAFETY: valid buffer and sockaddr for recvfrom(2).
                let n = unsafe {
                    libc::recvfrom(
                        self.fd.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        0,
                        (&mut from as *mut libc::sockaddr_in).cast(),
                        &mut len,
                    )
                };
                if n <= 0 {
                    break;
                }
                let source = Ipv4Addr::from(u32::from_be(from.sin_addr.s_addr));
                let Some(target) = self.reply_target(&buf[..n as usize]) else {
                    continue;
                };
                if targets.get(target) == Some(&source) {
                    if let Some(at) = sent.get(&target) {
                        got.entry(target).or_insert_with(|| at.elapsed());
                    }
                }
            }
        }
        got
    }

    /// The target index an echo reply of ours answers.
    fn reply_target(&self, packet: &[u8]) -> Option<usize> {
        let icmp = match self.kind {
            Kind::Datagram => packet,
            Kind::Raw => {
                let ihl = usize::from(packet.first()? & 0x0f) * 4;
                packet.get(ihl..)?
            }
        };
        if icmp.len() < 16 || icmp[0] != 0 {
            return None;
        }
        if self.kind == Kind::Raw && u16::from_be_bytes([icmp[4], icmp[5]]) != self.id {
            return None;
        }
        let round = u32::from_be_bytes(icmp[8..12].try_into().ok()?);
        let target = u32::from_be_bytes(icmp[12..16].try_into().ok()?);
        (round == self.round).then_some(target as usize)
    }
}

fn sockaddr(addr: Ipv4Addr) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_addr.s_addr = u32::from(addr).to_be();
    sa
}

/// An echo request whose payload names the round and the target.
fn echo_request(id: u16, seq: u16, round: u32, target: u32) -> Vec<u8> {
    let mut p = vec![8u8, 0, 0, 0];
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&round.to_be_bytes());
    p.extend_from_slice(&target.to_be_bytes());
    let sum = checksum(&p);
    p[2..4].copy_from_slice(&sum.to_be_bytes());
    p
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_of_a_packet_with_its_checksum_is_zero() {
        let p = echo_request(0x1234, 7, 9, 42);
        assert_eq!(checksum(&p), 0);
        assert_eq!(p[0], 8);
    }

    /// Where this process may use ICMP (the tests run as root), loopback
    /// answers and an address nobody holds does not.
    #[test]
    fn loopback_answers_an_echo() {
        let Ok(mut icmp) = Icmp::open() else {
            panic!("no ICMP socket; the tests run as root, which may open one");
        };
        // TEST-NET-3 (RFC 5737) is never assigned. (TEST-NET-1 is no good:
        // some sandboxes use 192.0.2.1 as their gateway.)
        let targets = [Ipv4Addr::LOCALHOST, Ipv4Addr::new(203, 0, 113, 9)];
        let got = icmp.probe(&targets, Duration::from_millis(500));
        assert!(got.contains_key(&0), "{:?} {got:?}", icmp.kind());
        assert!(!got.contains_key(&1), "TEST-NET-3 never answers: {got:?}");
    }
}
