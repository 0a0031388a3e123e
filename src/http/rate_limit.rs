//! A token bucket per API key: each key may send `burst` requests at once, and gains
//! tokens back at `per_minute / 60` a second up to `burst`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept before full ones are dropped; a full bucket is the same as a new one.
const PRUNE_ABOVE: usize = 1024;

pub struct RateLimiter {
    /// Tokens gained per second; 0 when the limit is off.
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// Builds a limiter; `per_minute = 0` lets every request through.
    pub fn new(per_minute: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            per_second: f64::from(per_minute) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from `key`'s bucket, or returns how long until one is there.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        if self.per_second == 0.0 {
            return Ok(());
        }
        // The map is only read and written here, so a panic cannot leave it half changed.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, bucket| self.refilled(*bucket, now) < self.burst);
        }
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        bucket.tokens = self.refilled(*bucket, now);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
            ))
        }
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        (bucket.tokens + elapsed * self.per_second).min(self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rejects_with_wait() {
        let limiter = RateLimiter::new(60, 3);
        let start = Instant::now();
        for n in 0..3 {
            assert!(limiter.check_at("bot", start).is_ok(), "request {n}");
        }
        let wait = limiter.check_at("bot", start).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
    }

    #[test]
    fn tokens_come_back_with_time() {
        let limiter = RateLimiter::new(60, 2);
        let start = Instant::now();
        assert!(limiter.check_at("bot", start).is_ok());
        assert!(limiter.check_at("bot", start).is_ok());
        assert!(limiter.check_at("bot", start).is_err());
        let later = start + Duration::from_millis(1500);
        assert!(limiter.check_at("bot", later).is_ok());
        let wait = limiter.check_at("bot", later).unwrap_err();
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        // A long pause refills the bucket to the burst and no further.
        let much_later = later + Duration::from_secs(3600);
        assert!(limiter.check_at("bot", much_later).is_ok());
        assert!(limiter.check_at("bot", much_later).is_ok());
        assert!(limiter.check_at("bot", much_later).is_err());
    }

    #[test]
    fn keys_have_separate_buckets() {
        let limiter = RateLimiter::new(60, 1);
        let now = Instant::now();
        assert!(limiter.check_at("first", now).is_ok());
        assert!(limiter.check_at("first", now).is_err());
        assert!(limiter.check_at("second", now).is_ok());
    }

    #[test]
    fn zero_rate_turns_the_limit_off() {
        let limiter = RateLimiter::new(0, 1);
        let now = Instant::now();
        for _ in 0..100 {
            assert!(limiter.check_at("bot", now).is_ok());
        }
    }

    #[test]
    fn full_buckets_are_pruned() {
        let limiter = RateLimiter::new(60, 1);
        let start = Instant::now();
        for n in 0..=PRUNE_ABOVE {
            limiter.check_at(&format!("key-{n}"), start).unwrap();
        }
        let later = start + Duration::from_secs(10);
        limiter.check_at("new", later).unwrap();
        let buckets = limiter.buckets.lock().unwrap();
        assert_eq!(buckets.len(), 1, "only the new key's bucket is left");
    }
}
