//! Test fixtures: a root and issuing CA like the bridge's, device certificates with chosen
//! validity, and complete certs directories.

use nexa_proto::Fingerprint;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::certs::{CertsDir, EnrolledFlag, FLAG_VERSION};
use crate::keys::DeviceKey;
use crate::verify::inspect;

pub struct Pki {
    issuing: Issuer<'static, KeyPair>,
    pub chain_pem: String,
    pub fingerprint: Fingerprint,
}

fn ca_params(cn: &str, depth: u8) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(depth));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::days(1);
    p.not_after = now + Duration::days(3650);
    p
}

impl Pki {
    pub fn new() -> Self {
        let root_key = KeyPair::generate().unwrap();
        let root_params = ca_params("Test Root", 1);
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, root_key);
        let issuing_key = KeyPair::generate().unwrap();
        let issuing_params = ca_params("Test Issuing", 0);
        let issuing = issuing_params
            .signed_by(&issuing_key, &root_issuer)
            .unwrap();
        Self {
            issuing: Issuer::new(issuing_params, issuing_key),
            chain_pem: format!("{}{}", issuing.pem(), root.pem()),
            fingerprint: Fingerprint::of_der(root.der()),
        }
    }

    /// A device certificate for `key`, CN = `id`, valid `not_before..not_after`.
    pub fn device(
        &self,
        id: &str,
        key: &DeviceKey,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> String {
        let mut p = CertificateParams::new(vec![id.to_owned()]).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, id);
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.not_before = not_before;
        p.not_after = not_after;
        let serial: [u8; 16] = rand::random();
        p.serial_number = Some(SerialNumber::from_slice(&serial));
        let public = KeyPair::from_pem(key.pem()).unwrap();
        p.signed_by(&public, &self.issuing).unwrap().pem()
    }

    /// A certificate valid from an hour ago for `lifetime`.
    pub fn device_for(&self, id: &str, key: &DeviceKey, lifetime: Duration) -> String {
        let nb = OffsetDateTime::now_utc() - Duration::hours(1);
        self.device(id, key, nb, nb + lifetime)
    }
}

/// Writes a complete enrolled set for `id` (key, certificate, chain, wg0.conf, flag).
pub fn enrolled(certs: &CertsDir, pki: &Pki, id: &str, cert_pem: &str, key: &DeviceKey) {
    std::fs::create_dir_all(certs.root()).unwrap();
    std::fs::write(certs.device_key(), key.pem()).unwrap();
    std::fs::write(certs.device_cert(), cert_pem).unwrap();
    std::fs::write(certs.ca_chain(), &pki.chain_pem).unwrap();
    std::fs::write(
        certs.wg_conf(),
        "[Interface]\nPrivateKey = BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA=\n",
    )
    .unwrap();
    let facts = inspect(cert_pem, "test").unwrap().facts;
    let fmt = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let flag = EnrolledFlag {
        version: FLAG_VERSION,
        device_id: id.into(),
        enrolled_at: fmt(OffsetDateTime::now_utc()),
        bridge: "https://bridge.invalid/".into(),
        root_fingerprint: pki.fingerprint.to_string(),
        serial: facts.serial_hex,
        not_after: fmt(facts.not_after),
        address: "10.8.0.2/24".into(),
        profile_revision: 1,
        mqtt_url: None,
        hawkbit: None,
    };
    std::fs::write(certs.flag(), serde_json::to_vec_pretty(&flag).unwrap()).unwrap();
}

/// A fresh key.
pub fn key() -> DeviceKey {
    DeviceKey::generate().unwrap()
}

/// The key in `path`.
pub fn key_at(path: &std::path::Path) -> DeviceKey {
    DeviceKey::from_pem(
        Zeroizing::new(std::fs::read_to_string(path).unwrap()),
        "test",
    )
    .unwrap()
}
