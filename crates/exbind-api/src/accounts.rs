//! Account addresses: validation and the case-insensitive comparison key.

/// The key two spellings of one address share (Unicode lower-casing).
pub fn fold(address: &str) -> String {
    address.to_lowercase()
}

/// Whether two spellings name one address: `fold(a) == fold(b)`, without allocating for the
/// ASCII addresses nearly everyone has.
pub fn same_address(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        fold(a) == fold(b)
    }
}

/// Why an address is not acceptable, or `None` when it is: 1–500 characters, exactly one
/// `@`, no whitespace or control characters.
pub fn address_problem(address: &str) -> Option<&'static str> {
    let len = address.chars().count();
    if len == 0 {
        return Some("must not be empty");
    }
    if len > 500 {
        return Some("must be at most 500 characters");
    }
    if address.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("must not contain whitespace or control characters");
    }
    if address.matches('@').count() != 1 {
        return Some("must contain exactly one '@'");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(address_problem("a@b"), None);
        assert!(address_problem("").is_some());
        assert!(address_problem("ab").is_some());
        assert!(address_problem("a@b@c").is_some());
        assert!(address_problem("a @b").is_some());
        assert!(address_problem("a\u{7}@b").is_some());
        assert_eq!(address_problem(&format!("{}@b", "é".repeat(498))), None);
        assert!(address_problem(&format!("{}@b", "é".repeat(499))).is_some());
        assert_eq!(fold("ÄLICE@Example.COM"), "älice@example.com");
        assert!(same_address("Alice@Example.com", "alice@EXAMPLE.COM"));
        assert!(same_address("ÄLICE@x", "älice@X"));
        assert!(!same_address("alice@x", "alicf@x"));
        assert!(!same_address("älice@x", "alice@x"));
    }
}
