//! Log ids: 14 digits of UTC time (`YYYYMMDDHHMMSS`) then 20 upper-case hex characters.

use rand::Rng;

pub fn new_log_id(now_ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(now_ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let r: u128 = rand::rng().random::<u128>() & ((1u128 << 80) - 1);
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}{:020X}",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        r
    )
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
    }
}
