//! Endpoints (`tcp/10.0.0.5:7447`) checked before zenoh sees them. zenoh takes some
//! malformed ones (`tcp/`, a port past 65535) and then only waits for a peer that can
//! never answer, which tells the user nothing; these are refused at once, by name.

use thiserror::Error;

/// Protocols whose address is `HOST:PORT`.
const HOST_PORT_PROTOCOLS: [&str; 5] = ["tcp", "udp", "tls", "quic", "ws"];
/// Protocols whose address is a path.
const PATH_PROTOCOLS: [&str; 2] = ["unixsock-stream", "unixpipe"];

/// Whether the endpoint is listened on (port 0 asks for a free port) or connected to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointUse {
    Listen,
    Connect,
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("endpoint {endpoint:?}: {reason}; write PROTOCOL/HOST:PORT, e.g. tcp/10.0.0.5:7447")]
pub struct EndpointError {
    pub endpoint: String,
    pub reason: String,
}

/// Checks the endpoint's form: a known protocol, and `HOST:PORT` with a port from 1 to
/// 65535 (0 too, to listen) or, for local sockets, a path. zenoh's own suffixes (`#...`,
/// `?...`) are left to zenoh.
pub fn check_endpoint(endpoint: &str, usage: EndpointUse) -> Result<(), EndpointError> {
    let refuse = |reason: String| EndpointError {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let Some((protocol, rest)) = endpoint.split_once('/') else {
        return Err(refuse("no protocol".to_owned()));
    };
    let address = rest.split(['#', '?']).next().unwrap_or_default();
    if PATH_PROTOCOLS.contains(&protocol) {
        return match address.is_empty() {
            true => Err(refuse("no socket path".to_owned())),
            false => Ok(()),
        };
    }
    if !HOST_PORT_PROTOCOLS.contains(&protocol) {
        let known = [&HOST_PORT_PROTOCOLS[..], &PATH_PROTOCOLS[..]]
            .concat()
            .join(", ");
        return Err(refuse(format!(
            "unknown protocol {protocol:?} (known: {known})"
        )));
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(refuse("no port".to_owned()));
    };
    if host.is_empty() || host.contains('/') {
        return Err(refuse(format!("no valid host in {address:?}")));
    }
    let lowest = match usage {
        EndpointUse::Listen => 0,
        EndpointUse::Connect => 1,
    };
    match port.parse::<u32>() {
        Ok(p) if (lowest..=u32::from(u16::MAX)).contains(&p) => Ok(()),
        _ => Err(refuse(format!("port {port:?} is not {lowest} to 65535"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_endpoints_pass() {
        for e in [
            "tcp/127.0.0.1:7447",
            "tcp/[::1]:7447",
            "udp/10.0.0.5:1",
            "tls/master.example:7447",
            "tcp/127.0.0.1:7447#iface=lo",
            "unixsock-stream//tmp/zenoh.sock",
        ] {
            assert_eq!(check_endpoint(e, EndpointUse::Connect), Ok(()), "{e}");
        }
        assert_eq!(
            check_endpoint("tcp/127.0.0.1:0", EndpointUse::Listen),
            Ok(())
        );
    }

    #[test]
    fn malformed_endpoints_are_refused_by_name() {
        for (e, why) in [
            ("garbage", "no protocol"),
            ("tcp/", "no port"),
            ("tcp/:7447", "no valid host"),
            ("http://127.0.0.1:7447", "unknown protocol \"http:\""),
            ("tcp/127.0.0.1:99999", "port \"99999\""),
            ("tcp/127.0.0.1:0", "port \"0\" is not 1 to 65535"),
            ("tcp/127.0.0.1:x", "port \"x\""),
            ("unixsock-stream/", "no socket path"),
        ] {
            let err = check_endpoint(e, EndpointUse::Connect).expect_err(e);
            let message = err.to_string();
            assert!(message.contains(why), "{e}: {message}");
            assert!(message.contains(&format!("{e:?}")), "{message}");
        }
    }
}
