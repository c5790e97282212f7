//! Addresses: percent-encoding and decoding of one path segment (controller ids and
//! artifact names may hold `/`, `@` or spaces), and [`Base`], the scheme, authority, tenant
//! and controller every link the device is shown starts with.

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters).
pub(crate) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (invalid ones are kept as they are).
pub(crate) fn decode_segment(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(v) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where links point: scheme and authority from the request, the tenant, the controller.
#[derive(Debug, Clone)]
pub(crate) struct Base {
    pub origin: String,
    pub tenant: String,
    pub controller_id: String,
}

impl Base {
    pub(crate) fn controller(&self) -> String {
        format!(
            "{}/{}/controller/v1/{}",
            self.origin,
            encode_segment(&self.tenant),
            encode_segment(&self.controller_id)
        )
    }
}
