//! The outbound address policy of the built-in `http` capability: which IP
//! addresses a request may connect to, so that a workflow cannot make the
//! server reach what only the server can reach (its loopback, the cloud's
//! metadata service, the private network it sits in: SSRF).
//!
//! Owns the default refused ranges and the operator's `allow` and `deny`
//! CIDR lists, and the one decision: an address is judged by the longest
//! (most specific) block of `allow` or `deny` that contains it (a tie is
//! refused); if none does, it is refused when a default range contains it
//! and allowed otherwise. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are
//! judged as the IPv4 address they carry.
//!
//! It must never resolve a name or connect: the client (`client`) asks it
//! about every address a name resolves to, about IP-literal URLs, and about
//! every redirect hop, and connects only to what it allows.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// A range refused unless the policy allows it, and why.
#[derive(Debug, Clone, Copy)]
struct Range {
    net: IpNet,
    what: &'static str,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8, what: &'static str) -> Range {
    Range {
        net: IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)),
        what,
    }
}

const fn v6(segments: [u16; 8], len: u8, what: &'static str) -> Range {
    let [a, b, c, d, e, f, g, h] = segments;
    Range {
        net: IpNet::V6(Ipv6Net::new_assert(
            Ipv6Addr::new(a, b, c, d, e, f, g, h),
            len,
        )),
        what,
    }
}

/// What is refused by default: every range that is not the public
/// Internet (IANA's special-purpose registries, less what is global).
const REFUSED_BY_DEFAULT: [Range; 27] = [
    v4(0, 0, 0, 0, 8, "\"this network\" (0.0.0.0/8)"),
    v4(10, 0, 0, 0, 8, "private (10.0.0.0/8)"),
    v4(100, 64, 0, 0, 10, "shared address space (100.64.0.0/10)"),
    v4(127, 0, 0, 0, 8, "loopback (127.0.0.0/8)"),
    v4(169, 254, 0, 0, 16, "link-local (169.254.0.0/16)"),
    v4(172, 16, 0, 0, 12, "private (172.16.0.0/12)"),
    v4(192, 0, 0, 0, 24, "IETF protocol assignments (192.0.0.0/24)"),
    v4(192, 0, 2, 0, 24, "documentation (192.0.2.0/24)"),
    v4(192, 88, 99, 0, 24, "6to4 relay anycast (192.88.99.0/24)"),
    v4(192, 168, 0, 0, 16, "private (192.168.0.0/16)"),
    v4(198, 18, 0, 0, 15, "benchmarking (198.18.0.0/15)"),
    v4(198, 51, 100, 0, 24, "documentation (198.51.100.0/24)"),
    v4(203, 0, 113, 0, 24, "documentation (203.0.113.0/24)"),
    v4(224, 0, 0, 0, 4, "multicast (224.0.0.0/4)"),
    v4(
        240,
        0,
        0,
        0,
        4,
        "reserved (240.0.0.0/4, broadcast included)",
    ),
    v6([0; 8], 128, "unspecified (::/128)"),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback (::1/128)"),
    v6([0; 8], 96, "IPv4-compatible (deprecated, ::/96)"),
    v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96, "NAT64 (64:ff9b::/96)"),
    v6(
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        "local NAT64 (64:ff9b:1::/48)",
    ),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only (100::/64)"),
    v6(
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        "IETF protocol assignments (2001::/23)",
    ),
    v6(
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        "documentation (2001:db8::/32)",
    ),
    v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, "6to4 (2002::/16)"),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique local (fc00::/7)"),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local (fe80::/10)"),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast (ff00::/8)"),
];

/// Which addresses requests may connect to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Blocks allowed even inside a default refused range.
    allow: Vec<IpNet>,
    /// Blocks refused even outside them.
    deny: Vec<IpNet>,
}

/// A CIDR block of the configuration that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not an IP address or a CIDR block (such as `127.0.0.1/32`, `10.0.0.0/8` or `::1/128`)"
)]
pub struct PolicyError(pub String);

/// Why an address was refused: the block that refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A default refused range, that no `allow` block overrides.
    Default(&'static str),
    /// An operator's `deny` block.
    Denied(IpNet),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Default(what) => write!(
                f,
                "it is {what}, refused unless the server's configuration allows it \
                 ([http] allow)"
            ),
            Refusal::Denied(net) => {
                write!(f, "the server's configuration denies {net} ([http] deny)")
            }
        }
    }
}

impl AddressPolicy {
    /// The default policy (every default refused range refused, everything
    /// else allowed) with the operator's blocks.
    pub fn new(allow: Vec<IpNet>, deny: Vec<IpNet>) -> AddressPolicy {
        AddressPolicy {
            allow: allow.iter().map(IpNet::trunc).collect(),
            deny: deny.iter().map(IpNet::trunc).collect(),
        }
    }

