//! Local source addresses for the client's connections (`--source-addresses`).
//!
//! One source address reaches one endpoint address over at most the kernel's ephemeral port
//! range (`net.ipv4.ip_local_port_range`, about 28,000 ports by default): past that, `connect`
//! fails with "Cannot assign requested address". Binding connections to several local addresses
//! (on Linux every address of `127.0.0.0/8` is the loopback, no set-up needed) multiplies that
//! limit. A run of several workers splits the list between them ([`SourceAddresses::share`]),
//! and each process spreads its new connections over its share in turn.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Most addresses a list may name (a range counts each of its addresses).
pub const MAX_SOURCE_ADDRESSES: usize = 4096;

/// An ordered list of local addresses to bind connections to; empty means "let the kernel
/// choose", the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceAddresses(Vec<IpAddr>);

/// A `--source-addresses` value that cannot be used; the message says how to write it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--source-addresses {given:?}: {why}; give addresses of this host, comma-separated, or an \
     IPv4 range such as 127.0.0.2-127.0.0.9"
)]
pub struct SourceAddressError {
    given: String,
    why: String,
}

impl SourceAddresses {
    /// The addresses, in order.
    pub fn addresses(&self) -> &[IpAddr] {
        &self.0
    }

    /// Whether no address was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The addresses worker `index` of `workers` binds to: with at least as many addresses as
    /// workers, every `workers`-th address from position `index` (each address serves one
    /// worker); with fewer, the one address at `index mod len` (shared by several workers).
    pub fn share(&self, workers: u32, index: u32) -> SourceAddresses {
        if self.0.is_empty() || workers <= 1 {
            return self.clone();
        }
        let (workers, index) = (workers as usize, index as usize);
        if self.0.len() >= workers {
            SourceAddresses(
                self.0
                    .iter()
                    .copied()
                    .skip(index)
                    .step_by(workers)
                    .collect(),
            )
        } else {
            SourceAddresses(vec![self.0[index % self.0.len()]])
        }
    }

    /// Checks that this host can bind every address (a TCP socket on an ephemeral port, closed
    /// at once), so a wrong address fails the run before its first request, naming it.
    pub fn check_bindable(&self) -> Result<(), SourceAddressError> {
        for address in &self.0 {
            if let Err(e) = std::net::TcpListener::bind((*address, 0)) {
                return Err(SourceAddressError {
                    given: self.to_string(),
                    why: format!("cannot bind {address} ({e})"),
                });
            }
        }
        Ok(())
    }
}

impl fmt::Display for SourceAddresses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self.0.iter().map(IpAddr::to_string).collect();
        f.write_str(&list.join(","))
    }
}

impl FromStr for SourceAddresses {
    type Err = SourceAddressError;

    /// Parses `a,b,c`, where each item is an address or an inclusive IPv4 range `first-last`.
    fn from_str(given: &str) -> Result<Self, Self::Err> {
        let fail = |why: String| SourceAddressError {
            given: given.to_string(),
            why,
        };
        let mut addresses = Vec::new();
        for item in given.split(',').map(str::trim) {
            if item.is_empty() {
                return Err(fail("an item of the list is empty".into()));
            }
            match item.split_once('-') {
                Some((first, last)) => {
                    let (first, last) = match (first.trim().parse(), last.trim().parse()) {
                        (Ok(IpAddr::V4(first)), Ok(IpAddr::V4(last))) => (first, last),
                        _ => {
                            return Err(fail(format!(
                                "{item:?} is not a range of two IPv4 addresses"
                            )));
                        }
                    };
                    let (first, last) = (u32::from(first), u32::from(last));
                    if last < first {
                        return Err(fail(format!("the range {item:?} ends before it starts")));
                    }
                    if (last - first) as usize >= MAX_SOURCE_ADDRESSES {
                        return Err(fail(format!(
                            "the range {item:?} holds more than {MAX_SOURCE_ADDRESSES} addresses"
                        )));
                    }
                    addresses.extend((first..=last).map(|a| IpAddr::V4(a.into())));
                }
                None => match item.parse::<IpAddr>() {
                    Ok(address) => addresses.push(address),
                    Err(_) => return Err(fail(format!("{item:?} is not an IP address"))),
                },
            }
            if addresses.len() > MAX_SOURCE_ADDRESSES {
                return Err(fail(format!("more than {MAX_SOURCE_ADDRESSES} addresses")));
            }
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = addresses.iter().find(|a| !seen.insert(**a)) {
            return Err(fail(format!("{twice} is named twice")));
        }
        Ok(SourceAddresses(addresses))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> SourceAddresses {
        s.parse().expect("valid")
    }

    #[test]
    fn lists_and_ranges_parse_in_order() {
        assert_eq!(
            parse("127.0.0.2-127.0.0.4, ::1").to_string(),
            "127.0.0.2,127.0.0.3,127.0.0.4,::1"
        );
        assert_eq!(parse("127.0.0.9").addresses().len(), 1);
    }

    #[test]
    fn bad_lists_say_what_is_wrong() {
        for (given, says) in [
            ("127.0.0.1,,127.0.0.2", "empty"),
            ("localhost", "not an IP address"),
            ("127.0.0.9-127.0.0.2", "ends before it starts"),
            ("127.0.0.1-::1", "two IPv4"),
            ("10.0.0.0-10.1.0.0", "more than 4096"),
            ("127.0.0.2,127.0.0.2", "named twice"),
        ] {
            let error = given.parse::<SourceAddresses>().unwrap_err().to_string();
            assert!(error.contains(says), "{given}: {error}");
            assert!(error.contains("--source-addresses"), "{error}");
        }
    }

    #[test]
    fn workers_split_the_addresses_or_share_them() {
        let eight = parse("127.0.0.1-127.0.0.8");
        assert_eq!(
            eight.share(3, 1).to_string(),
            "127.0.0.2,127.0.0.5,127.0.0.8"
        );
        assert_eq!(eight.share(1, 0), eight);
        let every: Vec<IpAddr> = (0..3)
            .flat_map(|i| eight.share(3, i).addresses().to_vec())
            .collect();
        assert_eq!(every.len(), 8, "each address serves exactly one worker");
        let two = parse("127.0.0.1,127.0.0.2");
        assert_eq!(two.share(5, 4).to_string(), "127.0.0.1");
        assert_eq!(two.share(5, 3).to_string(), "127.0.0.2");
        assert!(SourceAddresses::default().share(4, 2).is_empty());
    }

    #[test]
    fn an_address_of_another_host_is_refused_before_the_run() {
        assert!(parse("127.0.0.7").check_bindable().is_ok());
        let error = parse("192.0.2.1").check_bindable().unwrap_err().to_string();
        assert!(error.contains("cannot bind 192.0.2.1"), "{error}");
    }
}
