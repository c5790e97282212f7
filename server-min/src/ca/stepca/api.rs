//! step-ca's HTTP API as the bridge uses it: root bootstrap, provisioner lookup, sign,
//! revoke. Answers are classified for the enrollment: no answer or 5xx → unavailable,
//! 4xx → rejected with step-ca's message.

use std::sync::Arc;

use ::time::OffsetDateTime;
use base64::Engine as _;
use nexa_proto::Fingerprint;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Deserialize;
use url::Url;
use x509_parser::prelude::*;

use super::{CONNECT_TIMEOUT, REQUEST_TIMEOUT, RETRY_AFTER, StepCa, StepCaError};
use crate::ca::{IssuedCert, SignerError};

/// Revocation reason sent to step-ca: cessationOfOperation (RFC 5280).
const REASON_CESSATION: u8 = 5;
/// Provisioner pages read at most (step-ca lists 20 per page).
const MAX_PAGES: usize = 50;
/// Largest answer accepted from step-ca.
const MAX_BODY: usize = 1 << 20;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client(tls: rustls::ClientConfig) -> Result<reqwest::Client, StepCaError> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("nexa-server/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| StepCaError::Tls(e.to_string()))
}

/// An HTTPS client for step-ca that trusts only `root`.
pub(super) fn trusting(root: &CertificateDer<'static>) -> Result<reqwest::Client, StepCaError> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(root.clone())
        .map_err(|e| StepCaError::Tls(format!("step-ca's root: {e}")))?;
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| StepCaError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    client(tls)
}

/// Accepts any server certificate: used once, for the root download, whose answer is
/// authenticated by its fingerprint instead.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[derive(Deserialize)]
struct RootAnswer {
    ca: String,
}

/// step-ca's root, PEM and DER, checked against `expected`.
pub(super) async fn fetch_root(
    base: &Url,
    expected: &Fingerprint,
) -> Result<(String, CertificateDer<'static>), StepCaError> {
    let provider = provider();
    let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StepCaError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
        .with_no_client_auth();
    let http = client(tls)?;
    let url = join(base, &format!("root/{expected}"));
    let answer: RootAnswer = match get_json(&http, &url).await {
        Err(StepCaError::Refused { status: 404, .. }) => {
            return Err(StepCaError::NoSuchRoot {
                expected: *expected,
            });
        }
        other => other?,
    };
    let der = CertificateDer::from_pem_slice(answer.ca.as_bytes()).map_err(|e| {
        StepCaError::BadAnswer {
            url: url.to_string(),
            detail: format!("the root is not PEM: {e}"),
        }
    })?;
    let presented = Fingerprint::of_der(&der);
    if presented != *expected {
        return Err(StepCaError::Fingerprint {
            expected: *expected,
            presented,
        });
    }
    Ok((ensure_newline(&answer.ca), der))
}

/// The public half of a JWK provisioner and its encrypted private key.
pub(super) struct Provisioner {
    pub kid: String,
    pub encrypted_key: String,
}

#[derive(Deserialize)]
struct ProvisionerList {
    #[serde(default)]
    provisioners: Vec<serde_json::Value>,
    #[serde(default, rename = "nextCursor")]
    next_cursor: String,
}

