//! MIME multipart bodies (RFC 2046 §5.1) as carried in SIP (RFC 3261 §7.4, RFC 5621).

use bytes::Bytes;

use super::LocationError;

/// One body part of a `multipart/*` body (RFC 2046 §5.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The part's `Content-Type` value as received (parameters included), or `text/plain`
    /// when the part has none (RFC 2046 §5.1.1 default).
    pub content_type: String,
    /// The part's `Content-ID` without its angle brackets (RFC 2392), if any.
    pub content_id: Option<String>,
    /// The part's `Content-Disposition` value, if any (RFC 5621 §3).
    pub content_disposition: Option<String>,
    /// The part's octets, byte-exact (binary parts such as an eCall MSD stay intact).
    pub body: Bytes,
}

impl Part {
    /// The part's media type, lower case, without parameters (`application/pidf+xml`).
    pub fn media_type(&self) -> String {
        media_type(&self.content_type).0
    }
}

/// Split a `multipart/*` body into its parts (RFC 2046 §5.1.1).
///
/// `content_type` is the message's `Content-Type` value; its `boundary` parameter may be
/// quoted or not. The preamble and epilogue are ignored; CRLF and bare-LF line ends are both
/// accepted; transport padding after a delimiter is skipped.
///
/// # Errors
/// [`LocationError::NotMultipart`] if the type is not `multipart/*`,
/// [`LocationError::MissingBoundary`] if there is no usable `boundary` parameter,
/// [`LocationError::NoDelimiter`] if the body never contains the delimiter and
/// [`LocationError::Unterminated`] if the close delimiter (`--boundary--`) is missing.
pub fn split_multipart(content_type: &str, body: &[u8]) -> Result<Vec<Part>, LocationError> {
    match split_multipart_partial(content_type, body) {
        (parts, None) => Ok(parts),
        (_, Some(e)) => Err(e),
    }
}

/// [`split_multipart`] that keeps what it could read: the parts that were whole (closed
/// by the next delimiter) before the body went wrong, and the error if any. A body cut
/// short after its SDP part (no close delimiter, RFC 2046 §5.1.1) keeps the SDP part, so
/// the call can go on without the location.
pub fn split_multipart_partial(
    content_type: &str,
    body: &[u8],
) -> (Vec<Part>, Option<LocationError>) {
    let mut parts = Vec::new();
    let err = split_into(content_type, body, &mut parts).err();
    (parts, err)
}

fn split_into(content_type: &str, body: &[u8], parts: &mut Vec<Part>) -> Result<(), LocationError> {
    let (essence, params) = media_type(content_type);
    if !essence.starts_with("multipart/") {
        return Err(LocationError::NotMultipart {
            content_type: essence,
        });
    }
    let boundary = params
        .iter()
        .find(|(name, _)| name == "boundary")
        .map(|(_, value)| value.as_str())
        .filter(|b| !b.is_empty() && b.len() <= 70)
        .ok_or(LocationError::MissingBoundary)?;
    let mut delimiter = Vec::with_capacity(boundary.len() + 2);
    delimiter.extend_from_slice(b"--");
    delimiter.extend_from_slice(boundary.as_bytes());

    let mut at = find_delimiter(body, &delimiter, 0).ok_or(LocationError::NoDelimiter)?;
    loop {
        let after = at + delimiter.len();
        let rest = body.get(after..).unwrap_or_default();
        if rest.starts_with(b"--") {
            return Ok(());
        }
        // Skip transport padding and the line end of the delimiter line.
        let line_end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(LocationError::Unterminated)?;
        let start = after + line_end + 1;
        let next = find_delimiter(body, &delimiter, start).ok_or(LocationError::Unterminated)?;
        // The CRLF (or LF) before the next delimiter belongs to the delimiter.
        let mut end = next.saturating_sub(1).max(start);
        if end > start && body.get(end - 1) == Some(&b'\r') {
            end -= 1;
        }
        parts.push(parse_part(body.get(start..end).unwrap_or_default()));
        at = next;
    }
}

/// Position of the next `--boundary` that starts a line at or after `from`.
fn find_delimiter(body: &[u8], delimiter: &[u8], from: usize) -> Option<usize> {
    let mut search = from;
    while let Some(haystack) = body.get(search..) {
        let offset = haystack
            .windows(delimiter.len())
            .position(|w| w == delimiter)?;
        let pos = search + offset;
        let at_line_start = pos == 0 || body.get(pos - 1) == Some(&b'\n');
        if at_line_start {
            return Some(pos);
        }
        search = pos + 1;
    }
    None
}

fn parse_part(raw: &[u8]) -> Part {
    // The header section ends at the first empty line; a part may have no header at all.
    let (headers, body) = if raw.starts_with(b"\r\n") {
        (&raw[..0], raw.get(2..).unwrap_or_default())
    } else if raw.starts_with(b"\n") {
        (&raw[..0], raw.get(1..).unwrap_or_default())
    } else {
        let crlf = find(raw, b"\r\n\r\n").map(|p| (p, p + 4));
        let lf = find(raw, b"\n\n").map(|p| (p, p + 2));
        let split = match (crlf, lf) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        };
        match split {
            Some((h, b)) => (
                raw.get(..h).unwrap_or_default(),
                raw.get(b..).unwrap_or_default(),
            ),
            None => (raw, &raw[..0]),
        }
    };
    let mut part = Part {
        content_type: "text/plain".to_owned(),
        content_id: None,
        content_disposition: None,
        body: Bytes::copy_from_slice(body),
    };
    for (name, value) in header_fields(headers) {
        if name.eq_ignore_ascii_case("content-type") {
            part.content_type = value;
        } else if name.eq_ignore_ascii_case("content-id") {
            let id = value.trim();
            let id = id
                .strip_prefix('<')
                .and_then(|i| i.strip_suffix('>'))
                .unwrap_or(id);
            part.content_id = Some(id.to_owned());
        } else if name.eq_ignore_ascii_case("content-disposition") {
            part.content_disposition = Some(value);
        }
    }
    part
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Header fields of a part, unfolded (RFC 5322 §2.2.3); lines without a colon are skipped.
fn header_fields(headers: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(headers);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    fields
}

