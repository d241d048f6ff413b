//! Redirect URIs (oauth.md §1): which a request may name, and the redirect built from one.

use url::Url;

/// Whether `u` is a loopback redirect URI (RFC 8252 §7.3): plain http to 127.0.0.1, [::1]
/// or localhost.
fn is_loopback(u: &Url) -> bool {
    u.scheme() == "http" && matches!(u.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"))
}

/// A URI an app may register: absolute, with a host, without a fragment.
pub fn parse_registered(uri: &str) -> Result<Url, String> {
    let u = Url::parse(uri).map_err(|e| format!("{uri:?} is not an absolute URI: {e}"))?;
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("{uri:?} has no host"));
    }
    if u.fragment().is_some() {
        return Err(format!("{uri:?} has a fragment"));
    }
    Ok(u)
}

/// Whether `requested` may be redirected to by an app that registered `registered`:
/// scheme, host, port and path equal, the query free; a loopback URI on any port; with
/// nothing registered, loopback URIs only (any path).
pub fn allowed(registered: &[String], requested: &str) -> Result<(), String> {
    let q = parse_registered(requested)?;
    if registered.is_empty() {
        return if is_loopback(&q) {
            Ok(())
        } else {
            Err(format!(
                "{requested:?} is not a registered redirect URI (the app registers none, so only loopback URIs such as http://127.0.0.1:PORT/ are allowed)"
            ))
        };
    }
    let matches = |r: &Url| {
        r.scheme() == q.scheme()
            && r.host_str() == q.host_str()
            && r.path() == q.path()
            && (r.port_or_known_default() == q.port_or_known_default() || is_loopback(&q))
    };
    if registered
        .iter()
        .filter_map(|r| Url::parse(r).ok())
        .any(|r| matches(&r))
    {
        Ok(())
    } else {
        Err(format!(
            "{requested:?} is not one of the app's redirect URIs"
        ))
    }
}

/// `base` (a redirect URI as the app gave it, checked by `allowed`) with `params` added to
/// its query, its own query kept and nothing else of it changed.
pub fn with_params(base: &str, params: &[(&str, &str)]) -> String {
    let mut out = base.to_string();
    let added = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    if !added.is_empty() {
        out.push(if base.contains('?') { '&' } else { '?' });
        out.push_str(&added);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(reg: &[&str], req: &str) -> bool {
        let reg: Vec<String> = reg.iter().map(|s| s.to_string()).collect();
        allowed(&reg, req).is_ok()
    }

    #[test]
    fn matching_rules() {
        let reg = ["https://app.example/cb", "http://127.0.0.1/done"];
        assert!(ok(&reg, "https://app.example/cb"));
        assert!(ok(&reg, "https://app.example:443/cb?x=1"));
        assert!(!ok(&reg, "https://app.example/cb/"));
        assert!(!ok(&reg, "https://app.example:8443/cb"));
        assert!(!ok(&reg, "http://app.example/cb"));
        assert!(!ok(&reg, "https://evil.example/cb"));
        assert!(!ok(&reg, "https://app.example/cb#frag"));
        assert!(ok(&reg, "http://127.0.0.1:53123/done"));
        assert!(!ok(&reg, "http://127.0.0.1:53123/other"));
        assert!(ok(&[], "http://127.0.0.1:1/any/path"));
        assert!(ok(&[], "http://[::1]:9/x"));
        assert!(ok(&[], "http://localhost:9/x"));
        assert!(!ok(&[], "https://127.0.0.1:9/x"));
        assert!(!ok(&[], "https://app.example/cb"));
        assert!(!ok(&[], "not a uri"));
    }

    #[test]
    fn params_keep_the_query() {
        assert_eq!(
            with_params(
                "http://127.0.0.1:80/cb?a=1",
                &[("code", "c d"), ("state", "s&t")]
            ),
            "http://127.0.0.1:80/cb?a=1&code=c+d&state=s%26t"
        );
        assert_eq!(
            with_params("myapp://cb", &[("code", "c")]),
            "myapp://cb?code=c"
        );
    }
}
