//! The ICMP socket of a run: an unprivileged datagram socket where
//! `net.ipv4.ping_group_range` allows one, a raw socket (CAP_NET_RAW) otherwise; its options;
//! and reading replies and ICMP errors (the error queue) without blocking.

use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockProtocol, SockType,
    SockaddrIn, SockaddrIn6, SockaddrStorage, sockopt,
};
use tokio::io::Interest;

use crate::result::{Failure, FailureReason, IcmpSocketKind};

/// The options a run sets on its socket.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The TTL (hop limit) of the requests.
    pub ttl: Option<u8>,
    /// Whether the requests carry the don't-fragment flag (IPv4) or must not be fragmented
    /// by this host (IPv6).
    pub dont_fragment: bool,
}

/// The most a received message (an echo reply with its IPv4 header) may take; longer ones
/// are truncated and then do not match the payload sent.
const MAX_MESSAGE: usize = 65_536;

/// An open, connected ICMP socket.
pub struct IcmpSocket {
    /// The socket, registered with tokio as the datagram socket it is to the reactor (an
    /// `OwnedFd` converts into one safely); every read and write goes through `nix`.
    io: tokio::net::UdpSocket,
    /// Datagram (the kernel owns the identifier) or raw (an IPv4 reply comes with its header).
    pub kind: IcmpSocketKind,
    /// ICMPv6.
    pub v6: bool,
    buffer: Vec<u8>,
}

/// What reading the socket gave; the bytes are handed over beside it.
#[derive(Debug, Clone, Copy)]
pub enum Received {
    /// An ICMP message with the TTL or hop limit it came with, when the kernel said.
    Message { hop_limit: Option<u8> },
    /// An ICMP error about a request this socket sent (the bytes are the quoted request):
    /// its type and code, and the host that sent it.
    Error {
        kind: u8,
        code: u8,
        from: Option<IpAddr>,
    },
    /// A local error, or an error without the ICMP details.
    Errno(Errno),
}

impl IcmpSocket {
    /// Opens a socket for `target`, bound to `source` when set, with `options`. A socket that
    /// cannot be opened for lack of privilege is a `permission` failure naming what to change.
    pub fn open(
        target: IpAddr,
        source: Option<IpAddr>,
        options: Options,
    ) -> Result<IcmpSocket, Failure> {
        let v6 = target.is_ipv6();
        let (family, protocol) = if v6 {
            (AddressFamily::Inet6, SockProtocol::IcmpV6)
        } else {
            (AddressFamily::Inet, SockProtocol::Icmp)
        };
        let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
        let (fd, kind) = match socket::socket(family, SockType::Datagram, flags, protocol) {
            Ok(fd) => (fd, IcmpSocketKind::Datagram),
            Err(dgram) => match socket::socket(family, SockType::Raw, flags, protocol) {
                Ok(fd) => (fd, IcmpSocketKind::Raw),
                Err(raw) => return Err(no_socket(v6, dgram, raw)),
            },
        };
        let unreachable = |what: String| Failure::new(FailureReason::Unreachable, what);
        configure(&fd, v6, options).map_err(|error| {
            unreachable(format!(
                "cannot set up the ICMP socket for {target}: {}",
                describe(error)
            ))
        })?;
        if let Some(source) = source {
            // A raw IPv4 socket takes an IPv6 address without complaint (it reads the bytes
            // where an IPv4 address would be, and binds to none), so the family is checked
            // here for either kind of socket.
            if source.is_ipv6() != v6 {
                return Err(unreachable(format!(
                    "cannot send from {source} to {target}: source_ip and the target are of \
                     different address families"
                )));
            }
            bind(&fd, source).map_err(|error| {
                unreachable(format!(
                    "cannot send from {source} to {target}: {}",
                    describe(error)
                ))
            })?;
        }
        connect(&fd, target).map_err(|error| {
            unreachable(format!("cannot send to {target}: {}", describe(error)))
        })?;
        let io =
            tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(fd)).map_err(|error| {
                unreachable(format!(
                    "cannot watch the ICMP socket for {target}: {error}"
                ))
            })?;
        Ok(IcmpSocket {
            io,
            kind,
            v6,
            buffer: vec![0; MAX_MESSAGE],
        })
    }

    /// Sends one message; the socket is connected, so it goes to the target.
    pub fn send(&self, packet: &[u8]) -> Result<(), Errno> {
        socket::send(self.io.as_raw_fd(), packet, MsgFlags::MSG_DONTWAIT).map(drop)
    }

    /// Whether the messages this socket receives start with the IPv4 header.
    pub fn ip_header(&self) -> bool {
        self.kind == IcmpSocketKind::Raw && !self.v6
    }

    /// Waits until the socket has something to read: a message, or a queued error (which
    /// wakes a socket with `EPOLLERR` alone). Interests are awaited one by one: tokio masks a
    /// combined one to nothing.
    pub async fn ready(&self) {
        // An error here is the reactor's; the next read reports what the socket has.
        tokio::select! {
            _ = self.io.ready(Interest::READABLE) => {}
            _ = self.io.ready(Interest::ERROR) => {}
        }
    }

    /// Hands everything the socket holds now to `take`, one message at a time, until it is
    /// empty or `take` returns false.
    pub fn drain(&mut self, mut take: impl FnMut(Received, &[u8]) -> bool) {
        let IcmpSocket { io, buffer, .. } = self;
        let fd = io.as_raw_fd();
        // Inside `try_io`, so readiness is cleared only when this read found the socket
        // empty, never for a message that came after it looked; once for each interest, as
        // each is cleared on its own (the second finds nothing unless more came).
        let mut more = true;
        for interest in [Interest::READABLE, Interest::ERROR] {
            let _ = io.try_io(interest, || {
                while more && let Some((received, len)) = recv(fd, buffer) {
                    more = take(received, &buffer[..len]);
                }
                if more {
                    Err(std::io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(())
                }
            });
        }
    }
}

