//! Console sessions: signing in with the admin token gives an `HttpOnly`, `SameSite=Strict`
//! cookie; every state-changing form carries a CSRF token bound to the session.
//!
//! A session is a signed cookie (its random id and expiry, with an HMAC keyed by a key
//! derived from the server's id secret and the admin token), so any server that shares the
//! store and the admin token accepts it, and a new admin token ends every session. Its CSRF
//! token is an HMAC of its id: nothing is stored for either. Signing out records the id in
//! the store as revoked until the session would have expired, so the cookie stays refused
//! after a restart and on every server of the store.

use hmac::{Hmac, Mac};
use http::{header, HeaderMap, HeaderValue};
use rand::Rng;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How long a session lasts after sign-in.
pub const SESSION_TTL_MS: i64 = 8 * 3600 * 1000;
pub const SESSION_COOKIE: &str = "exbind_session";
/// The sign-in form's own token (double submit): a sign-in cannot be forged from elsewhere.
pub const SIGNIN_COOKIE: &str = "exbind_signin";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    id: [u8; 16],
    pub expires_at: i64,
}

impl Session {
    pub fn id(&self) -> [u8; 16] {
        self.id
    }
}

pub struct Sessions {
    mac: Hmac<Sha256>,
}

impl Sessions {
    /// `key`: secret, and different whenever sessions must all end.
    pub fn new(key: &[u8]) -> Sessions {
        Sessions {
            mac: <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length"),
        }
    }

    fn tag(&self, label: &[u8], data: &[u8]) -> [u8; 16] {
        let mut m = self.mac.clone();
        m.update(label);
        m.update(data);
        m.finalize().into_bytes()[..16]
            .try_into()
            .expect("16 of 32")
    }

    /// A new session and its cookie value.
    pub fn issue(&self, now: i64) -> (Session, String) {
        let s = Session {
            id: rand::rng().random(),
            expires_at: now + SESSION_TTL_MS,
        };
        let body = [&s.id[..], &s.expires_at.to_be_bytes()].concat();
        let value = format!(
            "{}{}",
            hex::encode(&body),
            hex::encode(self.tag(b"s", &body))
        );
        (s, value)
    }

    /// The session a cookie value names, if it is genuine and current (whether it was signed
    /// out is the store's to say: `AppState::console_session`).
    pub fn verify(&self, value: &str, now: i64) -> Option<Session> {
        let raw = hex::decode(value).ok()?;
        if raw.len() != 16 + 8 + 16 {
            return None;
        }
        let (body, tag) = raw.split_at(24);
        if !bool::from(self.tag(b"s", body).ct_eq(tag)) {
            return None;
        }
        let s = Session {
            id: body[..16].try_into().ok()?,
            expires_at: i64::from_be_bytes(body[16..].try_into().ok()?),
        };
        (s.expires_at > now).then_some(s)
    }

    /// The session of a request's cookie.
    pub fn of_request(&self, headers: &HeaderMap, now: i64) -> Option<Session> {
        cookie(headers, SESSION_COOKIE).and_then(|v| self.verify(v, now))
    }

    /// The CSRF token of a session, for its forms.
    pub fn csrf(&self, s: &Session) -> String {
        hex::encode(self.tag(b"c", &s.id))
    }

    pub fn csrf_ok(&self, s: &Session, token: &str) -> bool {
        bool::from(self.csrf(s).as_bytes().ct_eq(token.as_bytes()))
    }

    /// `data` with a tag, as text, for a cookie only this server may set (`label` keeps each
    /// use apart).
    pub fn seal(&self, label: &[u8], data: &[u8]) -> String {
        let mut l = b"x".to_vec();
        l.extend_from_slice(label);
        format!("{}{}", hex::encode(data), hex::encode(self.tag(&l, data)))
    }

    /// What `seal` sealed, if the text is genuine.
    pub fn unseal(&self, label: &[u8], text: &str) -> Option<Vec<u8>> {
        let raw = hex::decode(text).ok()?;
        let (data, tag) = raw.split_at(raw.len().checked_sub(16)?);
        let mut l = b"x".to_vec();
        l.extend_from_slice(label);
        bool::from(self.tag(&l, data).ct_eq(tag)).then(|| data.to_vec())
    }
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, for the console's paths; `max_age` 0
/// removes it.
pub fn set_cookie(name: &str, value: &str, path: &str, max_age_s: i64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age_s}; HttpOnly; SameSite=Strict"
    ))
    .expect("cookie text is ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_verify_and_expire() {
        let s = Sessions::new(b"k");
        let (sess, value) = s.issue(1000);
        assert_eq!(s.verify(&value, 1001), Some(sess));
        assert_eq!(s.verify(&value, 1000 + SESSION_TTL_MS), None, "expired");
        let mut forged = value.clone().into_bytes();
        forged[0] = if forged[0] == b'0' { b'1' } else { b'0' };
        assert_eq!(s.verify(std::str::from_utf8(&forged).unwrap(), 1001), None);
        assert_eq!(Sessions::new(b"other").verify(&value, 1001), None);
        assert!(s.csrf_ok(&sess, &s.csrf(&sess)));
        assert!(!s.csrf_ok(&sess, "00"));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; exbind_session=xyz"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "b"), None);
    }
}
