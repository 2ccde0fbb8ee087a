//! Who is sending, and whether they may: the client address (the peer, or
//! `X-Forwarded-For` when the peer is a configured proxy) and token buckets
//! per client and for everyone (governor's GCRA), answered with 429 and
//! `Retry-After`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

use crate::config::RumConfig;

/// An address or CIDR block from `rum.trusted_proxies`.
pub fn parse_proxy(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// The client behind a request.
#[derive(Debug, Clone)]
pub struct ClientResolver {
    trusted: Vec<IpNet>,
}

impl ClientResolver {
    /// From the validated `rum.trusted_proxies`.
    pub fn new(trusted: &[String]) -> Self {
        Self {
            trusted: trusted.iter().filter_map(|t| parse_proxy(t)).collect(),
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The peer, unless it is a trusted proxy: then the right-most address of
    /// `X-Forwarded-For` that is not itself a trusted proxy (the left part of
    /// the header is whatever the client wrote).
    pub fn client(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        if !self.is_trusted(peer) {
            return peer;
        }
        let mut client = peer;
        for hop in forwarded_for
            .iter()
            .rev()
            .flat_map(|h| h.rsplit(','))
            .map(str::trim)
        {
            let Ok(ip) = hop.parse::<IpAddr>() else {
                // Garbage in the chain: stop at the last address we could check.
                break;
            };
            client = ip;
            if !self.is_trusted(ip) {
                break;
            }
        }
        client
    }
}

/// Why a beacon may not pass now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// This client sends too fast.
    Client(Duration),
    /// Everyone together does.
    Global(Duration),
}

/// Per-client and global token buckets.
#[derive(Debug)]
pub struct BeaconLimiter {
    clients: DefaultKeyedRateLimiter<IpAddr>,
    global: DefaultDirectRateLimiter,
    max_clients: usize,
    clock: DefaultClock,
}

fn quota(rate: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst.max(rate.get())).unwrap_or(rate);
    Quota::per_second(rate).allow_burst(burst)
}

impl BeaconLimiter {
    /// From `[rum]`.
    pub fn new(config: &RumConfig) -> Self {
        Self {
            clients: RateLimiter::keyed(quota(config.client_rate, config.client_burst)),
            global: RateLimiter::direct(quota(config.global_rate, config.global_burst)),
            max_clients: config.max_clients,
            clock: DefaultClock::default(),
        }
    }

    /// Takes one token from `client`'s bucket and one from the global one.
    pub fn check(&self, client: IpAddr) -> Result<(), Throttled> {
        if self.clients.len() >= self.max_clients {
            // A spray of addresses must not grow the map: until housekeeping
            // forgets clients whose buckets have refilled, everyone waits.
            return Err(Throttled::Global(Duration::from_secs(1)));
        }
        if let Err(not_until) = self.clients.check_key(&client) {
            return Err(Throttled::Client(
                not_until.wait_time_from(self.clock.now()),
            ));
        }
        self.global
            .check()
            .map_err(|not_until| Throttled::Global(not_until.wait_time_from(self.clock.now())))
    }

    /// Forgets clients whose buckets have refilled (housekeeping).
    pub fn prune(&self) {
        self.clients.retain_recent();
        self.clients.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let resolver = ClientResolver::new(&["10.0.0.0/8".into(), "192.0.2.7".into()]);
        // From the internet directly: the header is whatever the client wrote.
        assert_eq!(
            resolver.client(ip("203.0.113.9"), &["1.2.3.4"]),
            ip("203.0.113.9")
        );
        // Through our proxy: the client it saw.
        assert_eq!(
            resolver.client(ip("10.1.1.1"), &["1.2.3.4, 198.51.100.2"]),
            ip("198.51.100.2")
        );
        // Through two of our proxies, in two headers.
        assert_eq!(
            resolver.client(ip("10.1.1.1"), &["198.51.100.2", "192.0.2.7"]),
            ip("198.51.100.2")
        );
        // Proxy without the header, or with garbage.
        assert_eq!(resolver.client(ip("10.1.1.1"), &[]), ip("10.1.1.1"));
        assert_eq!(resolver.client(ip("10.1.1.1"), &["junk"]), ip("10.1.1.1"));
    }

    #[test]
    fn a_flooding_client_is_throttled_while_others_pass() {
        let config = RumConfig {
            client_rate: 1,
            client_burst: 3,
            ..RumConfig::default()
        };
        let limiter = BeaconLimiter::new(&config);
        let flooder = ip("198.51.100.1");
        for _ in 0..3 {
            assert_eq!(limiter.check(flooder), Ok(()));
        }
        let Err(Throttled::Client(wait)) = limiter.check(flooder) else {
            panic!("the fourth beacon within a second passes");
        };
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert_eq!(limiter.check(ip("198.51.100.2")), Ok(()));
    }

    #[test]
    fn the_global_bucket_holds_for_everyone() {
        let config = RumConfig {
            global_rate: 2,
            global_burst: 2,
            ..RumConfig::default()
        };
        let limiter = BeaconLimiter::new(&config);
        assert!(limiter.check(ip("198.51.100.1")).is_ok());
        assert!(limiter.check(ip("198.51.100.2")).is_ok());
        assert!(matches!(
            limiter.check(ip("198.51.100.3")),
            Err(Throttled::Global(_))
        ));
    }
}