    /// Reads the blocks as the configuration writes them: CIDR blocks, or
    /// single addresses (a `/32` or `/128`). Every block that does not
    /// parse is an error.
    pub fn parse(allow: &[String], deny: &[String]) -> Result<AddressPolicy, Vec<PolicyError>> {
        let mut errors = Vec::new();
        let mut read = |texts: &[String]| -> Vec<IpNet> {
            texts
                .iter()
                .filter_map(|text| {
                    let text = text.trim();
                    IpNet::from_str(text)
                        .or_else(|_| IpAddr::from_str(text).map(IpNet::from))
                        .map_err(|_| errors.push(PolicyError(text.to_owned())))
                        .ok()
                })
                .collect()
        };
        let (allow, deny) = (read(allow), read(deny));
        if errors.is_empty() {
            Ok(AddressPolicy::new(allow, deny))
        } else {
            Err(errors)
        }
    }

    /// The operator's `allow` blocks.
    pub fn allowed(&self) -> &[IpNet] {
        &self.allow
    }

    /// The operator's `deny` blocks.
    pub fn denied(&self) -> &[IpNet] {
        &self.deny
    }

    /// Whether a request may connect to `addr`, and if not, why.
    pub fn check(&self, addr: IpAddr) -> Result<(), Refusal> {
        let addr = addr.to_canonical();
        let most_specific = |blocks: &[IpNet]| {
            blocks
                .iter()
                .filter(|net| net.contains(&addr))
                .max_by_key(|net| net.prefix_len())
                .copied()
        };
        match (most_specific(&self.allow), most_specific(&self.deny)) {
            (Some(allow), Some(deny)) if allow.prefix_len() > deny.prefix_len() => Ok(()),
            (_, Some(deny)) => Err(Refusal::Denied(deny)),
            (Some(_), None) => Ok(()),
            (None, None) => match REFUSED_BY_DEFAULT.iter().find(|r| r.net.contains(&addr)) {
                Some(range) => Err(Refusal::Default(range.what)),
                None => Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn by_default_only_the_public_internet_is_reachable() {
        let policy = AddressPolicy::default();
        for refused in [
            "127.0.0.1",
            "127.1.2.3",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "fd00::1",
            "fc00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "::7f00:1",
            "2001:db8::1",
        ] {
            assert!(policy.check(ip(refused)).is_err(), "{refused}");
        }
        for allowed in [
            "93.184.215.14",
            "1.1.1.1",
            "172.32.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(policy.check(ip(allowed)), Ok(()), "{allowed}");
        }
        assert_eq!(
            policy.check(ip("169.254.169.254")).unwrap_err().to_string(),
            "it is link-local (169.254.0.0/16), refused unless the server's configuration \
             allows it ([http] allow)"
        );
    }

    #[test]
    fn the_most_specific_block_decides() {
        let policy = AddressPolicy::parse(
            &strings(&["127.0.0.1/32", "10.0.0.0/8", "10.1.2.3"]),
            &strings(&["10.1.0.0/16", "93.184.0.0/16", "::1"]),
        )
        .unwrap();
        assert_eq!(policy.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(policy.check(ip("::ffff:127.0.0.1")), Ok(()), "mapped");
        assert!(
            policy.check(ip("127.0.0.2")).is_err(),
            "the rest of loopback"
        );
        assert_eq!(policy.check(ip("10.2.0.1")), Ok(()));
        assert_eq!(
            policy.check(ip("10.1.0.1")),
            Err(Refusal::Denied("10.1.0.0/16".parse().unwrap()))
        );
        assert_eq!(
            policy.check(ip("10.1.2.3")),
            Ok(()),
            "a /32 inside a denied /16"
        );
        assert!(
            policy.check(ip("93.184.215.14")).is_err(),
            "denied though public"
        );
        assert!(policy.check(ip("::1")).is_err());
        // A tie is refused.
        let tie = AddressPolicy::parse(&strings(&["1.2.3.0/24"]), &strings(&["1.2.3.0/24"]));
        assert!(tie.unwrap().check(ip("1.2.3.4")).is_err());
        // Host bits are ignored, as a block means its network.
        let wide = AddressPolicy::parse(&strings(&["127.0.0.9/8"]), &[]).unwrap();
        assert_eq!(wide.allowed(), ["127.0.0.0/8".parse::<IpNet>().unwrap()]);
    }

    #[test]
    fn bad_blocks_are_each_named() {
        let errors =
            AddressPolicy::parse(&strings(&["10.0.0.0/33", "ok?"]), &strings(&["localhost"]))
                .unwrap_err();
        let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(texts.len(), 3);
        assert!(texts[0].starts_with("`10.0.0.0/33` is not an IP address or a CIDR block"));
        assert!(texts[2].starts_with("`localhost`"));
    }
}
