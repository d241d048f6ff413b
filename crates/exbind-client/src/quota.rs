//! Client-side quota: requests are paced evenly under a per-second and a per-minute limit, so
//! no clock-aligned window of the server ever sees more than the limit, whatever the clock
//! skew between the two, and across a stop and restart of the client.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota as GQuota, RateLimiter};

pub struct Quota {
    per_second: DefaultDirectRateLimiter,
    per_minute: DefaultDirectRateLimiter,
}

impl Quota {
    /// The Exchange-binding API's documented limits: 50/s and 1000/min.
    pub fn feishu_default() -> Quota {
        Quota::new(50, 1000)
    }

    /// `per_second` and `per_minute` must be at least 1.
    pub fn new(per_second: u32, per_minute: u32) -> Quota {
        let s = NonZeroU32::new(per_second.max(1)).unwrap();
        let m = NonZeroU32::new(per_minute.max(1)).unwrap();
        // A burst of one: each request waits out the interval after the previous one.
        let one = NonZeroU32::new(1).unwrap();
        Quota {
            per_second: RateLimiter::direct(GQuota::per_second(s).allow_burst(one)),
            per_minute: RateLimiter::direct(GQuota::per_minute(m).allow_burst(one)),
        }
    }

    /// Waits until a request may go.
    pub async fn wait(&self) {
        self.per_minute.until_ready().await;
        self.per_second.until_ready().await;
    }
}
