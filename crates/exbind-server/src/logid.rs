//! Log ids: 14 digits of UTC time (`YYYYMMDDHHMMSS`) then 20 upper-case hex characters.

use std::cell::RefCell;

use rand::Rng;

pub fn new_log_id(now_ms: i64) -> String {
    thread_local! {
        /// Every request makes one: the time part is formatted once per second per thread.
        static SECOND: RefCell<(i64, [u8; 14])> = const { RefCell::new((i64::MIN, [0; 14])) };
    }
    let secs = now_ms.div_euclid(1000);
    let mut id = String::with_capacity(34);
    SECOND.with_borrow_mut(|(cached, digits)| {
        if *cached != secs {
            let text = crate::clock::utc_second(secs, false);
            digits.copy_from_slice(&text.as_bytes()[..14]);
            *cached = secs;
        }
        id.push_str(std::str::from_utf8(digits).expect("ascii digits"));
    });
    let r: [u8; 10] = rand::rng().random();
    let mut digits = [0u8; 20];
    hex::encode_to_slice(r, &mut digits).expect("20 digits for 10 bytes");
    digits.make_ascii_uppercase();
    id.push_str(std::str::from_utf8(&digits).expect("hex digits"));
    id
}

#[cfg(test)]
mod tests {
    #[test]
    fn shape() {
        let id = super::new_log_id(1_700_000_000_123);
        assert_eq!(id.len(), 34);
        assert!(id.starts_with("20231114221320"), "{id}");
        assert!(id[14..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
        assert_ne!(id, super::new_log_id(1_700_000_000_123));
        // The next second on the same thread gets its own time part.
        assert!(super::new_log_id(1_700_000_001_000).starts_with("20231114221321"));
    }
}