/// The JWK provisioner called `name`.
pub(super) async fn find_provisioner(
    http: &reqwest::Client,
    base: &Url,
    name: &str,
) -> Result<Provisioner, StepCaError> {
    let mut names = Vec::new();
    let mut cursor = String::new();
    for _ in 0..MAX_PAGES {
        let mut url = join(base, "provisioners");
        if !cursor.is_empty() {
            url.query_pairs_mut().append_pair("cursor", &cursor);
        }
        let page: ProvisionerList = get_json(http, &url).await?;
        for p in &page.provisioners {
            let (Some(n), Some(t)) = (p["name"].as_str(), p["type"].as_str()) else {
                continue;
            };
            if n == name && t.eq_ignore_ascii_case("JWK") {
                let kid = p["key"]["kid"].as_str();
                let key = p["encryptedKey"].as_str();
                return match (kid, key) {
                    (Some(kid), Some(key)) => Ok(Provisioner {
                        kid: kid.to_owned(),
                        encrypted_key: key.to_owned(),
                    }),
                    _ => Err(StepCaError::BadAnswer {
                        url: url.to_string(),
                        detail: format!(
                            "provisioner {name:?} has no key id or no encrypted key (was it added with --create?)"
                        ),
                    }),
                };
            }
            names.push(format!("{n} ({t})"));
        }
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    Err(StepCaError::NoProvisioner {
        name: name.to_owned(),
        available: if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        },
    })
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &Url,
) -> Result<T, StepCaError> {
    let resp = http
        .get(url.clone())
        .send()
        .await
        .map_err(|e| StepCaError::Unreachable {
            url: url.to_string(),
            detail: crate::error_chain(&e),
        })?;
    let status = resp.status();
    let body = bounded_body(resp)
        .await
        .map_err(|detail| StepCaError::Unreachable {
            url: url.to_string(),
            detail,
        })?;
    if !status.is_success() {
        return Err(StepCaError::Refused {
            url: url.to_string(),
            status: status.as_u16(),
            message: message_of(&body),
        });
    }
    serde_json::from_slice(&body).map_err(|e| StepCaError::BadAnswer {
        url: url.to_string(),
        detail: e.to_string(),
    })
}

/// A response body, at most [`MAX_BODY`] bytes (step-ca's answers are a few KiB; the
/// unverified root download must not be able to fill memory).
async fn bounded_body(mut resp: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| crate::error_chain(&e))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("the answer is larger than {MAX_BODY} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn join(base: &Url, path: &str) -> Url {
    // `base` is a validated base URL ending in '/', `path` a relative path of ours.
    base.join(path).unwrap_or_else(|_| base.clone())
}

/// step-ca's `{"status":N,"message":"..."}`, or the start of whatever it sent.
fn message_of(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Error {
        message: String,
    }
    match serde_json::from_slice::<Error>(body) {
        Ok(e) => e.message,
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(200)])
            .trim()
            .to_owned(),
    }
}

#[derive(Deserialize)]
struct SignAnswer {
    crt: String,
    #[serde(default, rename = "certChain")]
    cert_chain: Vec<String>,
    #[serde(default)]
    ca: String,
}

/// `POST /1.0/sign` for `csr_der`, with a token for subject `sub` and exactly `sans`.
pub(super) async fn sign(
    ca: &StepCa,
    sub: &str,
    sans: &[String],
    csr_der: &[u8],
) -> Result<IssuedCert, SignerError> {
    let url = ca.url("1.0/sign");
    let ott = ca
        .token(sub, &url, Some(sans))
        .map_err(SignerError::Internal)?;
    let body = serde_json::json!({ "csr": csr_pem(csr_der), "ott": ott });
    let answer = post(ca, &url, &body).await?;
    let answer: SignAnswer = serde_json::from_slice(&answer)
        .map_err(|e| SignerError::Internal(format!("step-ca's sign answer: {e}")))?;
    // The chain after the leaf: certChain[1..] (or `ca` from older versions), then the root.
    let intermediates: Vec<&String> = if answer.cert_chain.len() > 1 {
        answer.cert_chain[1..].iter().collect()
    } else {
        vec![&answer.ca]
    };
    let mut chain_pem = String::new();
    for pem in intermediates.into_iter().filter(|p| !p.trim().is_empty()) {
        chain_pem.push_str(&ensure_newline(pem));
    }
    chain_pem.push_str(&ca.root_pem);
    issued(&answer.crt, chain_pem)
}

/// `POST /1.0/revoke`, passive, with a token whose subject is the decimal serial.
pub(super) async fn revoke(ca: &StepCa, serial_hex: &str, reason: &str) -> Result<(), SignerError> {
    let serial = u128::from_str_radix(serial_hex, 16).map_err(|e| {
        SignerError::Internal(format!(
            "serial {serial_hex:?} is not a 128-bit hex number: {e}"
        ))
    })?;
    let serial = serial.to_string();
    let url = ca.url("1.0/revoke");
    let ott = ca
        .token(&serial, &url, None)
        .map_err(SignerError::Internal)?;
    let body = serde_json::json!({
        "serial": serial, "ott": ott, "reasonCode": REASON_CESSATION, "reason": reason,
        "passive": true,
    });
    post(ca, &url, &body).await.map(|_| ())
}

