//! The client's address behind proxies (SPEC section 13): a request's peer is the client unless
//! it is one of the trusted proxies (`--trusted-proxies`). From a trusted proxy, HTTP's
//! `Forwarded` (RFC 7239) or, without it, `X-Forwarded-For` names the hops; read from the right,
//! the first address that is not a trusted proxy is the client, so whatever a client writes into
//! those headers itself is left of that address and never believed. On the TCP protocol a
//! trusted proxy sends a PROXY protocol v2 header first ([`parse_proxy_v2`]).
//!
//! The IP rules of license models and the limits of self-service sign-up use the address found
//! here.

use hyper::header::{HeaderMap, FORWARDED};
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The proxies whose word on the client's address is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// Most hops read from the forwarding headers of one request.
const MAX_HOPS: usize = 32;

impl TrustedProxies {
    /// Ranges in CIDR notation (a bare address is a range of one), separated by commas.
    pub fn parse(list: &str) -> Result<TrustedProxies, String> {
        let mut ranges = Vec::new();
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let range = match part.parse::<IpNet>() {
                Ok(range) => range,
                Err(_) => {
                    IpNet::from(part.parse::<IpAddr>().map_err(|_| format!("{part:?} is no CIDR range or address"))?)
                }
            };
            ranges.push(range);
        }
        Ok(TrustedProxies(ranges))
    }

    /// Whether any proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|range| range.contains(&ip))
    }

    /// The client of a request that came from `peer` with `headers`.
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops = if headers.contains_key(FORWARDED) { forwarded_for(headers) } else { x_forwarded_for(headers) };
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop {
                Some(ip) if self.trusts(*ip) => client = *ip,
                Some(ip) => return *ip,
                // A hop that names no address (`unknown`, an obfuscated name, garbage): nothing
                // left of it can be checked, so the last proxy known is the client seen.
                None => return client,
            }
        }
        client
    }
}

/// An IPv4 address mapped into IPv6 (a dual-stack socket's peer) as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The `for=` of every element of every `Forwarded` header, in order.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let elements = headers.get_all(FORWARDED).iter().flat_map(|v| v.to_str().unwrap_or("").split(','));
    elements
        .map(|element| {
            let pairs = element.split(';').filter_map(|pair| pair.split_once('='));
            let node = pairs.filter(|(name, _)| name.trim().eq_ignore_ascii_case("for")).map(|(_, v)| v).next();
            node.and_then(|v| node_address(v.trim().trim_matches('"')))
        })
        .take(MAX_HOPS)
        .collect()
}

/// Every address of every `X-Forwarded-For` header, in order.
fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = headers.get_all("x-forwarded-for").iter().flat_map(|v| v.to_str().unwrap_or("").split(','));
    values.map(|v| node_address(v.trim())).take(MAX_HOPS).collect()
}

/// The address of a node as the headers write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`
/// or `[2001:db8::1]:4711`.
fn node_address(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(socket) = node.parse::<SocketAddr>() {
        return Some(canonical(socket.ip()));
    }
    node.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')).and_then(|v6| v6.parse().ok()).map(canonical)
}

/// The 12 bytes a PROXY protocol v2 header starts with.
pub const PROXY_V2_SIGNATURE: [u8; 12] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];

/// Longest PROXY v2 header read (addresses and extensions).
pub const MAX_PROXY_HEADER_BYTES: usize = 16 + 512;

/// What the first bytes of a connection from a trusted proxy say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyHeader {
    /// Not enough bytes yet to tell.
    Incomplete,
    /// No PROXY v2 header: the connection starts with the client's own bytes.
    Absent,
    /// A header of `len` bytes naming the client (`None`: a health check of the proxy's own, or
    /// an address family without one; the peer is the client then).
    Parsed {
        /// The client's address.
        client: Option<IpAddr>,
        /// The header's length, to skip.
        len: usize,
    },
    /// A header that is not valid.
    Invalid(String),
}

