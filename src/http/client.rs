//! The client's address: the socket peer, or what a trusted proxy says in `X-Forwarded-For`.

use std::net::{IpAddr, SocketAddr};

use actix_web::HttpRequest;
use ipnet::IpNet;

/// The address a request came from. `X-Forwarded-For` counts only when the peer is one of
/// `trusted` (`WOPIGATE_TRUSTED_PROXIES`): then the client is the right-most address in it that
/// is not itself a trusted proxy (anything left of that the client may have written itself).
pub fn client_address(req: &HttpRequest, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let forwarded: Vec<&str> =
        req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok()).collect();
    Some(from_forwarded(peer, &forwarded, trusted))
}

pub fn from_forwarded(peer: IpAddr, forwarded_for: &[&str], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(&client) {
        return client;
    }
    // Headers in order, each a comma-separated list: the last entry is the nearest hop.
    for hop in forwarded_for.iter().rev().flat_map(|h| h.rsplit(',')) {
        // A hop that is not an address ends the walk: the nearest trusted hop answers for it.
        let Some(ip) = parse_hop(hop.trim()) else { break };
        client = ip.to_canonical();
        if !is_trusted(&client) {
            break;
        }
    }
    client
}

/// `192.0.2.1`, `2001:db8::1`, or with a port: `192.0.2.1:443`, `[2001:db8::1]:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>().ok().or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn untrusted_peers_are_the_client() {
        assert_eq!(from_forwarded(ip("192.0.2.9"), &["203.0.113.1"], &[]), ip("192.0.2.9"));
        assert_eq!(from_forwarded(ip("192.0.2.9"), &["203.0.113.1"], &nets(&["10.0.0.0/8"])), ip("192.0.2.9"));
        assert_eq!(from_forwarded(ip("::ffff:192.0.2.9"), &[], &[]), ip("192.0.2.9"));
    }

    #[test]
    fn trusted_proxies_name_the_right_most_untrusted_hop() {
        let trusted = nets(&["10.0.0.0/8", "127.0.0.1/32"]);
        let peer = ip("127.0.0.1");
        assert_eq!(from_forwarded(peer, &["203.0.113.1"], &trusted), ip("203.0.113.1"));
        // A client-written left part is ignored; trusted hops are skipped.
        assert_eq!(from_forwarded(peer, &["6.6.6.6, 203.0.113.1, 10.1.1.1"], &trusted), ip("203.0.113.1"));
        // Several headers are one list, in order.
        assert_eq!(from_forwarded(peer, &["6.6.6.6", "203.0.113.1", "10.1.1.1"], &trusted), ip("203.0.113.1"));
        // Ports and brackets.
        assert_eq!(from_forwarded(peer, &["[2001:db8::1]:443"], &trusted), ip("2001:db8::1"));
        assert_eq!(from_forwarded(peer, &["203.0.113.1:5555"], &trusted), ip("203.0.113.1"));
        // Garbage: the nearest trusted hop answers.
        assert_eq!(from_forwarded(peer, &["203.0.113.1, unknown, 10.1.1.1"], &trusted), ip("10.1.1.1"));
        // No header, or every hop trusted: the left-most trusted address.
        assert_eq!(from_forwarded(peer, &[], &trusted), peer);
        assert_eq!(from_forwarded(peer, &["10.2.2.2, 10.1.1.1"], &trusted), ip("10.2.2.2"));
    }
}