/// POSTs `body`; the answer's body on 2xx, else classified.
async fn post(ca: &StepCa, url: &Url, body: &serde_json::Value) -> Result<Vec<u8>, SignerError> {
    let unavailable = |reason: String| SignerError::Unavailable {
        reason,
        retry_after: RETRY_AFTER,
    };
    let resp = ca
        .http
        .post(url.clone())
        .json(body)
        .send()
        .await
        .map_err(|e| unavailable(format!("step-ca at {url}: {}", crate::error_chain(&e))))?;
    let status = resp.status();
    let bytes = bounded_body(resp)
        .await
        .map_err(|e| unavailable(format!("step-ca at {url}: {e}")))?;
    if status.is_success() {
        return Ok(bytes);
    }
    let message = message_of(&bytes);
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(unavailable(format!(
            "step-ca answered {}: {message}",
            status.as_u16()
        )));
    }
    let hint = if status == reqwest::StatusCode::UNAUTHORIZED {
        " (step-ca refused the bridge's token; its log says why)"
    } else {
        ""
    };
    Err(SignerError::Rejected {
        reason: format!("step-ca answered {}: {message}{hint}", status.as_u16()),
    })
}

/// The issued leaf's serial and validity.
fn issued(crt: &str, chain_pem: String) -> Result<IssuedCert, SignerError> {
    let bad = |e: String| SignerError::Internal(format!("step-ca's certificate: {e}"));
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(crt.as_bytes()).map_err(|e| bad(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| bad(e.to_string()))?;
    let ts = |t: ASN1Time| {
        OffsetDateTime::from_unix_timestamp(t.timestamp()).map_err(|e| bad(e.to_string()))
    };
    let serial = cert.raw_serial();
    let start = serial
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(serial.len().saturating_sub(1));
    Ok(IssuedCert {
        pem: ensure_newline(crt),
        chain_pem,
        serial_hex: hex::encode(&serial[start..]),
        not_before: ts(cert.validity().not_before)?,
        not_after: ts(cert.validity().not_after)?,
    })
}

/// The certificate step-ca issued names the device and certifies the CSR's key.
pub(super) fn check_issued(
    issued: &IssuedCert,
    device: &str,
    spki_der: &[u8],
) -> Result<(), SignerError> {
    let bad = |e: String| SignerError::Internal(format!("step-ca's certificate: {e}"));
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(issued.pem.as_bytes()).map_err(|e| bad(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| bad(e.to_string()))?;
    let cn: Vec<&str> = cert
        .subject()
        .iter_common_name()
        .filter_map(|c| c.as_str().ok())
        .collect();
    if cn != [device] {
        return Err(bad(format!("its subject is {cn:?}, not {device:?}")));
    }
    if cert.public_key().raw != spki_der {
        return Err(bad("it certifies another key than the CSR's".into()));
    }
    Ok(())
}

fn csr_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE REQUEST-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE REQUEST-----\n");
    pem
}

fn ensure_newline(pem: &str) -> String {
    if pem.ends_with('\n') {
        pem.to_owned()
    } else {
        format!("{pem}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_ca_messages_are_read_and_other_bodies_cut() {
        assert_eq!(
            message_of(br#"{"status":403,"message":"certificate request does not contain the valid DNS names"}"#),
            "certificate request does not contain the valid DNS names"
        );
        assert_eq!(message_of(b"  oops \n"), "oops");
        assert_eq!(message_of(&[b'x'; 500]).len(), 200);
    }

    #[test]
    fn csr_pem_wraps_at_64() {
        let pem = csr_pem(&[7u8; 100]);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE REQUEST-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(
            lines.last().copied(),
            Some("-----END CERTIFICATE REQUEST-----")
        );
    }
}
