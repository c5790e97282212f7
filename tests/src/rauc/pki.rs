//! Bundle signing and building: each fixture makes its own development PKI (the CA in the
//! service's keyring with a signer, and a foreign CA with a signer the service does not
//! trust), and [`RaucSystem::bundle`] writes a fresh image, a manifest, and signs them into a
//! plain bundle with `rauc bundle`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::image::splitmix64;
use super::{Bundle, BundleSpec, Image, RaucSystem};

/// A CA and a signer it issued, as PEM files.
#[derive(Debug, Clone)]
pub(super) struct Pki {
    pub(super) ca_cert: PathBuf,
    pub(super) signer_cert: PathBuf,
    pub(super) signer_key: PathBuf,
}

impl RaucSystem {
    /// Builds a signed plain bundle as `spec` says, with a fresh image.
    pub fn bundle(&self, spec: &BundleSpec) -> Bundle {
        let n = self.bundles.fetch_add(1, Ordering::Relaxed) + 1;
        let image = Image {
            seed: splitmix64(self.seed_base.wrapping_add(n)),
            size: spec.image_size,
        };
        let bundles = self.dir().join("bundles");
        let content = bundles.join(format!("content-{n}"));
        std::fs::create_dir(&content).expect("bundle content directory");
        let mut file = std::io::BufWriter::new(
            File::create(content.join("rootfs.img")).expect("create image file"),
        );
        image.write_to(&mut file).expect("write image");
        file.into_inner()
            .expect("flush image")
            .sync_all()
            .expect("sync image");
        // Written fresh each time: `rauc bundle` rewrites the manifest in place.
        std::fs::write(
            content.join("manifest.raucm"),
            format!(
                "[update]\ncompatible={}\nversion={}\n\n[bundle]\nformat=plain\n\n\
                 [image.rootfs]\nfilename=rootfs.img\n",
                spec.compatible, spec.version
            ),
        )
        .expect("write manifest");
        let pki = if spec.foreign {
            &self.foreign
        } else {
            &self.trusted
        };
        let path = bundles.join(format!("bundle-{n}.raucb"));
        // Random image data does not compress; storing it uncompressed is much faster.
        let out = Command::new("rauc")
            .arg(format!("--keyring={}", pki.ca_cert.display()))
            .arg("bundle")
            .arg(format!("--cert={}", pki.signer_cert.display()))
            .arg(format!("--key={}", pki.signer_key.display()))
            .arg("--mksquashfs-args=-noI -noD -noF -noX")
            .arg(&content)
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .expect("run rauc bundle (Debian packages rauc and squashfs-tools)");
        assert!(
            out.status.success(),
            "rauc bundle failed: {}",
            crate::text(&out)
        );
        std::fs::remove_dir_all(&content).expect("remove bundle content");
        Bundle {
            path,
            image,
            version: spec.version.clone(),
            compatible: spec.compatible.clone(),
        }
    }

    /// A good bundle with an image of `image_size` bytes.
    pub fn good_bundle(&self, image_size: u64) -> Bundle {
        self.bundle(&BundleSpec::new(image_size))
    }

    /// A bundle signed by a CA the service does not trust.
    pub fn foreign_bundle(&self, image_size: u64) -> Bundle {
        self.bundle(&BundleSpec::new(image_size).signed_by_foreign_ca())
    }

    /// A correctly signed bundle for another device (`compatible=other-device`).
    pub fn incompatible_bundle(&self, image_size: u64) -> Bundle {
        self.bundle(&BundleSpec::new(image_size).compatible("other-device"))
    }
}

/// Writes a CA (`<name>-ca.pem`) and a bundle signer it issued (`<name>-signer.{pem,key}`)
/// into `dir`. The signer has key usage digitalSignature and no extended key usage: RAUC
/// refuses a codeSigning purpose unless its keyring is configured to check for it.
pub(super) fn make_pki(dir: &Path, name: &str) -> Pki {
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("keygen");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("Nexa test {name} bundle CA"));
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).expect("self-sign CA");
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("keygen");
    let mut signer = CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("Nexa test {name} bundle signer"),
    );
    signer.distinguished_name = dn;
    signer.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let signer_cert = signer.signed_by(&key, &issuer).expect("sign signer");

    let pki = Pki {
        ca_cert: dir.join(format!("{name}-ca.pem")),
        signer_cert: dir.join(format!("{name}-signer.pem")),
        signer_key: dir.join(format!("{name}-signer.key")),
    };
    std::fs::write(&pki.ca_cert, ca_cert.pem()).expect("write CA cert");
    std::fs::write(&pki.signer_cert, signer_cert.pem()).expect("write signer cert");
    std::fs::write(&pki.signer_key, key.serialize_pem()).expect("write signer key");
    pki
}