/// Reads a PROXY protocol v2 header at the start of `bytes`.
pub fn parse_proxy_v2(bytes: &[u8]) -> ProxyHeader {
    let signature_seen = bytes.len().min(PROXY_V2_SIGNATURE.len());
    if bytes[..signature_seen] != PROXY_V2_SIGNATURE[..signature_seen] {
        return ProxyHeader::Absent;
    }
    if bytes.len() < 16 {
        return ProxyHeader::Incomplete;
    }
    let (version, command) = (bytes[12] >> 4, bytes[12] & 0x0F);
    if version != 2 || command > 1 {
        return ProxyHeader::Invalid(format!("version {version} command {command}"));
    }
    let len = 16 + usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    if len > MAX_PROXY_HEADER_BYTES {
        return ProxyHeader::Invalid(format!("a header of {len} bytes"));
    }
    if bytes.len() < len {
        return ProxyHeader::Incomplete;
    }
    let addresses = &bytes[16..len];
    let client = match (command, bytes[13] >> 4) {
        // LOCAL: the proxy speaks for itself.
        (0, _) => None,
        (_, 1) if addresses.len() >= 12 => {
            Some(IpAddr::V4(Ipv4Addr::new(addresses[0], addresses[1], addresses[2], addresses[3])))
        }
        (_, 2) if addresses.len() >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&addresses[..16]);
            Some(canonical(IpAddr::V6(Ipv6Addr::from(octets))))
        }
        (_, 1 | 2) => return ProxyHeader::Invalid("the addresses are cut short".into()),
        _ => None,
    };
    ProxyHeader::Parsed { client, len }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn only_a_trusted_peers_headers_are_believed_and_the_rightmost_untrusted_hop_is_the_client() {
        let trusted = TrustedProxies::parse("10.0.0.0/8, 192.0.2.7").unwrap();
        let spoofed = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(trusted.client_of(ip("198.51.100.1"), &spoofed), ip("198.51.100.1"), "an untrusted peer");
        let chain = headers(&[("x-forwarded-for", "203.0.113.9, 198.51.100.4, 10.1.1.1")]);
        assert_eq!(trusted.client_of(ip("192.0.2.7"), &chain), ip("198.51.100.4"), "what the client wrote is left");
        let split = headers(&[("x-forwarded-for", "203.0.113.9"), ("x-forwarded-for", "10.2.2.2")]);
        assert_eq!(trusted.client_of(ip("10.0.0.1"), &split), ip("203.0.113.9"));
        let forwarded = headers(&[("forwarded", r#"for=203.0.113.9, for="[2001:db8::1]:4711";proto=https"#)]);
        assert_eq!(trusted.client_of(ip("10.0.0.1"), &forwarded), ip("2001:db8::1"));
        let garbage = headers(&[("x-forwarded-for", "203.0.113.9, not-an-address, 10.3.3.3")]);
        assert_eq!(trusted.client_of(ip("10.0.0.1"), &garbage), ip("10.3.3.3"), "stops at what it cannot read");
        assert_eq!(trusted.client_of(ip("::ffff:10.0.0.1"), &spoofed), ip("203.0.113.9"), "a mapped peer");
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("").unwrap().is_empty());
    }

    #[test]
    fn proxy_v2_headers_are_read_and_others_told_apart() {
        let mut v4 = PROXY_V2_SIGNATURE.to_vec();
        v4.extend_from_slice(&[0x21, 0x11, 0x00, 0x0C, 203, 0, 113, 9, 10, 0, 0, 1, 0x1F, 0x90, 0x1B, 0x9E]);
        assert_eq!(parse_proxy_v2(&v4), ProxyHeader::Parsed { client: Some(ip("203.0.113.9")), len: 28 });
        assert_eq!(parse_proxy_v2(&v4[..20]), ProxyHeader::Incomplete);
        assert_eq!(parse_proxy_v2(&v4[..5]), ProxyHeader::Incomplete);
        let mut local = PROXY_V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(parse_proxy_v2(&local), ProxyHeader::Parsed { client: None, len: 16 });
        assert_eq!(parse_proxy_v2(b"\x00\x00\x00\x20\x01"), ProxyHeader::Absent);
        let mut v1 = PROXY_V2_SIGNATURE.to_vec();
        v1.extend_from_slice(&[0x11, 0x11, 0x00, 0x0C]);
        assert!(matches!(parse_proxy_v2(&v1), ProxyHeader::Invalid(_)));
        let mut short = PROXY_V2_SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4]);
        assert!(matches!(parse_proxy_v2(&short), ProxyHeader::Invalid(_)));
    }
}
