//! Base URLs of services (the bridge, hawkBit): one parser with one set of rules, so every
//! URL setting is checked the same way on both sides.

pub use url::Url;

/// Why a base URL was refused; the caller names the setting (and where credentials go).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaseUrlError {
    #[error("credentials do not belong in the URL")]
    Credentials,
    #[error("{0}")]
    Invalid(String),
}

/// Parses `raw` as a base URL: one of `schemes` (`scheme_hint` says which to use when it is
/// not), a host, no credentials, no query or fragment. The path is made a directory (trailing
/// `/`) so that joining relative paths keeps any prefix.
pub fn parse_base_url(raw: &str, schemes: &[&str], scheme_hint: &str) -> Result<Url, BaseUrlError> {
    let bad = |reason: &str| BaseUrlError::Invalid(reason.to_owned());
    let mut url = Url::parse(raw.trim()).map_err(|e| bad(&e.to_string()))?;
    if !schemes.contains(&url.scheme()) {
        return Err(bad(scheme_hint));
    }
    if url.host().is_none() {
        return Err(bad("it has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(BaseUrlError::Credentials);
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it must not have a query or fragment"));
    }
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &[&str] = &["http", "https"];

    #[test]
    fn normalises_and_refuses() {
        let u = parse_base_url(" https://h.example:8443/prefix ", WEB, "web").unwrap();
        assert_eq!(u.as_str(), "https://h.example:8443/prefix/");
        assert_eq!(u.join("api/x").unwrap().path(), "/prefix/api/x");
        for (raw, why) in [
            ("ftp://h", "use web"),
            ("h.example", "relative URL"),
            ("https://u:p@h", "credentials"),
            ("https://h/?q=1", "query"),
            ("https://h/#f", "fragment"),
        ] {
            let e = parse_base_url(raw, WEB, "use web").unwrap_err().to_string();
            assert!(e.contains(why), "{raw}: {e}");
        }
        assert!(parse_base_url("http://h", &["https"], "https only").is_err());
    }
}
