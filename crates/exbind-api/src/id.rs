//! The `exchange_binding_id` codec (contract §4.6): `base64(admin_account + " " +
//! exchange_account)`, standard alphabet with padding on output; URL-safe alphabet and missing
//! padding accepted on input.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, Engine, GeneralPurpose, GeneralPurposeConfig};

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// The decoded parts of a binding id, in the spelling the id carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingKey {
    pub admin_account: String,
    pub exchange_account: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidId;

/// The canonical id of a binding made with these spellings.
pub fn encode(admin_account: &str, exchange_account: &str) -> String {
    let mut joined = Vec::with_capacity(admin_account.len() + 1 + exchange_account.len());
    joined.extend_from_slice(admin_account.as_bytes());
    joined.push(b' ');
    joined.extend_from_slice(exchange_account.as_bytes());
    STANDARD.encode(joined)
}

/// Decodes an id as it arrives in a path segment: percent-decoding first (a bad escape is an
/// invalid id; `+` stays a plus), then base64.
pub fn decode_path_segment(raw: &str) -> Result<BindingKey, InvalidId> {
    if !raw.contains('%') {
        return decode(raw);
    }
    let bytes = percent_decode_strict(raw.as_bytes())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| InvalidId)?;
    decode(text)
}

/// Decodes a (percent-decoded) id.
pub fn decode(id: &str) -> Result<BindingKey, InvalidId> {
    let has_std = id.contains(['+', '/']);
    let has_url = id.contains(['-', '_']);
    let engine = match (has_std, has_url) {
        (true, true) => return Err(InvalidId),
        (false, true) => &URL_SAFE,
        _ => &STANDARD,
    };
    let bytes = engine.decode(id).map_err(|_| InvalidId)?;
    let mut admin_account = String::from_utf8(bytes).map_err(|_| InvalidId)?;
    let space = admin_account.find(' ').ok_or(InvalidId)?;
    let exchange_account = admin_account[space + 1..].to_string();
    admin_account.truncate(space);
    if admin_account.is_empty() || exchange_account.is_empty() || exchange_account.contains(' ') {
        return Err(InvalidId);
    }
    Ok(BindingKey {
        admin_account,
        exchange_account,
    })
}

fn percent_decode_strict(input: &[u8]) -> Result<Vec<u8>, InvalidId> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            let hex = input.get(i + 1..i + 3).ok_or(InvalidId)?;
            let s = std::str::from_utf8(hex).map_err(|_| InvalidId)?;
            out.push(u8::from_str_radix(s, 16).map_err(|_| InvalidId)?);
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// Percent-encodes an id for a path segment, as the Python SDK does (`quote(safe="")`), so
/// ids with `/` or `+` route everywhere.
pub fn encode_path_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len() + 6);
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DOC_ID: &str =
        "ZW1haWxfYWRtaW5fZXhhbXBsZUBvdXRsb29rLmNvbSBlbWFpbF9hY2NvdW50X2V4YW1wbGVAb3V0bG9vay5jb20=";

    #[test]
    fn documented_example_round_trips_byte_for_byte() {
        let key = decode(DOC_ID).unwrap();
        assert_eq!(key.admin_account, "email_admin_example@outlook.com");
        assert_eq!(key.exchange_account, "email_account_example@outlook.com");
        assert_eq!(encode(&key.admin_account, &key.exchange_account), DOC_ID);
    }

    #[test]
    fn lenient_forms_are_accepted() {
        assert!(decode(DOC_ID.trim_end_matches('=')).is_ok());
        assert!(decode_path_segment(&DOC_ID.replace('=', "%3D")).is_ok());
        // URL-safe alphabet for an id whose standard form has '+' and '/'.
        let id = encode("a@b", "\u{fb}\u{ff}\u{fe}@x");
        assert!(id.contains(['+', '/']), "{id}");
        let url = id.replace('+', "-").replace('/', "_");
        assert_eq!(decode(&url).unwrap(), decode(&id).unwrap());
    }

    #[test]
    fn malformed_ids_are_rejected() {
        for bad in [
            "",
            "!!!",
            "YWJj",             // "abc": one part
            "IGFAYg==",         // " a@b": empty admin
            "YUBiIA==",         // "a@b ": empty exchange
            "YUBiIGNAZCBlQGY=", // three parts
            "/w==",             // not UTF-8
            "YUBiIGNAZA=x",     // garbage after padding
        ] {
            assert_eq!(decode(bad), Err(InvalidId), "{bad:?}");
        }
        // '-' (URL-safe) and '/' (standard) in one id.
        assert_eq!(decode("YUBi-MO7w7/DvkB4"), Err(InvalidId));
        assert_eq!(decode_path_segment("YWJj%ZZ"), Err(InvalidId));
        assert_eq!(decode_path_segment("YWJj%3"), Err(InvalidId));
    }

    proptest! {
        #[test]
        fn any_pair_round_trips(admin in "[^ \\x00-\\x1f]{1,40}", exchange in "[^ \\x00-\\x1f]{1,40}") {
            let id = encode(&admin, &exchange);
            let key = decode(&id).unwrap();
            prop_assert_eq!(&key.admin_account, &admin);
            prop_assert_eq!(&key.exchange_account, &exchange);
            let via_path = decode_path_segment(&encode_path_segment(&id)).unwrap();
            prop_assert_eq!(via_path, key);
        }
    }
}
