//! IP allow-lists: `allowed_networks = ["10.0.0.0/8", "192.0.2.7"]` on a
//! listener. Graphite, telnet and line protocol over TCP or UDP carry no
//! credentials, so the source address is the only thing to check; HTTP
//! listeners may use both.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::Deserialize;

/// The networks a listener accepts connections and datagrams from; empty
/// allows every address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    nets: Vec<IpNet>,
}

impl AllowList {
    /// Allow these networks only (none: everyone).
    pub fn new(nets: Vec<IpNet>) -> AllowList {
        AllowList { nets }
    }

    /// Whether every address is allowed.
    pub fn is_open(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` may connect. An IPv4 client of a dual-stack socket
    /// (`::ffff:10.1.2.3`) is matched as IPv4.
    pub fn allows(&self, ip: IpAddr) -> bool {
        if self.nets.is_empty() {
            return true;
        }
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }
}

impl FromStr for AllowList {
    type Err = String;

    /// One network, `10.0.0.0/8` or a bare address (`192.0.2.7`, `::1`).
    fn from_str(s: &str) -> Result<AllowList, String> {
        parse_net(s).map(|n| AllowList::new(vec![n]))
    }
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(net) = IpNet::from_str(s) {
        // `10.1.2.3/8` means the network, as in most firewalls.
        return Ok(net.trunc());
    }
    IpAddr::from_str(s)
        .map(IpNet::from)
        .map_err(|_| format!("{s:?} is not a network (`10.0.0.0/8`) or an address"))
}

impl fmt::Display for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nets: Vec<String> = self.nets.iter().map(ToString::to_string).collect();
        write!(f, "[{}]", nets.join(", "))
    }
}

impl<'de> Deserialize<'de> for AllowList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<AllowList, D::Error> {
        let raw = Vec::<String>::deserialize(d)?;
        let nets = raw
            .iter()
            .map(|s| parse_net(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(serde::de::Error::custom)?;
        Ok(AllowList::new(nets))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn list(nets: &[&str]) -> AllowList {
        AllowList::new(nets.iter().map(|n| parse_net(n).unwrap()).collect())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn empty_allows_everyone() {
        let l = AllowList::default();
        assert!(l.is_open());
        assert!(l.allows(ip("203.0.113.9")));
    }

    #[test]
    fn networks_and_bare_addresses() {
        let l = list(&["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]);
        assert!(l.allows(ip("10.255.0.1")));
        assert!(!l.allows(ip("11.0.0.1")));
        assert!(l.allows(ip("192.0.2.7")));
        assert!(!l.allows(ip("192.0.2.8")));
        assert!(l.allows(ip("2001:db8::5")));
        assert!(!l.allows(ip("2001:db9::5")));
    }

    #[test]
    fn mapped_ipv4_matches_ipv4_networks() {
        let l = list(&["127.0.0.0/8"]);
        assert!(l.allows(ip("::ffff:127.0.0.1")));
        assert!(!l.allows(ip("::ffff:10.0.0.1")));
    }

    #[test]
    fn host_bits_are_cleared() {
        let l = list(&["10.1.2.3/8"]);
        assert!(l.allows(ip("10.9.9.9")));
    }

    #[test]
    fn rejects_garbage_with_the_value() {
        let err = parse_net("10.0.0.0/40").unwrap_err();
        assert!(err.contains("\"10.0.0.0/40\""), "{err}");
        assert!(parse_net("example.com").is_err());
        #[derive(Deserialize, Debug)]
        struct C {
            #[allow(dead_code)]
            allowed_networks: AllowList,
        }
        let e = toml::from_str::<C>("allowed_networks = [\"127.0.0.1\", \"x\"]").unwrap_err();
        assert!(e.to_string().contains("\"x\" is not a network"), "{e}");
    }
}