/// Split a Content-Type value into its lower-case `type/subtype` and its parameters
/// (names lower case, values unquoted), RFC 2045 §5.1.
pub(crate) fn media_type(value: &str) -> (String, Vec<(String, String)>) {
    let mut rest = value.trim();
    let essence_end = rest.find(';').unwrap_or(rest.len());
    let essence = rest
        .get(..essence_end)
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    rest = rest.get(essence_end..).unwrap_or_default();
    let mut params = Vec::new();
    while let Some(after_semicolon) = rest.strip_prefix(';') {
        let Some((name, after_eq)) = after_semicolon.split_once('=') else {
            break;
        };
        let name = name.trim().to_ascii_lowercase();
        let after_eq = after_eq.trim_start();
        let (value, remaining) = if let Some(quoted) = after_eq.strip_prefix('"') {
            // quoted-string with backslash escapes (RFC 2045 §5.1, RFC 822 §3.3)
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, quoted.get(end..).unwrap_or_default())
        } else {
            let end = after_eq.find(';').unwrap_or(after_eq.len());
            (
                after_eq.get(..end).unwrap_or_default().trim().to_owned(),
                after_eq.get(end..).unwrap_or_default(),
            )
        };
        params.push((name, value));
        rest = remaining.trim_start();
    }
    (essence, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_and_quoted_boundary() {
        let (essence, params) =
            media_type("Multipart/Mixed; Boundary=\"a \\\"b\\\";c\" ; charset=utf-8");
        assert_eq!(essence, "multipart/mixed");
        assert_eq!(
            params,
            vec![
                ("boundary".to_owned(), "a \"b\";c".to_owned()),
                ("charset".to_owned(), "utf-8".to_owned())
            ]
        );
        assert_eq!(media_type("application/sdp").0, "application/sdp");
    }

    #[test]
    fn splits_parts_with_preamble_padding_and_binary_body() {
        let body = b"preamble\r\n--xyz  \r\nContent-Type: application/sdp\r\n\r\nv=0\r\n\
--xyz\r\nContent-Type: application/octet-stream\r\nContent-ID: <bin@x>\r\n\r\n\x00\xff--xy\r\n\
--xyz\r\n\r\nno headers\r\n--xyz--\r\nepilogue";
        let parts = split_multipart("multipart/mixed;boundary=xyz", body).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].media_type(), "application/sdp");
        // The CRLF before a delimiter belongs to the delimiter (RFC 2046 §5.1.1).
        assert_eq!(&parts[0].body[..], b"v=0");
        assert_eq!(parts[1].content_id.as_deref(), Some("bin@x"));
        assert_eq!(&parts[1].body[..], b"\x00\xff--xy");
        assert_eq!(parts[2].content_type, "text/plain");
        assert_eq!(&parts[2].body[..], b"no headers");
    }

    #[test]
    fn lf_only_and_folded_headers() {
        let body = b"--b\nContent-Type:\n application/pidf+xml\nContent-ID: <a@b>\n\n<x/>\n--b--\n";
        let parts = split_multipart("multipart/mixed; boundary=b", body).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].media_type(), "application/pidf+xml");
        assert_eq!(&parts[0].body[..], b"<x/>");
    }

    #[test]
    fn errors() {
        assert!(matches!(
            split_multipart("application/sdp", b""),
            Err(LocationError::NotMultipart { .. })
        ));
        assert!(matches!(
            split_multipart("multipart/mixed", b"--b\r\n\r\n--b--"),
            Err(LocationError::MissingBoundary)
        ));
        assert!(matches!(
            split_multipart("multipart/mixed;boundary=b", b"nothing here"),
            Err(LocationError::NoDelimiter)
        ));
        assert!(matches!(
            split_multipart("multipart/mixed;boundary=b", b"--b\r\n\r\ncut"),
            Err(LocationError::Unterminated)
        ));
        // A delimiter-looking string inside a line is not a delimiter.
        assert!(matches!(
            split_multipart("multipart/mixed;boundary=b", b"x--b\r\n"),
            Err(LocationError::NoDelimiter)
        ));
    }

    #[test]
    fn partial_split_keeps_the_whole_parts_of_a_truncated_body() {
        let body = b"--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n\
                     --b\r\nContent-Type: application/pidf+xml\r\n\r\n<presence";
        let (parts, err) = split_multipart_partial("multipart/mixed; boundary=b", body);
        assert!(matches!(err, Some(LocationError::Unterminated)), "{err:?}");
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].content_type, "application/sdp");
        assert_eq!(&parts[0].body[..], b"v=0");
        assert!(matches!(
            split_multipart("multipart/mixed; boundary=b", body),
            Err(LocationError::Unterminated)
        ));
        let (parts, err) = split_multipart_partial("multipart/mixed", body);
        assert!(parts.is_empty());
        assert!(matches!(err, Some(LocationError::MissingBoundary)));
    }
}