/// Reads one message or queued error without blocking; `None` when there is nothing. The
/// length is that of the bytes in `buffer`.
fn recv(fd: RawFd, buffer: &mut [u8]) -> Option<(Received, usize)> {
    // Room for a TTL and an extended error with its offender's address, several times over.
    let mut control = [0u8; 256];
    // Errors first: a queued error wakes the socket too.
    for flags in [MsgFlags::MSG_ERRQUEUE, MsgFlags::empty()] {
        let mut iov = [IoSliceMut::new(buffer)];
        let flags = flags | MsgFlags::MSG_DONTWAIT;
        let message =
            match socket::recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut control), flags) {
                Ok(message) => message,
                Err(Errno::EAGAIN) => continue,
                Err(errno) => return Some((Received::Errno(errno), 0)),
            };
        let len = message.bytes;
        let mut hop_limit = None;
        let mut error = None;
        for cmsg in message.cmsgs().into_iter().flatten() {
            match cmsg {
                ControlMessageOwned::Ipv4Ttl(ttl) | ControlMessageOwned::Ipv6HopLimit(ttl) => {
                    hop_limit = u8::try_from(ttl).ok();
                }
                ControlMessageOwned::Ipv4RecvErr(err, from) => {
                    let from = from.map(|addr| {
                        IpAddr::from(std::net::Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)))
                    });
                    error = Some((err.ee_origin, err.ee_type, err.ee_code, err.ee_errno, from));
                }
                ControlMessageOwned::Ipv6RecvErr(err, from) => {
                    let from = from
                        .map(|addr| IpAddr::from(std::net::Ipv6Addr::from(addr.sin6_addr.s6_addr)));
                    error = Some((err.ee_origin, err.ee_type, err.ee_code, err.ee_errno, from));
                }
                _ => {}
            }
        }
        let received = match error {
            // SO_EE_ORIGIN_ICMP and SO_EE_ORIGIN_ICMP6: an error a host sent.
            Some((2 | 3, kind, code, _, from)) => Received::Error { kind, code, from },
            Some((_, _, _, errno, _)) => Received::Errno(Errno::from_raw(errno as i32)),
            None if flags.contains(MsgFlags::MSG_ERRQUEUE) => continue,
            None => Received::Message { hop_limit },
        };
        return Some((received, len.min(buffer.len())));
    }
    None
}

