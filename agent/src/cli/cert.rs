//! `nexa-agent cert needs-renewal` and `nexa-agent cert renew`: what they print and their exit
//! codes. The work is in `crate::renew`.

use std::path::PathBuf;
use std::process::ExitCode;

use time::OffsetDateTime;

use crate::backoff::Backoff;
use crate::certs::CertsDir;
use crate::config::AgentConfig;
use crate::renew::policy::{Decision, Policy};
use crate::renew::probe::DEFAULT_TIMEOUT;
use crate::renew::stage::rfc3339;
use crate::renew::{MqttCheck, MqttProof, RenewOptions, RenewOutcome, renew as renew_now};

use super::{fail, print_outcome};

pub const NEEDS_RENEWAL_HELP: &str = "Exit status: 0 renewal is due (or the certificate has expired: \
`cert renew` re-enrolls); 1 not yet (the time is printed); 2 error: no readable certificate, a \
revoked device, or a configuration error (the message names the file).";

pub const RENEW_HELP: &str = "Renews with a key generated for the occasion, over mTLS with the \
current certificate; the new pair is verified (chain to the pinned root, key, device id; an MQTT \
connection when a broker is known and no daemon runs) before it replaces the old one, which \
stays in use if anything fails. An expired certificate cannot renew: the device re-enrolls \
with new keys instead (the bridge must allow it: `nexa-server device allow-reenroll`). \
Exit status: 0 renewed, re-enrolled or not due; 1 local failure (or the broker refused the new \
certificate); 2 usage or configuration error; 3 refused by the bridge, or the device is revoked; \
4 not trusted; 5 the bridge stayed unreachable or unavailable; 6 re-enrolled but the WireGuard \
interface could not be configured.";

/// Exit codes of `cert needs-renewal`.
const DUE: u8 = 0;
const NOT_DUE: u8 = 1;
const ERROR: u8 = 2;

/// `cert needs-renewal`: the decision on stdout, errors on stderr.
pub(super) fn needs_renewal(cfg: &AgentConfig) -> ExitCode {
    let certs = CertsDir::new(&cfg.certs_dir);
    let now = OffsetDateTime::now_utc();
    match crate::renew::needs_renewal(&certs, &Policy::default(), now) {
        Ok((current, decision)) => {
            let serial = &current.facts.serial_hex;
            let (line, code) = match decision {
                Decision::Due { at } => (
                    format!(
                        "yes: certificate {serial} has been due for renewal since {}",
                        rfc3339(at)
                    ),
                    DUE,
                ),
                Decision::Expired { not_after } => (
                    format!(
                        "yes: certificate {serial} expired at {}; `nexa-agent cert renew` re-enrolls",
                        rfc3339(not_after)
                    ),
                    DUE,
                ),
                Decision::NotYet { at } => (
                    format!("no: certificate {serial} is renewed at {}", rfc3339(at)),
                    NOT_DUE,
                ),
            };
            println!("{line}");
            ExitCode::from(code)
        }
        Err(e) => {
            eprintln!("nexa-agent: {e}");
            ExitCode::from(ERROR)
        }
    }
}

/// `cert renew`; `Ok(true)` when the device re-enrolled (the caller reconciles the tunnel).
pub(super) async fn renew(
    cfg: &AgentConfig,
    force: bool,
    backoff: Backoff,
    sysroot: PathBuf,
) -> Result<bool, ExitCode> {
    let opts = RenewOptions {
        force,
        backoff,
        sysroot,
        mqtt: MqttCheck::Auto,
        mqtt_timeout: DEFAULT_TIMEOUT,
    };
    match renew_now(cfg, &opts).await {
        Ok(RenewOutcome::NotDue { serial, at }) => {
            println!(
                "certificate {serial} is not due for renewal until {}; nothing to do \
                 (`--force` renews now)",
                rfc3339(at)
            );
            Ok(false)
        }
        Ok(RenewOutcome::Renewed {
            old_serial,
            new,
            chain_replaced,
            mqtt,
        }) => {
            println!(
                "renewed: certificate {old_serial} replaced by {}, valid until {}",
                new.serial_hex,
                rfc3339(new.not_after)
            );
            println!("key: generated on this device for this renewal");
            println!(
                "verified: chain ends in the pinned root, CN is the device id, valid for client \
                 authentication, matches the new key"
            );
            match mqtt {
                MqttProof::Connected { broker } => {
                    println!("verified: the MQTT broker {broker} accepted the new certificate")
                }
                MqttProof::Skipped { why } => println!("MQTT check skipped: {why}"),
            }
            let certs = CertsDir::new(&cfg.certs_dir);
            let mut written = vec![certs.device_key(), certs.device_cert()];
            if chain_replaced {
                written.push(certs.ca_chain());
            }
            written.push(certs.flag());
            for path in written {
                println!("wrote {}", path.display());
            }
            Ok(false)
        }
        Ok(RenewOutcome::ReEnrolled(outcome)) => {
            println!("the certificate had expired, so the device enrolled again instead");
            print_outcome(&outcome);
            Ok(true)
        }
        Err(e) => Err(fail(&e)),
    }
}
