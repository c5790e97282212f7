//! The polling interval hawkBit asks for (`config.polling.sleep`).
//!
//! hawkBit writes it as `HH:MM:SS`, and since 1.0 as an ISO-8601 duration (`PT36H`, `P1DT2H`)
//! once it reaches a day. Both are parsed here. Whatever the server says, the agent never polls
//! faster than [`MIN_SLEEP`] (no busy loop on `00:00:00`) nor slower than [`MAX_SLEEP`].

use std::time::Duration;

/// The shortest poll interval the agent accepts from the server.
pub const MIN_SLEEP: Duration = Duration::from_secs(10);
/// The longest: a device must still notice an update within a day.
pub const MAX_SLEEP: Duration = Duration::from_secs(24 * 3600);
/// Used until the server said otherwise, and when what it said cannot be read.
pub const DEFAULT_SLEEP: Duration = Duration::from_secs(300);

/// Why a sleep value was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("polling sleep {0:?} is neither HH:MM:SS nor an ISO-8601 duration")]
pub struct SleepError(pub String);

/// Parses `HH:MM:SS` (hours may exceed 23) or an ISO-8601 duration with day and time parts
/// (`P1D`, `PT36H`, `P1DT2H30M`, `PT0.5S`; years, months and weeks are refused, their length
/// is not fixed).
pub fn parse_sleep(raw: &str) -> Result<Duration, SleepError> {
    let s = raw.trim();
    let err = || SleepError(raw.to_owned());
    if let Some(rest) = s.strip_prefix('P').or_else(|| s.strip_prefix('p')) {
        return parse_iso(rest).ok_or_else(err);
    }
    let parts: Vec<&str> = s.split(':').collect();
    let [h, m, sec] = parts.as_slice() else {
        return Err(err());
    };
    let num = |p: &str, max: Option<u64>| -> Option<u64> {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let v: u64 = p.parse().ok()?;
        max.is_none_or(|m| v <= m).then_some(v)
    };
    let (h, m, sec) = (
        num(h, None).ok_or_else(err)?,
        num(m, Some(59)).ok_or_else(err)?,
        num(sec, Some(59)).ok_or_else(err)?,
    );
    let total = h
        .checked_mul(3600)
        .and_then(|x| x.checked_add(m * 60 + sec))
        .ok_or_else(err)?;
    Ok(Duration::from_secs(total))
}

/// The part after `P`: `[nD][T[nH][nM][n[.f]S]]`.
fn parse_iso(rest: &str) -> Option<Duration> {
    let (date, time) = match rest.split_once(['T', 't']) {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut total = Duration::ZERO;
    let mut any = false;
    for (value, unit) in units(date)? {
        let secs = match unit {
            'D' => 86_400.0,
            _ => return None,
        };
        total = total.checked_add(Duration::try_from_secs_f64(value * secs).ok()?)?;
        any = true;
    }
    if let Some(time) = time {
        if time.is_empty() {
            return None;
        }
        let mut last = 0;
        for (value, unit) in units(time)? {
            let (secs, order) = match unit {
                'H' => (3600.0, 1),
                'M' => (60.0, 2),
                'S' => (1.0, 3),
                _ => return None,
            };
            if order <= last {
                return None;
            }
            last = order;
            total = total.checked_add(Duration::try_from_secs_f64(value * secs).ok()?)?;
            any = true;
        }
    }
    any.then_some(total)
}

/// `12H30M` → [(12, 'H'), (30, 'M')]; `None` on anything else.
fn units(s: &str) -> Option<Vec<(f64, char)>> {
    let mut out = Vec::new();
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() || c == '.' || c == ',' {
            num.push(if c == ',' { '.' } else { c });
        } else {
            if num.is_empty() {
                return None;
            }
            let v: f64 = num.parse().ok()?;
            if !v.is_finite() || v < 0.0 {
                return None;
            }
            out.push((v, c.to_ascii_uppercase()));
            num.clear();
        }
    }
    num.is_empty().then_some(out)
}

/// The interval to actually wait: the server's, kept within [`MIN_SLEEP`, `MAX_SLEEP`].
pub fn clamp(d: Duration) -> Duration {
    d.clamp(MIN_SLEEP, MAX_SLEEP)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(raw: &str) -> u64 {
        parse_sleep(raw).unwrap().as_secs()
    }

    #[test]
    fn reads_both_notations() {
        assert_eq!(secs("00:05:00"), 300);
        assert_eq!(secs("12:00:00"), 43_200);
        assert_eq!(secs("36:00:00"), 129_600);
        assert_eq!(secs(" 00:00:30 "), 30);
        assert_eq!(secs("PT36H"), 129_600);
        assert_eq!(secs("P1D"), 86_400);
        assert_eq!(secs("P1DT2H30M"), 95_400);
        assert_eq!(secs("PT5M"), 300);
        assert_eq!(secs("PT45S"), 45);
        assert_eq!(parse_sleep("PT0.5S").unwrap(), Duration::from_millis(500));
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for bad in [
            "", "5", "00:05", "00:60:00", "aa:bb:cc", "-1:00:00", "P", "PT", "P1M", "P1Y", "P1W",
            "PT1H1H", "PT1M1H", "1D", "PT-5S", "PTH",
        ] {
            assert!(parse_sleep(bad).is_err(), "{bad:?} was accepted");
        }
        let e = parse_sleep("soon").unwrap_err().to_string();
        assert!(e.contains("\"soon\""), "{e}");
    }

    #[test]
    fn never_busy_loops_nor_sleeps_for_days() {
        assert_eq!(clamp(Duration::ZERO), MIN_SLEEP);
        assert_eq!(clamp(Duration::from_secs(300)), Duration::from_secs(300));
        assert_eq!(clamp(Duration::from_secs(10 * 86_400)), MAX_SLEEP);
    }
}
