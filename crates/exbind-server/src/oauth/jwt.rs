//! v2 access tokens are JWTs (compact JWS, ES256), as Feishu's are. Their signature is not
//! what makes them valid — the store is, like for every user token — but a client that
//! decodes one finds a well-formed, verifiable token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub struct Signer {
    key: SigningKey,
    kid: String,
}

impl Signer {
    /// The signer of a data dir, from its stored 32 secret bytes.
    pub fn new(secret: &[u8]) -> Signer {
        // A scalar out of range (about 2^-128 likely) is hashed until it is in range.
        let mut bytes: [u8; 32] = Sha256::digest(secret).into();
        let key = loop {
            match SigningKey::from_slice(&bytes) {
                Ok(k) => break k,
                Err(_) => bytes = Sha256::digest(bytes).into(),
            }
        };
        let public = key.verifying_key().to_encoded_point(false);
        let kid = hex::encode(&Sha256::digest(public.as_bytes())[..8]);
        Signer { key, kid }
    }

    /// A compact JWS of `claims`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let mut out = B64.encode(header.to_string());
        out.push('.');
        out.push_str(&B64.encode(claims.to_string()));
        let sig: Signature = self.key.sign(out.as_bytes());
        out.push('.');
        out.push_str(&B64.encode(sig.to_bytes()));
        out
    }

    #[cfg(test)]
    fn verify(&self, jws: &str) -> bool {
        use p256::ecdsa::signature::Verifier as _;
        let Some((signed, sig)) = jws.rsplit_once('.') else {
            return false;
        };
        let Ok(sig) = B64.decode(sig) else {
            return false;
        };
        let Ok(sig) = Signature::from_slice(&sig) else {
            return false;
        };
        self.key
            .verifying_key()
            .verify(signed.as_bytes(), &sig)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_verifiable_es256_jws() {
        let s = Signer::new(b"secret");
        let t = s.sign(&json!({"sub": "x"}));
        assert!(t.starts_with("eyJ"), "{t}");
        assert_eq!(t.split('.').count(), 3);
        assert!(s.verify(&t));
        let header: Value =
            serde_json::from_slice(&B64.decode(t.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        let mut bad = t.clone();
        bad.replace_range(t.len() - 3.., "AAA");
        assert!(!s.verify(&bad));
        // The same secret makes the same key: tokens verify after a restart.
        assert!(Signer::new(b"secret").verify(&t));
    }
}
