//! The ids an app sees for a user (contract §2): `open_id` per (app, user), `union_id` per
//! (developer organisation, user). Both are derived from the server's id secret, so they
//! survive restarts and resets, and both decode back to the user without a lookup table:
//! each is one AES block holding the user's 12-byte key and a 4-byte tag of the app (or
//! organisation) that may see it.

use aes::cipher::{generic_array::GenericArray, BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes128;
use dashmap::DashMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub type UserKey = [u8; 12];

pub struct IdSecret {
    /// Keyed once: each use clones the keyed state instead of hashing the key again.
    mac: Hmac<Sha256>,
    open: Aes128,
    union: Aes128,
    /// Tags of apps and of organisations: few, and asked for on every request.
    app_tags: DashMap<String, [u8; 4]>,
    org_tags: DashMap<String, [u8; 4]>,
}

impl IdSecret {
    pub fn new(secret: &[u8]) -> IdSecret {
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("any key length");
        let derive = |label: &str| -> [u8; 16] {
            let full = hmac(&mac, &[label.as_bytes()]);
            full[..16].try_into().unwrap()
        };
        IdSecret {
            open: Aes128::new(GenericArray::from_slice(&derive("open_id"))),
            union: Aes128::new(GenericArray::from_slice(&derive("union_id"))),
            mac,
            app_tags: DashMap::new(),
            org_tags: DashMap::new(),
        }
    }

    /// A key for another purpose (`label`), bound to `context`: stable across restarts, as
    /// the secret is.
    pub fn derive(&self, label: &str, context: &[u8]) -> [u8; 32] {
        hmac(&self.mac, &[b"derive", label.as_bytes(), context])
    }

    /// The stable key of a user, from its tenant and user id.
    pub fn user_key(&self, tenant_key: &str, user_id: &str) -> UserKey {
        let full = hmac(
            &self.mac,
            &[b"user", tenant_key.as_bytes(), user_id.as_bytes()],
        );
        full[..12].try_into().unwrap()
    }

    fn tag(&self, kind: &'static [u8], name: &str) -> [u8; 4] {
        let tags = if kind == APP {
            &self.app_tags
        } else {
            &self.org_tags
        };
        if let Some(t) = tags.get(name) {
            return *t;
        }
        let full = hmac(&self.mac, &[kind, name.as_bytes()]);
        let tag: [u8; 4] = full[..4].try_into().unwrap();
        if tags.len() < 10_000 {
            tags.insert(name.to_string(), tag);
        }
        tag
    }

    pub fn open_id(&self, user: &UserKey, app_id: &str) -> String {
        seal(&self.open, "ou_", user, self.tag(APP, app_id))
    }

    pub fn union_id(&self, user: &UserKey, developer: &str) -> String {
        seal(&self.union, "on_", user, self.tag(ORG, developer))
    }

    /// The user behind an open_id, if it is one that `app_id` was given.
    pub fn parse_open_id(&self, id: &str, app_id: &str) -> Option<UserKey> {
        open(&self.open, "ou_", id, self.tag(APP, app_id))
    }

    /// The user behind a union_id, if it belongs to `developer`'s organisation.
    pub fn parse_union_id(&self, id: &str, developer: &str) -> Option<UserKey> {
        open(&self.union, "on_", id, self.tag(ORG, developer))
    }
}

const APP: &[u8] = b"app";
const ORG: &[u8] = b"org";

fn hmac(keyed: &Hmac<Sha256>, parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = keyed.clone();
    for p in parts {
        // Length-prefix each part so ("ab","c") and ("a","bc") differ.
        mac.update(&(p.len() as u32).to_be_bytes());
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn seal(cipher: &Aes128, prefix: &str, user: &UserKey, tag: [u8; 4]) -> String {
    let mut block = [0u8; 16];
    block[..12].copy_from_slice(user);
    block[12..].copy_from_slice(&tag);
    let mut b = GenericArray::from(block);
    cipher.encrypt_block(&mut b);
    let mut digits = [0u8; 32];
    hex::encode_to_slice(b, &mut digits).expect("32 digits for 16 bytes");
    let mut id = String::with_capacity(prefix.len() + 32);
    id.push_str(prefix);
    id.push_str(std::str::from_utf8(&digits).expect("hex digits"));
    id
}

fn open(cipher: &Aes128, prefix: &str, id: &str, tag: [u8; 4]) -> Option<UserKey> {
    let hex_part = id.strip_prefix(prefix)?;
    if hex_part.len() != 32 || hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let bytes: [u8; 16] = hex::decode(hex_part).ok()?.try_into().ok()?;
    let mut b = GenericArray::from(bytes);
    cipher.decrypt_block(&mut b);
    (b[12..] == tag).then(|| b[..12].try_into().unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_distinct_and_reversible() {
        let s = IdSecret::new(b"secret");
        let k = s.user_key("acme", "alice");
        let o1 = s.open_id(&k, "cli_a");
        assert_eq!(o1, IdSecret::new(b"secret").open_id(&k, "cli_a"));
        assert!(o1.starts_with("ou_") && o1.len() == 35);
        assert_ne!(o1, s.open_id(&k, "cli_b"));
        assert_eq!(s.parse_open_id(&o1, "cli_a"), Some(k));
        assert_eq!(s.parse_open_id(&o1, "cli_b"), None);
        let u = s.union_id(&k, "dev");
        assert!(u.starts_with("on_") && u.len() == 35);
        assert_eq!(s.parse_union_id(&u, "dev"), Some(k));
        assert_eq!(s.parse_union_id(&u, "other"), None);
        assert_eq!(s.parse_open_id(&u, "cli_a"), None);
        assert_ne!(k, s.user_key("acme", "bob"));
        assert_ne!(
            s.open_id(&k, "cli_a"),
            IdSecret::new(b"other").open_id(&k, "cli_a")
        );
        assert_eq!(s.parse_open_id("ou_zz", "cli_a"), None);
    }

    #[test]
    fn ids_do_not_change_between_versions() {
        let s = IdSecret::new(b"secret");
        let k = s.user_key("acme", "alice");
        // Clients keep these ids: the derivation is part of the contract with them.
        assert_eq!(hex::encode(k), "d4eafc3e4d4f44ae3d35c9de");
        assert_eq!(
            s.open_id(&k, "cli_a"),
            "ou_cf6791682799c78ab36adf860c0d336b"
        );
        assert_eq!(s.union_id(&k, "dev"), "on_b5f96162559732403aaf1440d481466a");
    }
}
