//! Per-network rate limit of visitor creation: a token bucket per network (an IPv4 address,
//! or an IPv6 /64, since one IPv6 host commonly holds a whole /64) holding at most
//! `per_minute` tokens, refilled continuously; a refusal says how long to wait. The map is
//! bounded: at `MAX_CLIENTS` networks, the full buckets are dropped (they carry no state).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_CLIENTS: usize = 100_000;

/// The network a client address counts as: an IPv4 address (an IPv4-mapped IPv6 address is
/// its IPv4 address), or the /64 of an IPv6 address.
pub fn network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<Option<IpAddr>, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `client` (`None`: address unknown, one shared bucket); `Err` with
    /// the wait until the next token when the bucket is empty.
    pub fn take(&self, client: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        let cap = f64::from(self.per_minute);
        if cap == 0.0 {
            return Err(Duration::from_secs(60));
        }
        let per_sec = cap / 60.0;
        let mut map = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= MAX_CLIENTS {
            map.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * per_sec < cap
            });
        }
        let (tokens, at) = map.entry(client.map(network)).or_insert((cap, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * per_sec).min(cap);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / per_sec))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_empties_refills_and_is_per_address() {
        let limiter = RateLimiter::new(3);
        let t0 = Instant::now();
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        for _ in 0..3 {
            assert!(limiter.take(a, t0).is_ok());
        }
        let wait = limiter.take(a, t0).unwrap_err();
        assert!((19.0..=20.5).contains(&wait.as_secs_f64()), "{wait:?}");
        assert!(
            limiter.take(b, t0).is_ok(),
            "another address has its own bucket"
        );
        assert!(limiter.take(a, t0 + Duration::from_secs(21)).is_ok());
        assert!(limiter.take(a, t0 + Duration::from_secs(21)).is_err());
        assert!(RateLimiter::new(0).take(a, t0).is_err());
    }

    #[test]
    fn an_ipv6_slash_64_is_one_network() {
        let limiter = RateLimiter::new(2);
        let t0 = Instant::now();
        let host = |last: u16| Some(IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]));
        assert!(limiter.take(host(1), t0).is_ok());
        assert!(limiter.take(host(2), t0).is_ok());
        assert!(limiter.take(host(3), t0).is_err(), "same /64, other host");
        let other = Some(IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1]));
        assert!(limiter.take(other, t0).is_ok(), "another /64");
        let mapped: IpAddr = "::ffff:10.0.0.9".parse().unwrap();
        assert_eq!(network(mapped), IpAddr::from([10, 0, 0, 9]));
        assert_eq!(network(host(7).unwrap()), network(host(9).unwrap()));
    }
}
