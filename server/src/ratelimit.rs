//! Per-client-address rate limit of visitor creation: a token bucket per address holding at
//! most `per_minute` tokens, refilled continuously; a refusal says how long to wait. The map
//! is bounded: at `MAX_CLIENTS` addresses, the full buckets are dropped (they carry no state).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_CLIENTS: usize = 100_000;

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
        let (tokens, at) = map.entry(client).or_insert((cap, now));
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
}
