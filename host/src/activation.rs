//! Socket activation: listening sockets handed over by systemd (or any
//! launcher speaking its protocol, `sd_listen_fds(3)`), instead of binding.
//!
//! The launcher passes descriptors 3, 4, … and sets `LISTEN_FDS` to their
//! number and `LISTEN_PID` to our pid (so a child we started would not take
//! them too); `LISTEN_FDNAMES` may name them, colon-separated. Which listener
//! each one is:
//!
//! - by name, when every socket is named `http`, `https` or `admin` (systemd:
//!   `FileDescriptorName=` in the `.socket` unit);
//! - otherwise by position: 3 is `http`, 4 `https`, 5 `admin`.
//!
//! A listener not handed over is bound from the configuration as usual.
//! Every descriptor must be a listening TCP socket; it is marked close-on-exec
//! and the variables are removed, as `sd_listen_fds(1)` does.
//!
//! No crate is used: `listenfd` knows no names and does not check the
//! sockets, and the protocol is a few lines over rustix.

use std::net::TcpListener;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// The first descriptor passed (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

/// Which of our listeners a socket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Http,
    Https,
    Admin,
}

impl Role {
    const BY_POSITION: [Role; 3] = [Role::Http, Role::Https, Role::Admin];

    fn named(name: &str) -> Option<Role> {
        match name {
            "http" => Some(Role::Http),
            "https" => Some(Role::Https),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Http => "http",
            Role::Https => "https",
            Role::Admin => "admin",
        }
    }
}

/// Why the sockets handed over cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("socket activation: LISTEN_FDS={0:?} is not a number of descriptors")]
    Count(String),
    #[error(
        "socket activation: {count} sockets passed without the names http, https, admin; \
         by position at most 3 (fd 3 http, 4 https, 5 admin)"
    )]
    TooMany { count: usize },
    #[error("socket activation: LISTEN_FDNAMES has {names} names for {count} sockets")]
    Names { names: usize, count: usize },
    #[error("socket activation: two sockets are the {} listener", .0.name())]
    Duplicate(Role),
    #[error("socket activation: fd {fd} ({}) is not a listening TCP socket: {why}", .role.name())]
    NotListeningTcp { fd: RawFd, role: Role, why: String },
}

/// The listeners handed over, by role.
#[derive(Debug, Default)]
pub struct Activated {
    pub http: Option<TcpListener>,
    pub https: Option<TcpListener>,
    pub admin: Option<TcpListener>,
}

/// Takes the sockets passed to this process, if any, and removes the
/// variables. Call it before any thread starts (it changes the environment).
pub fn from_env() -> Result<Activated, ActivationError> {
    let var = |name| std::env::var(name).ok();
    let (pid, fds, names) = (var("LISTEN_PID"), var("LISTEN_FDS"), var("LISTEN_FDNAMES"));
    if pid.is_none() && fds.is_none() {
        return Ok(Activated::default());
    }
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // Before the runtime starts: no other thread reads the environment.
        std::env::remove_var(name);
    }
    let roles = roles(
        pid.as_deref(),
        fds.as_deref(),
        names.as_deref(),
        std::process::id(),
    )?;
    let mut out = Activated::default();
    for (fd, role) in roles {
        // SAFETY: the protocol hands descriptors FIRST_FD.. to this process
        // (LISTEN_PID is ours), and nothing else in it has used them yet.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        check_listening_tcp(borrowed).map_err(|why| ActivationError::NotListeningTcp {
            fd,
            role,
            why,
        })?;
        // SAFETY: as above; from here the listener owns (and closes) it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let listener = TcpListener::from(owned);
        let slot = match role {
            Role::Http => &mut out.http,
            Role::Https => &mut out.https,
            Role::Admin => &mut out.admin,
        };
        *slot = Some(listener);
    }
    Ok(out)
}

