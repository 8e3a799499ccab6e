//! The client's address: the TCP peer, or, when the peer is a trusted proxy, the rightmost
//! address in its forwarding header that is not itself a trusted proxy.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Request, header};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

use crate::app::AppState;
use crate::config::ForwardedHeader;

/// What the request says about its client once the forwarding headers are weighed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    pub ip: IpAddr,
    /// The scheme the nearest trusted proxy says the client used; `None` without a trusted
    /// proxy or without the header.
    pub https: Option<bool>,
}

/// The address every limit, log line and audit record keys on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl std::fmt::Display for ClientIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

fn peer(parts: &Parts) -> IpAddr {
    // `serve` always installs ConnectInfo; a router driven without it keys on one shared bucket.
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<ClientIp, Infallible> {
        let r = resolve(
            peer(parts),
            &parts.headers,
            &app.config.trusted_proxies,
            app.config.forwarded_header,
        );
        Ok(ClientIp(r.ip))
    }
}

/// Behind a trusted proxy that says the browser came over HTTPS, cookies get `Secure` even if
/// the issuer is (wrongly) configured as http. A header can add the flag, never remove it: with
/// an https issuer every cookie is already `Secure` and `__Host-` prefixed.
pub async fn secure_cookies(State(app): State<AppState>, req: Request<axum::body::Body>, next: Next) -> Response {
    let https = if app.config.issuer_is_https || app.config.trusted_proxies.is_empty() {
        None
    } else {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        resolve(peer, req.headers(), &app.config.trusted_proxies, app.config.forwarded_header).https
    };
    let mut resp = next.run(req).await;
    if https == Some(true) {
        let cookies: Vec<HeaderValue> = resp.headers_mut().get_all(header::SET_COOKIE).iter().cloned().collect();
        resp.headers_mut().remove(header::SET_COOKIE);
        for c in cookies {
            let secured = match c.to_str() {
                Ok(s) if !s.to_ascii_lowercase().contains("; secure") => HeaderValue::from_str(&format!("{s}; Secure")).unwrap_or(c),
                _ => c,
            };
            resp.headers_mut().append(header::SET_COOKIE, secured);
        }
    }
    resp
}

fn trusted(ip: IpAddr, nets: &[IpNet]) -> bool {
    nets.iter().any(|n| n.contains(&ip))
}

/// The client address and scheme for a request from `peer`. Headers count only when `peer` is
/// trusted; then hops are read right to left (each proxy appends the address it saw) and the
/// first untrusted one is the client. A hop that is not an address (RFC 7239 §6.2 `unknown`,
/// §6.3 obfuscated `_name`, garbage) stops the walk at the trusted proxy that reported it, so
/// no client can choose its own bucket by sending something unparsable.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted_nets: &[IpNet], which: ForwardedHeader) -> Resolved {
    let peer = peer.to_canonical();
    if !trusted(peer, trusted_nets) {
        return Resolved { ip: peer, https: None };
    }
    let (hops, proto) = match which {
        ForwardedHeader::XForwardedFor => {
            let hops: Vec<Option<IpAddr>> = values(headers, "x-forwarded-for")
                .flat_map(|v| v.split(',').map(node).collect::<Vec<_>>())
                .collect();
            let proto = values(headers, "x-forwarded-proto")
                .flat_map(|v| v.split(','))
                .last()
                .map(str::trim)
                .map(str::to_owned);
            (hops, proto)
        }
        ForwardedHeader::Forwarded => {
            let elements: Vec<Element> = values(headers, "forwarded")
                .flat_map(|v| split_quoted(v, ','))
                .map(element)
                .collect();
            let proto = elements.last().and_then(|e| e.proto.clone());
            (elements.into_iter().map(|e| e.for_.and_then(|f| node(&f))).collect(), proto)
        }
    };
    let https = proto.map(|p| p.eq_ignore_ascii_case("https"));
    let mut nearest = peer;
    for hop in hops.into_iter().rev() {
        match hop.map(|ip| ip.to_canonical()) {
            Some(ip) if trusted(ip, trusted_nets) => nearest = ip,
            Some(ip) => return Resolved { ip, https },
            None => break,
        }
    }
    Resolved { ip: nearest, https }
}