/// Sets the TTL, don't-fragment (on or off), and asks for the reply TTL and for ICMP errors.
fn configure(fd: &OwnedFd, v6: bool, options: Options) -> nix::Result<()> {
    if v6 {
        socket::setsockopt(fd, sockopt::Ipv6RecvHopLimit, &true)?;
        socket::setsockopt(fd, sockopt::Ipv6RecvErr, &true)?;
        if let Some(ttl) = options.ttl {
            socket::setsockopt(fd, sockopt::Ipv6Ttl, &i32::from(ttl))?;
        }
        if options.dont_fragment {
            socket::setsockopt(fd, sockopt::Ipv6DontFrag, &true)?;
        }
    } else {
        socket::setsockopt(fd, sockopt::Ipv4RecvTtl, &true)?;
        socket::setsockopt(fd, sockopt::Ipv4RecvErr, &true)?;
        if let Some(ttl) = options.ttl {
            socket::setsockopt(fd, sockopt::Ipv4Ttl, &i32::from(ttl))?;
        }
        // Without the option, DF is off: the kernel's default (path MTU discovery, "want")
        // would set DF too, so a request over a smaller MTU on the path would come back as
        // "fragmentation needed" instead of being fragmented.
        let discovery = if options.dont_fragment {
            rustix::net::sockopt::Ipv4PathMtuDiscovery::DO
        } else {
            rustix::net::sockopt::Ipv4PathMtuDiscovery::DONT
        };
        rustix::net::sockopt::set_ip_mtu_discover(fd.as_fd(), discovery)
            .map_err(|error| Errno::from_raw(error.raw_os_error()))?;
    }
    Ok(())
}

fn bind(fd: &OwnedFd, source: IpAddr) -> nix::Result<()> {
    match SocketAddr::new(source, 0) {
        SocketAddr::V4(addr) => socket::bind(fd.as_raw_fd(), &SockaddrIn::from(addr)),
        SocketAddr::V6(addr) => socket::bind(fd.as_raw_fd(), &SockaddrIn6::from(addr)),
    }
}

fn connect(fd: &OwnedFd, target: IpAddr) -> nix::Result<()> {
    match SocketAddr::new(target, 0) {
        SocketAddr::V4(addr) => socket::connect(fd.as_raw_fd(), &SockaddrIn::from(addr)),
        SocketAddr::V6(addr) => socket::connect(fd.as_raw_fd(), &SockaddrIn6::from(addr)),
    }
}

/// An errno as a person reads it.
pub fn describe(errno: Errno) -> String {
    std::io::Error::from(errno).to_string()
}

/// The failure when neither socket opens: `permission` with what to change when privilege
/// was missing, the errors as they came otherwise (no IPv6 on this host).
fn no_socket(v6: bool, dgram: Errno, raw: Errno) -> Failure {
    let family = if v6 { "ICMPv6" } else { "ICMP" };
    let denied = |errno: Errno| matches!(errno, Errno::EACCES | Errno::EPERM);
    if denied(dgram) && denied(raw) {
        let gid = rustix::process::getegid().as_raw();
        return Failure::new(
            FailureReason::Permission,
            format!(
                "cannot open an {family} socket: unprivileged datagram sockets are off for group \
                 {gid} (net.ipv4.ping_group_range does not include it) and raw sockets need \
                 CAP_NET_RAW; allow one: `sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"` \
                 (per network namespace), or give the agent CAP_NET_RAW (`setcap cap_net_raw+ep` \
                 on the binary, or AmbientCapabilities=CAP_NET_RAW in its systemd unit)"
            ),
        );
    }
    let errno = if denied(dgram) { raw } else { dgram };
    Failure::new(
        FailureReason::Unreachable,
        format!("cannot open an {family} socket: {}", describe(errno)),
    )
}