/// The descriptors meant for us and their roles: the protocol's rules, apart
/// from the system calls so they can be tested.
fn roles(
    pid: Option<&str>,
    fds: Option<&str>,
    names: Option<&str>,
    our_pid: u32,
) -> Result<Vec<(RawFd, Role)>, ActivationError> {
    // Variables set for another process (our parent, say) are not ours.
    if pid.and_then(|p| p.trim().parse::<u32>().ok()) != Some(our_pid) {
        return Ok(Vec::new());
    }
    let fds = fds.unwrap_or("0");
    let count = fds
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|&n| n < 4096)
        .ok_or_else(|| ActivationError::Count(fds.to_owned()))?;
    let named: Option<Vec<Role>> = names
        .map(|n| n.split(':').map(Role::named).collect())
        .unwrap_or(None);
    let roles = match named {
        Some(roles) if roles.len() != count => {
            return Err(ActivationError::Names {
                names: roles.len(),
                count,
            })
        }
        Some(roles) => roles,
        None if count > Role::BY_POSITION.len() => return Err(ActivationError::TooMany { count }),
        None => Role::BY_POSITION[..count].to_vec(),
    };
    for (i, role) in roles.iter().enumerate() {
        if roles[..i].contains(role) {
            return Err(ActivationError::Duplicate(*role));
        }
    }
    Ok((FIRST_FD..).zip(roles).collect())
}

/// Checks that `fd` is a TCP socket in the listening state, and marks it
/// close-on-exec (the launcher had to clear that flag to pass it).
fn check_listening_tcp(fd: BorrowedFd<'_>) -> Result<(), String> {
    use rustix::net::{sockopt, AddressFamily, SocketType};
    let kind = sockopt::socket_type(fd).map_err(|e| format!("not a socket ({e})"))?;
    let family = sockopt::socket_domain(fd).map_err(|e| e.to_string())?;
    if kind != SocketType::STREAM || !matches!(family, AddressFamily::INET | AddressFamily::INET6) {
        return Err(format!("a {family:?} {kind:?} socket"));
    }
    if !sockopt::socket_acceptconn(fd).map_err(|e| e.to_string())? {
        return Err("not listening (listen(2) was not called)".into());
    }
    rustix::io::fcntl_setfd(fd.as_fd(), rustix::io::FdFlags::CLOEXEC).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_are_ours_only_for_our_pid() {
        assert!(roles(Some("1"), Some("2"), None, 2).unwrap().is_empty());
        assert!(roles(None, Some("2"), None, 2).unwrap().is_empty());
        assert!(roles(Some("x"), Some("2"), None, 2).unwrap().is_empty());
        assert!(roles(Some("7"), Some("0"), None, 7).unwrap().is_empty());
    }

    #[test]
    fn roles_by_position_and_by_name() {
        assert_eq!(
            roles(Some("7"), Some("2"), None, 7).unwrap(),
            [(3, Role::Http), (4, Role::Https)]
        );
        assert_eq!(
            roles(Some("7"), Some("2"), Some("admin:http"), 7).unwrap(),
            [(3, Role::Admin), (4, Role::Http)]
        );
        // systemd's default names (the unit's) mean: by position.
        assert_eq!(
            roles(Some("7"), Some("1"), Some("sluice.socket"), 7).unwrap(),
            [(3, Role::Http)]
        );
    }

    #[test]
    fn bad_variables_are_refused_naming_the_problem() {
        let e = roles(Some("7"), Some("many"), None, 7).unwrap_err();
        assert!(e.to_string().contains("LISTEN_FDS=\"many\""), "{e}");
        let e = roles(Some("7"), Some("4"), None, 7).unwrap_err();
        assert!(e.to_string().contains("at most 3"), "{e}");
        let e = roles(Some("7"), Some("2"), Some("http"), 7).unwrap_err();
        assert!(e.to_string().contains("1 names for 2 sockets"), "{e}");
        let e = roles(Some("7"), Some("2"), Some("http:http"), 7).unwrap_err();
        assert!(e.to_string().contains("two sockets are the http"), "{e}");
    }

    #[test]
    fn only_a_listening_tcp_socket_passes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        check_listening_tcp(listener.as_fd()).unwrap();
        let flags = rustix::io::fcntl_getfd(&listener).unwrap();
        assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
        let connected = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let e = check_listening_tcp(connected.as_fd()).unwrap_err();
        assert!(e.contains("not listening"), "{e}");
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(check_listening_tcp(udp.as_fd()).is_err());
        let file = std::fs::File::open("/dev/null").unwrap();
        let e = check_listening_tcp(file.as_fd()).unwrap_err();
        assert!(e.contains("not a socket"), "{e}");
    }
}