/// Every value of a header that may be repeated, in order; a value that is not text is dropped.
fn values<'a>(headers: &'a HeaderMap, name: &'static str) -> impl Iterator<Item = &'a str> {
    headers.get_all(name).iter().filter_map(|v| v.to_str().ok())
}

/// One `Forwarded` element (RFC 7239 §4): only `for` and `proto` matter here.
#[derive(Default)]
struct Element {
    for_: Option<String>,
    proto: Option<String>,
}

fn element(s: String) -> Element {
    let mut e = Element::default();
    for pair in split_quoted(&s, ';') {
        let Some((k, v)) = pair.split_once('=') else { continue };
        let v = unquote(v.trim());
        match k.trim().to_ascii_lowercase().as_str() {
            "for" => e.for_ = Some(v),
            "proto" => e.proto = Some(v),
            _ => {}
        }
    }
    e
}

/// Splits on `sep` outside quoted strings (RFC 7230 §3.2.6), so a quoted value cannot fake
/// another element.
fn split_quoted(s: &str, sep: char) -> Vec<String> {
    let (mut out, mut cur, mut quoted, mut escaped) = (Vec::new(), String::new(), false, false);
    for c in s.chars() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            out.push(std::mem::take(&mut cur));
            continue;
        }
        cur.push(c);
    }
    out.push(cur);
    out
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::new();
            let mut escaped = false;
            for c in inner.chars() {
                if !escaped && c == '\\' {
                    escaped = true;
                    continue;
                }
                escaped = false;
                out.push(c);
            }
            out
        }
        None => v.to_owned(),
    }
}

/// A node (RFC 7239 §6): `192.0.2.60`, `192.0.2.60:8080`, `[2001:db8::1]`, `[2001:db8::1]:4711`,
/// or a bare IPv6 address as X-Forwarded-For writes it. Anything else is not an address.
fn node(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(port)) {
            return None;
        }
        return addr.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    let (addr, p) = s.rsplit_once(':')?;
    if !port(p) {
        return None;
    }
    addr.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A port, or an obfuscated port (`_abc`, RFC 7239 §6.3).
fn port(p: &str) -> bool {
    p.parse::<u16>().is_ok()
        || (p.starts_with('_')
            && p.len() > 1
            && p[1..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const PROXY: &str = "10.0.0.1";

    fn xff(trusted: &[&str], pairs: &[(&'static str, &str)]) -> IpAddr {
        resolve(ip(PROXY), &headers(pairs), &nets(trusted), ForwardedHeader::XForwardedFor).ip
    }

    fn fwd(trusted: &[&str], pairs: &[(&'static str, &str)]) -> IpAddr {
        resolve(ip(PROXY), &headers(pairs), &nets(trusted), ForwardedHeader::Forwarded).ip
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        assert_eq!(xff(&[], &[("x-forwarded-for", "203.0.113.9")]), ip(PROXY));
        assert_eq!(fwd(&["192.168.0.0/16"], &[("forwarded", "for=203.0.113.9")]), ip(PROXY));
        let r = resolve(
            ip(PROXY),
            &headers(&[("x-forwarded-proto", "https")]),
            &[],
            ForwardedHeader::XForwardedFor,
        );
        assert_eq!(r.https, None);
    }

    #[test]
    fn x_forwarded_for_takes_the_rightmost_untrusted_address() {
        let t = &["10.0.0.0/8"];
        for (value, want) in [
            ("203.0.113.9", "203.0.113.9"),
            // The leftmost is whatever the client wrote; the proxy appended the real peer.
            ("1.1.1.1, 203.0.113.9", "203.0.113.9"),
            ("1.1.1.1, 203.0.113.9, 10.0.0.7", "203.0.113.9"),
            ("203.0.113.9:4711", "203.0.113.9"),
            (" 2001:db8::1 ", "2001:db8::1"),
            ("[2001:db8::1]:4711", "2001:db8::1"),
            // v4-mapped IPv6 is the IPv4 address: one client, one bucket.
            ("::ffff:203.0.113.9", "203.0.113.9"),
            // Every hop trusted: the farthest proxy is the best we know.
            ("10.0.0.9, 10.0.0.8", "10.0.0.9"),
            // Garbage stops the walk at the trusted proxy that reported it.
            ("1.1.1.1, garbage", PROXY),
            ("1.1.1.1, unknown, 10.0.0.5", "10.0.0.5"),
            ("", PROXY),
            ("1.1.1.1,,", PROXY),
            ("999.1.1.1", PROXY),
            ("[2001:db8::1]:notaport", PROXY),
        ] {
            assert_eq!(xff(t, &[("x-forwarded-for", value)]), ip(want), "{value:?}");
        }
        assert_eq!(xff(t, &[]), ip(PROXY), "no header");
    }

    #[test]
    fn repeated_headers_are_one_list_in_order() {
        let t = &["10.0.0.0/8"];
        let h = [("x-forwarded-for", "198.51.100.1"), ("x-forwarded-for", "203.0.113.9, 10.0.0.3")];
        assert_eq!(xff(t, &h), ip("203.0.113.9"));
        let h = [("forwarded", "for=198.51.100.1"), ("forwarded", "for=203.0.113.9")];
        assert_eq!(fwd(t, &h), ip("203.0.113.9"));
    }

    #[test]
    fn forwarded_nodes() {
        let t = &["10.0.0.0/8", "fd00::/8"];
        for (value, want) in [
            ("for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
            ("for=\"[2001:db8::1]:4711\"", "2001:db8::1"),
            ("For=\"[2001:db8:cafe::17]\"", "2001:db8:cafe::17"),
            ("for=192.0.2.43, for=198.51.100.17", "198.51.100.17"),
            ("for=198.51.100.17, for=\"[fd00::1]\"", "198.51.100.17"),
            ("for=\"192.0.2.43:_hidden\"", "192.0.2.43"),
            // Obfuscated identifiers and `unknown` name no address.
            ("for=198.51.100.17, for=_hidden", PROXY),
            ("for=198.51.100.17, for=unknown", PROXY),
            ("for=\"_gazonk\"", PROXY),
            // A quoted value cannot smuggle an element of its own.
            ("for=\"x, for=1.2.3.4\"", PROXY),
            ("proto=https", PROXY),
            ("for=", PROXY),
            ("garbage;;;,,\"", PROXY),
            ("for=\"[::ffff:192.0.2.1]\"", "192.0.2.1"),
        ] {
            assert_eq!(fwd(t, &[("forwarded", value)]), ip(want), "{value:?}");
        }
    }

    #[test]
    fn only_the_configured_header_counts() {
        let t = &["10.0.0.0/8"];
        // Behind an X-Forwarded-For proxy, a client's own Forwarded header passes through.
        assert_eq!(xff(t, &[("forwarded", "for=1.2.3.4")]), ip(PROXY));
        assert_eq!(fwd(t, &[("x-forwarded-for", "1.2.3.4")]), ip(PROXY));
    }

    #[test]
    fn peer_ranges_and_mapped_peers() {
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        let r = resolve(ip("::ffff:127.0.0.1"), &h, &nets(&["127.0.0.1/32"]), ForwardedHeader::XForwardedFor);
        assert_eq!(r.ip, ip("203.0.113.9"), "a v4-mapped peer matches an IPv4 range");
        let r = resolve(ip("2001:db8::5"), &h, &nets(&["2001:db8::/64"]), ForwardedHeader::XForwardedFor);
        assert_eq!(r.ip, ip("203.0.113.9"));
        let r = resolve(ip("2001:db9::5"), &h, &nets(&["2001:db8::/64"]), ForwardedHeader::XForwardedFor);
        assert_eq!(r.ip, ip("2001:db9::5"));
    }

    #[test]
    fn proto_comes_from_the_nearest_proxy() {
        let t = nets(&["10.0.0.0/8"]);
        let r = |pairs: &[(&'static str, &str)], w| resolve(ip(PROXY), &headers(pairs), &t, w).https;
        assert_eq!(r(&[("x-forwarded-proto", "https")], ForwardedHeader::XForwardedFor), Some(true));
        assert_eq!(
            r(&[("x-forwarded-proto", "https, http")], ForwardedHeader::XForwardedFor),
            Some(false)
        );
        assert_eq!(r(&[], ForwardedHeader::XForwardedFor), None);
        assert_eq!(
            r(
                &[("forwarded", "for=1.2.3.4;proto=http, for=5.6.7.8;proto=HTTPS")],
                ForwardedHeader::Forwarded
            ),
            Some(true)
        );
    }
}
